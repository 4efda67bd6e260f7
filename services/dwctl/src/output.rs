//! Output: proto3 JSON through a descriptor pool (`--json`) or readable text, plus the pure
//! formatting helpers every command shares (timestamps, durations, enum names, fields, tables,
//! titled blocks, hex).

use anyhow::{Context as _, Result, anyhow};
use chrono::{DateTime, SecondsFormat, Utc};
use dw_proto::agentsessions::v1::{AgentStatus, ExitCloseCause};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

/// Fully qualified protobuf names of the messages dwctl prints.
pub mod names {
    pub const AGENT_DAY_STATE: &str = "dw.agentsessions.v1.AgentDayState";
    pub const MY_INFORMATION: &str = "dw.agentsessions.v1.GetMyInformationResponse";
    pub const MY_PERMISSIONS: &str = "dw.agentsessions.v1.GetMyPermissionsResponse";
    pub const EXIT_REASONS: &str = "dw.agentsessions.v1.ListExitReasonsResponse";
    pub const BREAK_REASONS: &str = "dw.agentsessions.v1.ListBreakReasonsResponse";
    pub const WORKSPACE_LINKS: &str = "dw.agentsessions.v1.GetWorkspaceLinksResponse";
    pub const AGENT: &str = "dw.agentsessions.v1.Agent";
    pub const PERMISSION_CATALOG: &str = "dw.agentsessions.v1.ListPermissionCatalogResponse";
    pub const TENANT_SETTINGS: &str = "dw.agentsessions.v1.TenantSettings";
    pub const AGENT_STATUSES: &str = "dw.agentsessions.v1.ListAgentStatusesResponse";
    pub const AGENT_STATUS_VIEW: &str = "dw.agentsessions.v1.AgentStatusView";
    pub const TASK: &str = "dw.distribution.v1.Task";
    pub const SEARCH_PROTOCOLS: &str = "dw.distribution.v1.SearchProtocolsResponse";
    pub const MY_TASKS: &str = "dw.distribution.v1.ListMyTasksResponse";
    pub const TASK_UPDATE: &str = "dw.distribution.v1.TaskUpdate";
    pub const QUEUE_STATS: &str = "dw.distribution.v1.GetQueueStatsResponse";
    pub const EXPLAIN_ASSIGNMENT: &str = "dw.distribution.v1.ExplainAssignmentResponse";
    pub const DISTRIBUTION_SETTINGS: &str = "dw.distribution.v1.DistributionSettings";
    pub const AGENT_CAPACITY: &str = "dw.distribution.v1.AgentCapacity";
    pub const ERASE_CLIENT_DATA: &str = "dw.distribution.v1.EraseClientDataResponse";
    pub const INBOUND_MESSAGE_RECEIVED: &str = "dw.messaging.v1.InboundMessageReceived";
    pub const TEMPLATE: &str = "dw.messaging.v1.Template";
    pub const LIST_TEMPLATES: &str = "dw.messaging.v1.ListTemplatesResponse";
    pub const PREVIEW_TEMPLATE: &str = "dw.messaging.v1.PreviewTemplateResponse";
    pub const MESSAGE: &str = "dw.messaging.v1.Message";
    pub const CONTACT: &str = "dw.messaging.v1.Contact";
    pub const SEARCH_CONTACTS: &str = "dw.messaging.v1.SearchContactsResponse";
    pub const ERASE_CONTACT_DATA: &str = "dw.messaging.v1.EraseClientDataResponse";
    pub const PROVIDER_CONFIG: &str = "dw.messaging.v1.ProviderConfig";
    pub const SINGLE_NOTIFICATION: &str = "dw.notifications.v1.SingleNotification";
    pub const LIST_NOTIFICATIONS: &str = "dw.notifications.v1.ListNotificationsResponse";
    pub const AGENT_NOTIFICATION: &str = "dw.notifications.v1.AgentNotification";
    pub const BROWSER_SUBSCRIPTION: &str = "dw.notifications.v1.BrowserSubscription";
    pub const DISABLE_BROWSER_NOTIFICATIONS: &str = "dw.notifications.v1.DisableBrowserNotificationsResponse";
    pub const VAPID_PUBLIC_KEY: &str = "dw.notifications.v1.GetVapidPublicKeyResponse";
    pub const WEBHOOK: &str = "dw.notifications.v1.Webhook";
    pub const WEBHOOK_WITH_SECRET: &str = "dw.notifications.v1.WebhookWithSecret";
    pub const LIST_WEBHOOKS: &str = "dw.notifications.v1.ListWebhooksResponse";
    pub const DELIVERY: &str = "dw.notifications.v1.Delivery";
    pub const LIST_DELIVERIES: &str = "dw.notifications.v1.ListDeliveriesResponse";

