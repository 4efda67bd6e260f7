//! The calling agent's live notifications (Subscribe): one line each, and on exit how to resume.

use anyhow::Result;
use chrono::SecondsFormat;
use dw_proto::notifications::v1::AgentNotification;
use dw_proto::notifications::v1::agent_notification::Kind;
use futures::Stream;

use crate::output::{self as out, Printer, names, one_line, or_dash};
use crate::streaming;

/// Prints the subscription `stream` until it ends, Ctrl-C or `limit` notifications; then, in text
/// mode, the sequence to resume after.
pub async fn print<S>(stream: S, printer: &Printer, after: u64, backlog: u32, limit: Option<u64>) -> Result<()>
where
    S: Stream<Item = Result<AgentNotification, tonic::Status>> + Unpin,
{
    if after == 0 && backlog > 0 {
        printer.note(format!("subscribed: the latest {backlog} kept notifications, then new ones (Ctrl-C to stop)"));
    } else if after == 0 {
        printer.note("subscribed: new notifications as they happen (Ctrl-C to stop)");
    } else {
        printer.note(format!("subscribed: every notification after #{after}, then new ones (Ctrl-C to stop)"));
    }
    let mut last = after;
    let outcome = streaming::print_each(stream, limit, |notification| {
        last = last.max(notification.sequence);
        printer.emit_line(names::AGENT_NOTIFICATION, &notification, subscribe_line)
    })
    .await;
    if last > 0 {
        printer.note(resume_hint(last));
    }
    outcome
}

/// `client_message`, `task_assigned`, `send_failed`.
pub fn kind(value: i32) -> String {
    out::enum_name_or_dash(value, "KIND_", Kind::as_str_name)
}

/// One line per notification received: sequence, kind, time, title, body; then the task and the
/// message it is about, when it names them.
pub fn subscribe_line(notification: &AgentNotification) -> String {
    let at = notification
        .at
        .as_ref()
        .and_then(out::to_datetime)
        .map_or_else(|| "-".to_owned(), |at| at.to_rfc3339_opts(SecondsFormat::Secs, true));
    let mut line = format!(
        "#{:<5} {:<14} {}  {}",
        notification.sequence,
        kind(notification.kind),
        at,
        or_dash(&one_line(&notification.title))
    );
    let body = one_line(&notification.body);
    if !body.is_empty() {
        line.push_str(&format!(": {body}"));
    }
    if !notification.task_id.is_empty() {
        line.push_str(&format!("  task {}", notification.task_id));
    }
    if !notification.message_id.is_empty() {
        line.push_str(&format!("  message {}", notification.message_id));
    }
    line
}

/// How to pick up where a subscription stopped (stderr, on exit).
pub fn resume_hint(last: u64) -> String {
    format!("last notification #{last}; resume with: dwctl notifications subscribe --after {last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::{T0, ts};

    #[test]
    fn subscribe_lines_carry_sequence_kind_time_title_and_body() {
        let message = AgentNotification {
            sequence: 42,
            kind: Kind::ClientMessage as i32,
            at: ts(T0 + 5),
            task_id: "0196-task".into(),
            message_id: "0196-in".into(),
            title: "New client message".into(),
            body: "Olá,\npreciso de ajuda\r\n".into(),
            heartbeat: false,
        };
        assert_eq!(
            subscribe_line(&message),
            "#42    client_message 2024-05-01T08:00:05Z  New client message: Olá, preciso de ajuda  task 0196-task  \
             message 0196-in"
        );
        let assigned = AgentNotification {
            sequence: 7,
            kind: Kind::TaskAssigned as i32,
            at: ts(T0),
            task_id: "0196-task".into(),
            title: "Task assigned".into(),
            body: "A task of support is yours".into(),
            ..Default::default()
        };
        assert_eq!(
            subscribe_line(&assigned),
            "#7     task_assigned  2024-05-01T08:00:00Z  Task assigned: A task of support is yours  task 0196-task"
        );
        let bare = AgentNotification { sequence: 1, kind: Kind::SendFailed as i32, ..Default::default() };
        assert_eq!(subscribe_line(&bare), "#1     send_failed    -  -");
        assert_eq!(kind(99), "unknown(99)");
        assert_eq!(kind(0), "-");
        assert_eq!(resume_hint(42), "last notification #42; resume with: dwctl notifications subscribe --after 42");
    }
}
