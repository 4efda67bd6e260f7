//! `dwctl messages …`: a sent message with its status history, and waiting for a status.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use dw_proto::messaging::v1::template_service_client::TemplateServiceClient;
use dw_proto::messaging::v1::{GetMessageRequest, Message, MessageStatus};
use tonic::transport::Channel;

use super::{channel, message_status, metadata, status_history};
use crate::cli::MessagesCommand;
use crate::output::{self as out, Printer, names, or_dash};
use crate::rpc::Rpc;

/// How long `messages wait` waits unless --timeout-seconds says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// The deadline of each GetMessage while waiting (never longer than the wait itself).
const POLL_RPC_DEADLINE: Duration = Duration::from_secs(10);

pub async fn run(command: MessagesCommand, rpc: &Rpc, printer: &Printer, wait: Duration) -> Result<()> {
    let mut client = TemplateServiceClient::new(rpc.channel.clone());
    match command {
        MessagesCommand::Get { message_id } => {
            let message = client.get_message(rpc.request(GetMessageRequest { message_id })).await?.into_inner();
            printer.emit(names::MESSAGE, &message, |m| message_text(m, Utc::now()))
        }
        MessagesCommand::Wait { message_id, status, interval_ms } => {
            let interval = Duration::from_millis(interval_ms);
            wait_for(&mut client, rpc, printer, &message_id, status, interval, wait).await
        }
    }
}

/// Polls GetMessage until the message reaches `status` (see [`progress`]), for at most `wait`;
/// every status seen on the way is noted on stderr.
async fn wait_for(
    client: &mut TemplateServiceClient<Channel>,
    rpc: &Rpc,
    printer: &Printer,
    message_id: &str,
    status: MessageStatus,
    interval: Duration,
    wait: Duration,
) -> Result<()> {
    let deadline = Instant::now() + wait;
    let mut last_seen: Option<i32> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut request = rpc.stream_request(GetMessageRequest { message_id: message_id.to_owned() });
        request.set_timeout(left.clamp(Duration::from_millis(200), POLL_RPC_DEADLINE));
        let message = client.get_message(request).await?.into_inner();
        if last_seen != Some(message.status) {
            printer.note(progress_line(&message));
        }
        last_seen = Some(message.status);
        match progress(message.status, status) {
            Progress::Reached => {
                return printer.emit(names::MESSAGE, &message, |m| message_text(m, Utc::now()));
            }
            Progress::Failed => {
                printer.emit(names::MESSAGE, &message, |m| message_text(m, Utc::now()))?;
                bail!(
                    "message {message_id} failed ({}: {}) before reaching {}",
                    or_dash(&message.failure_code),
                    or_dash(&message.failure_reason),
                    message_status(status as i32)
                );
            }
            Progress::Pending => {}
        }
        if Instant::now() + interval > deadline {
            bail!(
                "message {message_id} is still {} after {}s (waiting for {}); raise --timeout-seconds",
                message_status(message.status),
                wait.as_secs(),
                message_status(status as i32)
            );
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => bail!("interrupted while waiting for message {message_id}"),
        }
    }
}

/// Where a waited-for message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Reached,
    Pending,
    /// Failed, and failure was not what we wait for.
    Failed,
}

/// Whether `current` satisfies waiting for `target`: the statuses go requested → dispatched →
/// delivered → read, so a later one satisfies an earlier target (a read message was delivered);
/// `failed` only satisfies waiting for `failed`.
pub fn progress(current: i32, target: MessageStatus) -> Progress {
    let rank = |status: MessageStatus| match status {
        MessageStatus::Unspecified => 0,
        MessageStatus::Requested => 1,
        MessageStatus::Dispatched => 2,
        MessageStatus::Delivered => 3,
        MessageStatus::Read => 4,
        MessageStatus::Failed => 5,
    };
    let current = MessageStatus::try_from(current).unwrap_or(MessageStatus::Unspecified);
    match (current, target) {
        (MessageStatus::Failed, MessageStatus::Failed) => Progress::Reached,
        (MessageStatus::Failed, _) => Progress::Failed,
        (_, MessageStatus::Failed) => Progress::Pending,
        (current, target) if rank(current) >= rank(target) => Progress::Reached,
        _ => Progress::Pending,
    }
}

/// One line per status reached while waiting (stderr).
pub fn progress_line(message: &Message) -> String {
    let mut line = format!("{}  {}", Utc::now().format("%H:%M:%S%.3f"), message_status(message.status));
    if !message.provider_message_id.is_empty() {
        line.push_str(&format!("  provider id {}", message.provider_message_id));
    }
    if !message.failure_code.is_empty() || !message.failure_reason.is_empty() {
        line.push_str(&format!("  {}: {}", or_dash(&message.failure_code), or_dash(&message.failure_reason)));
    }
    line
}