    #[cfg(test)]
    pub const ALL: [&str; 40] = [
        AGENT_DAY_STATE,
        MY_INFORMATION,
        MY_PERMISSIONS,
        EXIT_REASONS,
        BREAK_REASONS,
        WORKSPACE_LINKS,
        AGENT,
        PERMISSION_CATALOG,
        TENANT_SETTINGS,
        AGENT_STATUSES,
        AGENT_STATUS_VIEW,
        TASK,
        SEARCH_PROTOCOLS,
        MY_TASKS,
        TASK_UPDATE,
        QUEUE_STATS,
        EXPLAIN_ASSIGNMENT,
        DISTRIBUTION_SETTINGS,
        AGENT_CAPACITY,
        ERASE_CLIENT_DATA,
        INBOUND_MESSAGE_RECEIVED,
        TEMPLATE,
        LIST_TEMPLATES,
        PREVIEW_TEMPLATE,
        MESSAGE,
        CONTACT,
        SEARCH_CONTACTS,
        ERASE_CONTACT_DATA,
        PROVIDER_CONFIG,
        SINGLE_NOTIFICATION,
        LIST_NOTIFICATIONS,
        AGENT_NOTIFICATION,
        BROWSER_SUBSCRIPTION,
        DISABLE_BROWSER_NOTIFICATIONS,
        VAPID_PUBLIC_KEY,
        WEBHOOK,
        WEBHOOK_WITH_SECRET,
        LIST_WEBHOOKS,
        DELIVERY,
        LIST_DELIVERIES,
    ];
}

/// The descriptor pool of every `dw.*` proto (with the well-known types it imports).
pub fn descriptor_pool() -> Result<DescriptorPool> {
    DescriptorPool::decode(dw_proto::FILE_DESCRIPTOR_SET).context("decoding the embedded proto descriptor set")
}

/// Serialization options for proto3 JSON: lowerCamelCase names, enum names, 64-bit integers as
/// strings (per the spec), and default values included so scripts can rely on every field.
fn json_options() -> SerializeOptions {
    SerializeOptions::new().skip_default_fields(false)
}

/// Decodes `bytes` as the message `full_name` and renders it as proto3 JSON.
pub fn decode_to_json(pool: &DescriptorPool, full_name: &str, bytes: &[u8]) -> Result<serde_json::Value> {
    let descriptor =
        pool.get_message_by_name(full_name).ok_or_else(|| anyhow!("unknown protobuf message {full_name}"))?;
    let message = DynamicMessage::decode(descriptor, bytes).with_context(|| format!("decoding {full_name}"))?;
    message
        .serialize_with_options(serde_json::value::Serializer, &json_options())
        .with_context(|| format!("rendering {full_name} as JSON"))
}

/// Prints responses either as proto3 JSON or as text.
pub struct Printer {
    json: bool,
    pool: DescriptorPool,
}

impl Printer {
    pub fn new(json: bool) -> Result<Self> {
        Ok(Self { json, pool: descriptor_pool()? })
    }

    /// The proto3 JSON of a generated message whose full protobuf name is `full_name`.
    pub fn to_json<M: prost::Message>(&self, full_name: &str, message: &M) -> Result<serde_json::Value> {
        decode_to_json(&self.pool, full_name, &message.encode_to_vec())
    }

