//! A JSON log line written inside a span carries that span's OpenTelemetry trace and span ids, so
//! an SRE goes from a log line to its trace; a line outside any span carries none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn log_lines_inside_a_span_carry_its_trace_and_span_ids() {
    let lines = Lines::default();
    let writer = lines.clone();
    let provider = SdkTracerProvider::builder().build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test"))).with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(dw_telemetry::json_log::fields())
                .event_format(dw_telemetry::json_log::TracedJson::new())
                .with_writer(move || writer.clone()),
        );
    let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
        tracing::info!(outside = true, "no span here");
        let span = tracing::info_span!(
            "grpc request",
            rpc = "StartBreak",
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty
        );
        dw_telemetry::json_log::record_trace_ids(&span);
        let _entered = span.enter();
        // A line in a child span (a handler's) carries the ids of the span that recorded them.
        let handler = tracing::info_span!("start_break");
        let _handler = handler.enter();
        tracing::info!(agent = "ana", "break started");
        let trace_id = dw_telemetry::trace_id_of(&span).expect("the span has a trace");
        let traceparent = dw_telemetry::traceparent_of(&span).expect("and a traceparent");
        let span_id = traceparent.split('-').nth(2).expect("span id").to_owned();
        (trace_id, span_id)
    });
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let parsed: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    assert_eq!(parsed.len(), 2, "{text}");
    assert!(parsed[0].get("trace_id").is_none(), "{}", parsed[0]);
    assert_eq!(parsed[0]["outside"], true);
    assert_eq!(parsed[1]["trace_id"], trace_id.as_str(), "{}", parsed[1]);
    assert_eq!(parsed[1]["span_id"], span_id.as_str());
    assert_eq!(parsed[1]["agent"], "ana");
    assert_eq!(parsed[1]["message"], "break started");
    assert_eq!(parsed[1]["span"]["name"], "start_break");
}
