//! The vocabulary of the single-notifications log (message statuses and channels as the log keeps
//! them) and of agents' notifications (their kinds, titles, and where a new stream starts).

use dw_proto::messaging::v1 as messaging;
use dw_proto::notifications::v1 as pb;

/// The most kept notifications a new `Subscribe` may ask to receive first (`backlog`).
pub const MAX_BACKLOG: u32 = 100;

/// How much of a client's message an agent's notification repeats, in characters.
pub const MAX_PREVIEW_CHARS: usize = 500;

pub fn status_from_name(name: &str) -> messaging::MessageStatus {
    match name {
        "requested" => messaging::MessageStatus::Requested,
        "dispatched" => messaging::MessageStatus::Dispatched,
        "delivered" => messaging::MessageStatus::Delivered,
        "read" => messaging::MessageStatus::Read,
        "failed" => messaging::MessageStatus::Failed,
        _ => messaging::MessageStatus::Unspecified,
    }
}

/// The name the log keeps for a status, e.g. `delivered`.
pub fn status_name(status: messaging::MessageStatus) -> String {
    status.as_str_name().trim_start_matches("MESSAGE_STATUS_").to_lowercase()
}

pub fn channel_name(channel: i32) -> &'static str {
    match messaging::Channel::try_from(channel) {
        Ok(messaging::Channel::Whatsapp) => "whatsapp",
        Ok(messaging::Channel::Sms) => "sms",
        _ => "unspecified",
    }
}

pub fn channel_from_name(name: &str) -> messaging::Channel {
    match name {
        "whatsapp" => messaging::Channel::Whatsapp,
        "sms" => messaging::Channel::Sms,
        _ => messaging::Channel::Unspecified,
    }
}

/// What an agent is notified of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ClientMessage,
    TaskAssigned,
    SendFailed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientMessage => "client_message",
            Self::TaskAssigned => "task_assigned",
            Self::SendFailed => "send_failed",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::ClientMessage => "New client message",
            Self::TaskAssigned => "Task assigned",
            Self::SendFailed => "A send failed",
        }
    }

    /// The kind on the wire of a kept notification's kind name.
    pub fn pb_from_name(name: &str) -> pb::agent_notification::Kind {
        match name {
            "client_message" => pb::agent_notification::Kind::ClientMessage,
            "task_assigned" => pb::agent_notification::Kind::TaskAssigned,
            "send_failed" => pb::agent_notification::Kind::SendFailed,
            _ => pb::agent_notification::Kind::Unspecified,
        }
    }
}

/// The start of a client message, as its agent's notification shows it.
pub fn preview(text: &str) -> String {
    text.chars().take(MAX_PREVIEW_CHARS).collect()
}

/// The sequence a new stream starts after, so that it first replays the agent's latest `backlog`
/// notifications when its last one is `last_sequence`.
pub fn backlog_start(last_sequence: i64, backlog: u32) -> i64 {
    (last_sequence - i64::from(backlog)).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_channels_round_trip_through_their_names() {
        for status in [
            messaging::MessageStatus::Requested,
            messaging::MessageStatus::Dispatched,
            messaging::MessageStatus::Delivered,
            messaging::MessageStatus::Read,
            messaging::MessageStatus::Failed,
        ] {
            assert_eq!(status_from_name(&status_name(status)), status);
        }
        assert_eq!(status_name(messaging::MessageStatus::Delivered), "delivered");
        assert_eq!(status_from_name("bounced"), messaging::MessageStatus::Unspecified);
        for channel in [messaging::Channel::Whatsapp, messaging::Channel::Sms] {
            assert_eq!(channel_from_name(channel_name(channel as i32)), channel);
        }
        assert_eq!(channel_name(99), "unspecified");
    }

    #[test]
    fn each_kind_reaches_the_wire_by_its_kept_name() {
        assert_eq!(Kind::pb_from_name(Kind::ClientMessage.as_str()), pb::agent_notification::Kind::ClientMessage);
        assert_eq!(Kind::pb_from_name(Kind::TaskAssigned.as_str()), pb::agent_notification::Kind::TaskAssigned);
        assert_eq!(Kind::pb_from_name(Kind::SendFailed.as_str()), pb::agent_notification::Kind::SendFailed);
        assert_eq!(Kind::pb_from_name("holiday"), pb::agent_notification::Kind::Unspecified);
    }

    #[test]
    fn a_preview_keeps_the_first_500_characters() {
        assert_eq!(preview("Olá, tudo bem?"), "Olá, tudo bem?");
        assert_eq!(preview(&"ç".repeat(600)), "ç".repeat(500));
    }

    #[test]
    fn a_new_stream_starts_backlog_notifications_before_the_last_one() {
        assert_eq!(backlog_start(42, 0), 42, "no backlog: only new ones");
        assert_eq!(backlog_start(42, 10), 32);
        assert_eq!(backlog_start(3, MAX_BACKLOG), 0, "never before the first");
    }
}
