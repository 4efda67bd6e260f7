//! Pure argument parsers (used as clap value parsers and by the commands), and the checks of
//! arguments that go together.

use chrono::{DateTime, NaiveDate, Utc};
use dw_auth::Role;
use dw_proto::agentsessions::v1::Reason;
use dw_proto::distribution::v1::{Channel, TaskStatus};
use dw_proto::messaging::v1::{HeaderKind, MessageStatus, TemplateCategory};

use crate::failure::UsageError;

/// Parses `id=Label` into a [`Reason`]. The id is everything before the first `=`; the label may
/// itself contain `=`. Both sides are trimmed and must be non-empty.
pub fn reason(value: &str) -> Result<Reason, String> {
    let Some((id, label)) = value.split_once('=') else {
        return Err(format!("expected id=Label, got {value:?}"));
    };
    let (id, label) = (id.trim(), label.trim());
    if id.is_empty() {
        return Err(format!("missing reason id in {value:?} (expected id=Label)"));
    }
    if label.is_empty() {
        return Err(format!("missing reason label in {value:?} (expected id=Label)"));
    }
    Ok(Reason { id: id.to_owned(), label: label.to_owned() })
}

/// Parses a role name (`agent`, `manager`, `service`; case-insensitive).
pub fn role(value: &str) -> Result<Role, String> {
    Role::parse(&value.trim().to_ascii_lowercase())
        .ok_or_else(|| format!("unknown role {value:?}; one of: agent, manager, service"))
}

/// Parses an RFC 3339 timestamp (`2024-05-01T08:00:00Z`, `2024-05-01T08:00:00-03:00`) or a bare
/// date (`2024-05-01`, midnight UTC) into a protobuf timestamp.
pub fn timestamp(value: &str) -> Result<prost_types::Timestamp, String> {
    let value = value.trim();
    let at: DateTime<Utc> = match DateTime::parse_from_rfc3339(value) {
        Ok(at) => at.with_timezone(&Utc),
        Err(rfc_err) => match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            Ok(date) => date.and_hms_opt(0, 0, 0).map(|naive| naive.and_utc()).ok_or("invalid date")?,
            Err(_) => {
                return Err(format!("expected RFC 3339 (2024-05-01T08:00:00Z) or a date (2024-05-01): {rfc_err}"));
            }
        },
    };
    Ok(prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 })
}

/// Parses a non-empty identifier-like argument (agent, department, permission ids).
pub fn non_empty(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() { Err("must not be empty".into()) } else { Ok(value.to_owned()) }
}

/// The event types a webhook can subscribe to.
pub const WEBHOOK_EVENTS: [&str; 5] =
    ["template.sent", "message.dispatched", "message.delivered", "message.read", "message.failed"];

/// Parses a webhook event type (one of [`WEBHOOK_EVENTS`]; case-insensitive).
pub fn webhook_event(value: &str) -> Result<String, String> {
    one_of("event type", &WEBHOOK_EVENTS.map(|event| (event, event)), value).map(str::to_owned)
}

/// Parses a webhook delivery id into the hyphenated UUID RedeliverWebhook expects: the
/// `msg_<32 hex>` shown by ListDeliveries (and sent as the `webhook-id` header), or any UUID form.
pub fn delivery_id(value: &str) -> Result<String, String> {
    let value = value.trim();
    let id = value.strip_prefix("msg_").unwrap_or(value);
    uuid::Uuid::try_parse(id)
        .map(|uuid| uuid.hyphenated().to_string())
        .map_err(|_| format!("expected a delivery id (msg_<32 hex digits>, or a UUID), got {value:?}"))
}

/// Parses a task channel: `whatsapp`, `sms`, `voice`, `email`, `chat` (case-insensitive).
pub fn channel(value: &str) -> Result<Channel, String> {
    one_of(
        "channel",
        &[
            ("whatsapp", Channel::Whatsapp),
            ("sms", Channel::Sms),
            ("voice", Channel::Voice),
            ("email", Channel::Email),
            ("chat", Channel::Chat),
        ],
        value,
    )
}

