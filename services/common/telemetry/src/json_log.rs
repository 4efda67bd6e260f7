//! JSON log lines that join their trace: tracing-subscriber's JSON line plus the `trace_id` and
//! `span_id` (the OpenTelemetry ids an SRE searches the trace backend with) of the nearest
//! enclosing span that recorded them with [`record_trace_ids`]: the kernel does so for every RPC,
//! consumed event and relay publish, so every line written while serving one carries them.
//!
//! (The ids cannot be read from the OpenTelemetry layer while a line is being written: tracing
//! does not allow reaching the dispatcher from inside it.)

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::registry::LookupSpan;

/// The JSON format of every service's logs.
pub struct TracedJson {
    inner: Format<Json>,
}

impl TracedJson {
    pub fn new() -> Self {
        Self { inner: Format::default().json().flatten_event(true).with_current_span(true).with_span_list(false) }
    }
}

impl Default for TracedJson {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> FormatEvent<S, JsonFields> for TracedJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let Some((trace_id, span_id)) = recorded_ids(ctx) else {
            return writer.write_str(&line);
        };
        // The inner line is one JSON object and a newline: add the ids as its first fields.
        match line.strip_prefix('{') {
            Some(rest) if rest.trim_start().starts_with('}') => {
                write!(writer, "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{rest}")
            }
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}

/// Records `span`'s OpenTelemetry ids in its `trace_id` and `span_id` fields (declared empty
/// when the span is made), once its parent is set.
pub fn record_trace_ids(span: &tracing::Span) {
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

/// The ids recorded on the nearest span around the event, from the spans' rendered fields.
fn recorded_ids<S>(ctx: &FmtContext<'_, S, JsonFields>) -> Option<(String, String)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    for span in ctx.event_scope()? {
        let extensions = span.extensions();
        let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else { continue };
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(fields.as_str()) else {
            continue;
        };
        if let (Some(trace_id), Some(span_id)) =
            (fields.get("trace_id").and_then(|v| v.as_str()), fields.get("span_id").and_then(|v| v.as_str()))
        {
            return Some((trace_id.to_owned(), span_id.to_owned()));
        }
    }
    None
}

/// The field formatter the JSON format needs.
pub fn fields() -> JsonFields {
    JsonFields::new()
}