    /// Prints one response: pretty JSON with `--json`, otherwise the text from `text`.
    pub fn emit<M: prost::Message>(&self, full_name: &str, message: &M, text: impl FnOnce(&M) -> String) -> Result<()> {
        if self.json {
            let value = self.to_json(full_name, message)?;
            write_line(&serde_json::to_string_pretty(&value)?)
        } else {
            write_line(&text(message))
        }
    }

    /// A remark for the person at the terminal (progress, how to resume): stderr, and only in
    /// text mode, so that `--json` output stays one document or one object per line.
    pub fn note(&self, text: impl std::fmt::Display) {
        if !self.json {
            eprintln!("{text}");
        }
    }

    /// Prints one element of a stream: one compact JSON object per line with `--json`.
    pub fn emit_line<M: prost::Message>(
        &self,
        full_name: &str,
        message: &M,
        text: impl FnOnce(&M) -> String,
    ) -> Result<()> {
        if self.json {
            let value = self.to_json(full_name, message)?;
            write_line(&serde_json::to_string(&value)?)
        } else {
            write_line(&text(message))
        }
    }
}

/// Writes `text` to stdout, adding a final newline when missing, and flushes (streamed output
/// shows up at once). A closed pipe (`dwctl … | head`) surfaces as an `io::Error` of kind
/// `BrokenPipe`, which `main` treats as a quiet exit.
pub fn write_line(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    Ok(())
}

/// RFC 3339 in UTC with seconds precision (`2024-05-01T08:00:00Z`); `-` when unset.
pub fn timestamp(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(to_datetime).map_or_else(|| "-".to_owned(), |at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

pub fn to_datetime(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))
}

/// A timestamp followed by how long ago it was: `2024-05-01T08:00:00Z (12m 5s ago)`.
pub fn timestamp_ago(ts: Option<&prost_types::Timestamp>, now: DateTime<Utc>) -> String {
    match ts.and_then(to_datetime) {
        None => "-".to_owned(),
        Some(at) => {
            let rendered = at.to_rfc3339_opts(SecondsFormat::Secs, true);
            let elapsed = (now - at).num_seconds();
            if elapsed >= 0 { format!("{rendered} ({} ago)", human_seconds(elapsed)) } else { rendered }
        }
    }
}

/// A protobuf duration, human-readable; `-` when unset.
pub fn duration(d: Option<&prost_types::Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| human_seconds(d.seconds))
}