/// Parses the channel of an inbound client message: `whatsapp` or `sms` (case-insensitive).
pub fn messaging_channel(value: &str) -> Result<dw_proto::messaging::v1::Channel, String> {
    use dw_proto::messaging::v1::Channel as Messaging;
    one_of("channel", &[("whatsapp", Messaging::Whatsapp), ("sms", Messaging::Sms)], value)
}

/// Parses a task status: `queued`, `assigned`, `completed`, `cancelled` (case-insensitive).
pub fn task_status(value: &str) -> Result<TaskStatus, String> {
    // The American spelling is accepted too, without being offered.
    if value.trim().eq_ignore_ascii_case("canceled") {
        return Ok(TaskStatus::Cancelled);
    }
    one_of(
        "status",
        &[
            ("queued", TaskStatus::Queued),
            ("assigned", TaskStatus::Assigned),
            ("completed", TaskStatus::Completed),
            ("cancelled", TaskStatus::Cancelled),
        ],
        value,
    )
}

/// Parses a phone number into E.164 (`+` then 2-15 digits, the first not 0). Spaces, dashes,
/// dots and parentheses are dropped first, so `+55 (11) 91234-5678` is `+5511912345678`.
pub fn phone(value: &str) -> Result<String, String> {
    let compact: String = value.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
    let Some(digits) = compact.strip_prefix('+') else {
        return Err(format!("expected an E.164 number starting with + (e.g. +5511912345678), got {value:?}"));
    };
    let valid =
        (2..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0');
    if valid {
        Ok(compact)
    } else {
        Err(format!(
            "expected an E.164 number: + and 2 to 15 digits, the first not 0 (e.g. +5511912345678), got {value:?}"
        ))
    }
}

/// Parses a NATS subject prefix: dot-separated tokens without whitespace or wildcards
/// (`dw.messaging`).
pub fn subject_prefix(value: &str) -> Result<String, String> {
    let value = value.trim();
    let valid = !value.is_empty()
        && value
            .split('.')
            .all(|token| !token.is_empty() && !token.chars().any(|c| c.is_whitespace() || c == '*' || c == '>'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!("expected dot-separated subject tokens without wildcards (e.g. dw.messaging), got {value:?}"))
    }
}

/// Parses a template category: `utility`, `marketing`, `authentication` (case-insensitive).
pub fn template_category(value: &str) -> Result<TemplateCategory, String> {
    one_of(
        "category",
        &[
            ("utility", TemplateCategory::Utility),
            ("marketing", TemplateCategory::Marketing),
            ("authentication", TemplateCategory::Authentication),
        ],
        value,
    )
}

/// Parses a template header kind: `none`, `text`, `image` (case-insensitive).
pub fn header_kind(value: &str) -> Result<HeaderKind, String> {
    one_of(
        "header kind",
        &[("none", HeaderKind::Unspecified), ("text", HeaderKind::Text), ("image", HeaderKind::Image)],
        value,
    )
}

/// Parses a message status: `requested`, `dispatched`, `delivered`, `read`, `failed`.
pub fn message_status(value: &str) -> Result<MessageStatus, String> {
    one_of(
        "status",
        &[
            ("requested", MessageStatus::Requested),
            ("dispatched", MessageStatus::Dispatched),
            ("delivered", MessageStatus::Delivered),
            ("read", MessageStatus::Read),
            ("failed", MessageStatus::Failed),
        ],
        value,
    )
}

/// The value named `value` among `choices` (trimmed, case-insensitive); otherwise an error that
/// names every choice: `unknown <what> "fax"; one of: whatsapp, sms`.
fn one_of<T: Copy>(what: &str, choices: &[(&str, T)], value: &str) -> Result<T, String> {
    let wanted = value.trim().to_ascii_lowercase();
    match choices.iter().find(|(name, _)| *name == wanted) {
        Some((_, choice)) => Ok(*choice),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(format!("unknown {what} {value:?}; one of: {}", names.join(", ")))
        }
    }
}

/// Checks a `--from`/`--to` range given together: `--to` must be after `--from`.
pub fn ordered_range(
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
) -> Result<(), UsageError> {
    match (from, to) {
        (Some(from), Some(to)) if (to.seconds, to.nanos) <= (from.seconds, from.nanos) => {
            Err(UsageError("--to must be after --from".into()))
        }
        _ => Ok(()),
    }
}