pub fn message_text(message: &Message, now: DateTime<Utc>) -> String {
    let mut rows = vec![
        ("message", message.message_id.clone()),
        ("status", message_status(message.status)),
        ("template", format!("{} ({})", or_dash(&message.template_name), or_dash(&message.template_id))),
        ("channel", channel(message.channel)),
        ("to", or_dash(&message.recipient_phone)),
    ];
    if !message.contact_id.is_empty() {
        rows.push(("contact", message.contact_id.clone()));
    }
    if !message.language.is_empty() {
        rows.push(("language", message.language.clone()));
    }
    if !message.rendered_header.is_empty() {
        rows.push(("header", message.rendered_header.clone()));
    }
    if !message.header_image_url.is_empty() {
        rows.push(("header image", message.header_image_url.clone()));
    }
    rows.push(("text", message.rendered_body.clone()));
    rows.push(("department", or_dash(&message.department_id)));
    rows.push(("webhook", or_dash(&message.webhook_url)));
    rows.push(("metadata", metadata(&message.metadata)));
    if !message.additional_information.is_empty() {
        rows.push(("info", message.additional_information.clone()));
    }
    rows.push(("agent", or_dash(&message.agent_id)));
    rows.push(("provider id", or_dash(&message.provider_message_id)));
    if message.status == MessageStatus::Failed as i32 || !message.failure_code.is_empty() {
        rows.push((
            "failure",
            format!(
                "{}: {} ({})",
                or_dash(&message.failure_code),
                or_dash(&message.failure_reason),
                if message.failure_terminal { "terminal" } else { "retryable" }
            ),
        ));
    }
    rows.push(("requested", out::timestamp_ago(message.requested_at.as_ref(), now)));
    let mut text = out::fields(&rows);
    text.push('\n');
    let history = message.history.iter().map(|change| (change.at.as_ref(), change.status, change.detail.as_str()));
    text.push_str(&out::block("history", &status_history(history)));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use dw_proto::messaging::v1::{Channel, MessageStatusChange};

    use crate::cli::Command;
    use crate::testing::parse;

    #[test]
    fn wait_has_defaults_and_shares_the_global_timeout() {
        let cli = parse(&["messages", "wait", "--message-id", "m"]).unwrap();
        assert_eq!(cli.global.timeout_seconds, None);
        assert_eq!(cli.global.messaging_addr, "http://127.0.0.1:50053");
        let Command::Messages(MessagesCommand::Wait { status, interval_ms, .. }) = cli.command else {
            panic!("not wait")
        };
        assert_eq!((status, interval_ms), (MessageStatus::Delivered, 500));
        let cli =
            parse(&["messages", "wait", "--message-id", "m", "--status", "read", "--timeout-seconds", "30"]).unwrap();
        assert_eq!(cli.global.timeout_seconds, Some(30));
        assert!(parse(&["messages", "wait", "--message-id", "m", "--status", "sent"]).is_err());
        let cli =
            parse(&["--messaging-addr", "http://10.0.0.5:50053", "messages", "get", "--message-id", "m"]).unwrap();
        assert_eq!(cli.global.messaging_addr, "http://10.0.0.5:50053");
    }

    #[test]
    fn later_statuses_satisfy_earlier_targets_and_failure_stops_the_wait() {
        use MessageStatus::*;
        assert_eq!(progress(Requested as i32, Delivered), Progress::Pending);
        assert_eq!(progress(Dispatched as i32, Delivered), Progress::Pending);
        assert_eq!(progress(Delivered as i32, Delivered), Progress::Reached);
        assert_eq!(progress(Read as i32, Delivered), Progress::Reached);
        assert_eq!(progress(Read as i32, Dispatched), Progress::Reached);
        assert_eq!(progress(Delivered as i32, Read), Progress::Pending);
        assert_eq!(progress(Failed as i32, Delivered), Progress::Failed);
        assert_eq!(progress(Failed as i32, Failed), Progress::Reached);
        assert_eq!(progress(Read as i32, Failed), Progress::Pending);
        assert_eq!(progress(99, Delivered), Progress::Pending);
    }

    #[test]
    fn messages_render_with_their_history() {
        let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
        let message = Message {
            message_id: "m-1".into(),
            template_id: "t-1".into(),
            template_name: "order_shipped".into(),
            channel: Channel::Whatsapp as i32,
            recipient_phone: "+5511987654321".into(),
            rendered_body: "Olá José".into(),
            status: MessageStatus::Delivered as i32,
            provider_message_id: "wamid.X".into(),
            requested_at: at(1_714_550_400),
            history: vec![
                MessageStatusChange {
                    status: MessageStatus::Requested as i32,
                    at: at(1_714_550_400),
                    detail: String::new(),
                },
                MessageStatusChange {
                    status: MessageStatus::Dispatched as i32,
                    at: at(1_714_550_401),
                    detail: "1 attempt".into(),
                },
                MessageStatusChange {
                    status: MessageStatus::Delivered as i32,
                    at: at(1_714_550_402),
                    detail: String::new(),
                },
            ],
            ..Default::default()
        };
        let now = DateTime::from_timestamp(1_714_550_410, 0).unwrap();
        let text = message_text(&message, now);
        assert!(text.contains("status       delivered\n"), "{text}");
        assert!(text.contains("template     order_shipped (t-1)\n"), "{text}");
        assert!(text.contains("provider id  wamid.X\n"), "{text}");
        assert!(!text.contains("failure"), "{text}");
        assert!(text.contains("  AT                    STATUS      DETAIL\n"), "{text}");
        assert!(text.contains("  2024-05-01T08:00:01Z  dispatched  1 attempt\n"), "{text}");
        let failed = Message {
            status: MessageStatus::Failed as i32,
            failure_code: "131026".into(),
            failure_reason: "undeliverable".into(),
            failure_terminal: true,
            ..message
        };
        assert!(message_text(&failed, now).contains("failure      131026: undeliverable (terminal)\n"));
        assert!(progress_line(&failed).ends_with("failed  provider id wamid.X  131026: undeliverable"));
    }
}