/// Whole seconds as `1d 2h 03m`, `1h 02m 03s`, `5m 07s`, `42s`; negative values get a `-`.
pub fn human_seconds(total: i64) -> String {
    if total < 0 {
        return format!("-{}", human_seconds(total.saturating_neg()));
    }
    let (days, rest) = (total / 86_400, total % 86_400);
    let (hours, rest) = (rest / 3_600, rest % 3_600);
    let (minutes, seconds) = (rest / 60, rest % 60);
    if days > 0 {
        format!("{days}d {hours}h {minutes:02}m")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m {seconds:02}s")
    } else if minutes > 0 {
        format!("{minutes}m {seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

/// `working`, `on_break`, `exit_notified`, `off` (the design's state names).
pub fn status(value: i32) -> String {
    enum_name(value, "AGENT_STATUS_", AgentStatus::as_str_name)
}

/// `cancelled`, `break_started`, `day_ended`.
pub fn exit_close_cause(value: i32) -> String {
    enum_name(value, "EXIT_CLOSE_CAUSE_", ExitCloseCause::as_str_name)
}

/// The short name of a protobuf enum value: its `as_str_name` without `prefix`, lower-cased
/// (`AGENT_STATUS_ON_BREAK` → `on_break`); `unknown(7)` for a number this build does not know.
pub fn enum_name<E: TryFrom<i32>>(value: i32, prefix: &str, as_str_name: fn(&E) -> &'static str) -> String {
    match E::try_from(value) {
        Ok(known) => enum_suffix(as_str_name(&known), prefix),
        Err(_) => format!("unknown({value})"),
    }
}

/// Like [`enum_name`], but `-` for the zero value, which proto3 uses for "not set".
pub fn enum_name_or_dash<E: TryFrom<i32>>(value: i32, prefix: &str, as_str_name: fn(&E) -> &'static str) -> String {
    if value == 0 { "-".to_owned() } else { enum_name(value, prefix, as_str_name) }
}

/// `AGENT_STATUS_ON_BREAK` without `prefix`, lower-cased: `on_break`.
pub fn enum_suffix(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_ascii_lowercase()
}

/// `value`, or `-` when it is empty.
pub fn or_dash(value: &str) -> String {
    if value.is_empty() { "-".to_owned() } else { value.to_owned() }
}

/// `text` on one line: line breaks and tabs become spaces, runs of spaces are kept.
pub fn one_line(text: &str) -> String {
    text.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `id (Label)`, `id`, or `-`.
pub fn reason(id: &str, label: &str) -> String {
    match (id.is_empty(), label.is_empty()) {
        (true, _) => "-".to_owned(),
        (false, true) => id.to_owned(),
        (false, false) => format!("{id} ({label})"),
    }
}

/// A comma-separated list, or `-` when empty.
pub fn list(items: &[String]) -> String {
    if items.is_empty() { "-".to_owned() } else { items.join(", ") }
}

pub fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

pub fn on_off(value: bool) -> &'static str {
    if value { "on" } else { "off" }
}

/// `key value` lines with the values aligned.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(key, _)| key.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in rows {
        out.push_str(&format!("{key:<width$}  {value}\n"));
    }
    out
}

/// A table with a header row; columns are padded to the widest cell; the last column is not
/// padded. An empty table renders as `(none)`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "(none)\n".to_owned();
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let width = widths.get(i).copied().unwrap_or(0);
            line.push_str(&format!("{cell:<width$}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A [`table`] with one row per item.
pub fn table_of<T>(header: &[&str], items: impl IntoIterator<Item = T>, row: impl FnMut(T) -> Vec<String>) -> String {
    let rows: Vec<Vec<String>> = items.into_iter().map(row).collect();
    table(header, &rows)
}

/// A titled part of a text: `title:`, then `body` indented by two spaces, then a line break.
pub fn block(title: &str, body: &str) -> String {
    format!("{title}:\n{}\n", indent(body, 2))
}

/// Lower-case hex, no separators.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Indents every non-empty line of `text` by `by` spaces.
pub fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|line| if line.is_empty() { String::new() } else { format!("{pad}{line}") })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dw_proto::agentsessions::v1::{AgentDayState, Reason, TenantSettings};

    #[test]
    fn human_seconds_picks_the_two_or_three_largest_units() {
        assert_eq!(human_seconds(0), "0s");
        assert_eq!(human_seconds(42), "42s");
        assert_eq!(human_seconds(60), "1m 00s");
        assert_eq!(human_seconds(307), "5m 07s");
        assert_eq!(human_seconds(3_723), "1h 02m 03s");
        assert_eq!(human_seconds(93_784), "1d 2h 03m");
        assert_eq!(human_seconds(-75), "-1m 15s");
        assert_eq!(human_seconds(i64::MIN).chars().next(), Some('-'));
    }

    #[test]
    fn protobuf_durations_and_timestamps_render() {
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(&prost_types::Duration { seconds: 900, nanos: 5 })), "15m 00s");
        assert_eq!(timestamp(None), "-");
        let ts = prost_types::Timestamp { seconds: 1_714_550_400, nanos: 250_000_000 };
        assert_eq!(timestamp(Some(&ts)), "2024-05-01T08:00:00Z");
        let now = DateTime::from_timestamp(1_714_550_400 + 125, 0).unwrap();
        assert_eq!(timestamp_ago(Some(&ts), now), "2024-05-01T08:00:00Z (2m 04s ago)");
    }

    #[test]
    fn enums_render_as_short_snake_case_names() {
        assert_eq!(status(AgentStatus::OnBreak as i32), "on_break");
        assert_eq!(status(AgentStatus::ExitNotified as i32), "exit_notified");
        assert_eq!(status(AgentStatus::Off as i32), "off");
        assert_eq!(status(99), "unknown(99)");
        assert_eq!(exit_close_cause(ExitCloseCause::DayEnded as i32), "day_ended");
    }

    #[test]
    fn tables_align_columns_and_fields_align_values() {
        let rendered = table(
            &["ID", "LABEL"],
            &[vec!["lunch".into(), "Lunch".into()], vec!["end-of-shift".into(), "End of shift".into()]],
        );
        assert_eq!(rendered, "ID            LABEL\nlunch         Lunch\nend-of-shift  End of shift\n");
        assert_eq!(table(&["A"], &[]), "(none)\n");
        assert_eq!(fields(&[("agent", "ana".into()), ("status", "working".into())]), "agent   ana\nstatus  working\n");
    }

    #[test]
    fn small_helpers() {
        assert_eq!(hex(&[0x00, 0xab, 0x10]), "00ab10");
        assert_eq!(reason("lunch", "Lunch"), "lunch (Lunch)");
        assert_eq!(reason("", ""), "-");
        assert_eq!(list(&[]), "-");
        assert_eq!(indent("a\n\nb", 2), "  a\n\n  b");
        assert_eq!((or_dash(""), or_dash("x")), ("-".to_owned(), "x".to_owned()));
        assert_eq!(one_line(" a\nb\tc  d\r\n"), "a b c  d");
    }

    #[test]
    fn tables_of_items_and_titled_blocks() {
        let reasons = [("lunch", "Lunch")];
        let rendered = table_of(&["ID", "LABEL"], &reasons, |(id, label)| vec![(*id).to_owned(), (*label).to_owned()]);
        assert_eq!(rendered, "ID     LABEL\nlunch  Lunch\n");
        assert_eq!(block("breaks", &rendered), "breaks:\n  ID     LABEL\n  lunch  Lunch\n");
        assert_eq!(block("exits", &table(&["A"], &[])), "exits:\n  (none)\n");
    }

    #[test]
    fn enum_names_know_unset_and_unknown_values() {
        assert_eq!(enum_name(AgentStatus::Working as i32, "AGENT_STATUS_", AgentStatus::as_str_name), "working");
        assert_eq!(enum_name(0, "AGENT_STATUS_", AgentStatus::as_str_name), "unspecified");
        assert_eq!(enum_name_or_dash(0, "AGENT_STATUS_", AgentStatus::as_str_name), "-");
        assert_eq!(enum_name_or_dash(99, "AGENT_STATUS_", AgentStatus::as_str_name), "unknown(99)");
    }

    #[test]
    fn every_printed_message_is_in_the_descriptor_pool() {
        let pool = descriptor_pool().unwrap();
        for name in names::ALL {
            assert!(pool.get_message_by_name(name).is_some(), "{name} missing from the pool");
        }
    }

    #[test]
    fn messages_render_as_proto3_json() {
        let printer = Printer::new(true).unwrap();
        let state = AgentDayState {
            agent_id: "ana".into(),
            status: AgentStatus::OnBreak as i32,
            status_since: Some(prost_types::Timestamp { seconds: 1_714_550_400, nanos: 0 }),
            version: 7,
            ..Default::default()
        };
        let value = printer.to_json(names::AGENT_DAY_STATE, &state).unwrap();
        assert_eq!(value["agentId"], "ana");
        assert_eq!(value["status"], "AGENT_STATUS_ON_BREAK");
        assert_eq!(value["statusSince"], "2024-05-01T08:00:00Z");
        assert_eq!(value["version"], "7");
        assert_eq!(value["dayId"], "");
        let settings = TenantSettings {
            exit_reasons: vec![Reason { id: "meeting".into(), label: "Meeting".into() }],
            ..Default::default()
        };
        let value = printer.to_json(names::TENANT_SETTINGS, &settings).unwrap();
        assert_eq!(value["exitReasons"][0]["label"], "Meeting");
        assert_eq!(value["autoDistributionEnabled"], false);
    }
}