/// Parses `key=value` (metadata). The key is everything before the first `=`, trimmed and
/// non-empty; the value is kept as given (it may be empty or contain `=`).
pub fn key_value(value: &str) -> Result<(String, String), String> {
    let Some((key, val)) = value.split_once('=') else {
        return Err(format!("expected key=value, got {value:?}"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("missing key in {value:?} (expected key=value)"));
    }
    Ok((key.to_owned(), val.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_splits_on_the_first_equals_and_trims() {
        let parsed = reason("end-of-shift=End of shift").unwrap();
        assert_eq!(parsed.id, "end-of-shift");
        assert_eq!(parsed.label, "End of shift");
        let parsed = reason(" meeting = Meeting = long ").unwrap();
        assert_eq!(parsed.id, "meeting");
        assert_eq!(parsed.label, "Meeting = long");
    }

    #[test]
    fn reason_rejects_missing_parts() {
        assert!(reason("lunch").is_err());
        assert!(reason("=Lunch").is_err());
        assert!(reason("lunch=").is_err());
        assert!(reason("  =  ").is_err());
    }

    #[test]
    fn role_is_case_insensitive_and_rejects_unknown_names() {
        assert_eq!(role("agent"), Ok(Role::Agent));
        assert_eq!(role("Manager"), Ok(Role::Manager));
        assert_eq!(role(" service "), Ok(Role::Service));
        assert!(role("root").is_err());
    }

    #[test]
    fn timestamp_accepts_rfc3339_with_offsets_and_bare_dates() {
        let utc = timestamp("2024-05-01T08:00:00Z").unwrap();
        assert_eq!(utc.seconds, 1_714_550_400);
        assert_eq!(utc.nanos, 0);
        let offset = timestamp("2024-05-01T05:00:00.5-03:00").unwrap();
        assert_eq!(offset.seconds, 1_714_550_400);
        assert_eq!(offset.nanos, 500_000_000);
        let date = timestamp("2024-05-01").unwrap();
        assert_eq!(date.seconds, 1_714_521_600);
        assert!(timestamp("yesterday").is_err());
        assert!(timestamp("2024-13-01").is_err());
    }

    #[test]
    fn non_empty_trims_and_rejects_blank() {
        assert_eq!(non_empty(" ana "), Ok("ana".to_owned()));
        assert!(non_empty("   ").is_err());
    }

    #[test]
    fn channels_and_statuses_parse_case_insensitively() {
        assert_eq!(channel("WhatsApp"), Ok(Channel::Whatsapp));
        assert_eq!(channel(" sms "), Ok(Channel::Sms));
        assert_eq!(channel("voice"), Ok(Channel::Voice));
        assert_eq!(channel("email"), Ok(Channel::Email));
        assert_eq!(channel("chat"), Ok(Channel::Chat));
        assert!(channel("fax").is_err());
        assert_eq!(messaging_channel("sms"), Ok(dw_proto::messaging::v1::Channel::Sms));
        assert!(messaging_channel("voice").is_err());
        assert_eq!(task_status("queued"), Ok(TaskStatus::Queued));
        assert_eq!(task_status("Assigned"), Ok(TaskStatus::Assigned));
        assert_eq!(task_status("completed"), Ok(TaskStatus::Completed));
        assert_eq!(task_status("canceled"), Ok(TaskStatus::Cancelled));
        assert!(task_status("open").is_err());
    }

    #[test]
    fn phones_are_normalized_to_e164() {
        assert_eq!(phone("+5511912345678"), Ok("+5511912345678".to_owned()));
        assert_eq!(phone(" +55 (11) 91234-5678 "), Ok("+5511912345678".to_owned()));
        assert_eq!(phone("+1.415.555.0100"), Ok("+14155550100".to_owned()));
        assert!(phone("5511912345678").is_err());
        assert!(phone("+0511912345678").is_err());
        assert!(phone("+55119123456789012").is_err());
        assert!(phone("+55abc").is_err());
        assert!(phone("+").is_err());
    }

    #[test]
    fn messaging_enums_parse_case_insensitively() {
        assert_eq!(template_category(" Utility "), Ok(TemplateCategory::Utility));
        assert_eq!(template_category("marketing"), Ok(TemplateCategory::Marketing));
        assert_eq!(template_category("AUTHENTICATION"), Ok(TemplateCategory::Authentication));
        assert!(template_category("promo").is_err());
        assert_eq!(header_kind("none"), Ok(HeaderKind::Unspecified));
        assert_eq!(header_kind("Text"), Ok(HeaderKind::Text));
        assert_eq!(header_kind("image"), Ok(HeaderKind::Image));
        assert!(header_kind("video").is_err());
        assert_eq!(message_status("delivered"), Ok(MessageStatus::Delivered));
        assert_eq!(message_status("READ"), Ok(MessageStatus::Read));
        assert_eq!(message_status("failed"), Ok(MessageStatus::Failed));
        assert!(message_status("sent").is_err());
    }

    #[test]
    fn unknown_choices_are_named_with_every_choice() {
        assert_eq!(channel("fax"), Err(r#"unknown channel "fax"; one of: whatsapp, sms, voice, email, chat"#.into()));
        assert_eq!(task_status(" Canceled "), Ok(TaskStatus::Cancelled));
        assert_eq!(
            task_status("open"),
            Err(r#"unknown status "open"; one of: queued, assigned, completed, cancelled"#.into())
        );
        assert_eq!(
            webhook_event("x"),
            Err(r#"unknown event type "x"; one of: template.sent, message.dispatched, message.delivered, message.read, message.failed"#.into())
        );
    }

    #[test]
    fn ranges_must_end_after_they_start() {
        let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        assert!(ordered_range(Some(&at(1)), Some(&at(2))).is_ok());
        assert!(ordered_range(Some(&at(2)), Some(&at(2))).is_err());
        assert!(ordered_range(Some(&at(2)), Some(&at(1))).is_err());
        assert!(ordered_range(None, Some(&at(1))).is_ok());
        assert!(ordered_range(Some(&at(1)), None).is_ok());
    }

    #[test]
    fn key_values_split_on_the_first_equals() {
        assert_eq!(key_value("order=A-1"), Ok(("order".to_owned(), "A-1".to_owned())));
        assert_eq!(key_value(" utm = a=b"), Ok(("utm".to_owned(), " a=b".to_owned())));
        assert_eq!(key_value("empty="), Ok(("empty".to_owned(), String::new())));
        assert!(key_value("novalue").is_err());
        assert!(key_value(" =x").is_err());
    }

    #[test]
    fn subject_prefixes_are_plain_tokens() {
        assert_eq!(subject_prefix("dw.messaging"), Ok("dw.messaging".to_owned()));
        assert_eq!(subject_prefix("test_ab12"), Ok("test_ab12".to_owned()));
        assert!(subject_prefix("").is_err());
        assert!(subject_prefix("dw..messaging").is_err());
        assert!(subject_prefix("dw.messaging.").is_err());
        assert!(subject_prefix("dw.*").is_err());
        assert!(subject_prefix("dw.>").is_err());
        assert!(subject_prefix("dw messaging").is_err());
    }

    #[test]
    fn delivery_ids_become_hyphenated_uuids() {
        let uuid = "0196a3b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b";
        assert_eq!(delivery_id("msg_0196a3b27c4d7e8f9a0b1c2d3e4f5a6b").unwrap(), uuid);
        assert_eq!(delivery_id(" msg_0196A3B27C4D7E8F9A0B1C2D3E4F5A6B ").unwrap(), uuid);
        assert_eq!(delivery_id(uuid).unwrap(), uuid);
        assert_eq!(delivery_id("0196a3b27c4d7e8f9a0b1c2d3e4f5a6b").unwrap(), uuid);
        assert_eq!(delivery_id(&format!("msg_{uuid}")).unwrap(), uuid);
        for bad in ["", "msg_", "msg_0196a3b2", "msg_p5jXN8AQM9LWM0D4loKWxJek", "wh_0196a3b27c4d7e8f9a0b1c2d3e4f5a6b"] {
            assert!(delivery_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn webhook_events_are_the_five_known_types() {
        for event in WEBHOOK_EVENTS {
            assert_eq!(webhook_event(event).unwrap(), event);
        }
        assert_eq!(webhook_event(" Message.Failed ").unwrap(), "message.failed");
        assert!(webhook_event("message.sent").is_err());
        assert!(webhook_event("").is_err());
    }
}
