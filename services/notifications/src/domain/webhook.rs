//! Webhooks in the Standard Webhooks format: the event types an endpoint may subscribe to, the
//! limits of an endpoint, how a delivery is signed, and what follows each attempt (the retry
//! schedule with jitter, giving up, turning the endpoint off). Time and jitter are arguments.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The events an endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 5] =
    ["template.sent", "message.dispatched", "message.delivered", "message.read", "message.failed"];

pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// The Standard Webhooks retry schedule: delays before attempts 2..=8.
pub fn default_schedule() -> Vec<Duration> {
    [5, 300, 1800, 7200, 18000, 36000, 36000].into_iter().map(Duration::from_secs).collect()
}

/// The event types of an endpoint: one or more, each from [`EVENT_TYPES`].
pub fn parse_event_types(event_types: &[String]) -> Result<Vec<String>, String> {
    let known = |t: &String| EVENT_TYPES.contains(&t.as_str());
    if event_types.is_empty() || !event_types.iter().all(known) {
        return Err(format!("one or more of {}", EVENT_TYPES.join(", ")));
    }
    Ok(event_types.to_vec())
}

/// An endpoint's description: at most [`MAX_DESCRIPTION_CHARS`] characters as given, kept trimmed.
pub fn parse_description(description: &str) -> Result<String, String> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!("at most {MAX_DESCRIPTION_CHARS} characters"));
    }
    Ok(description.trim().to_owned())
}

/// The `whsec_` secret of a signing key (drawn from a random source by the caller).
pub fn secret_from_key(key: &[u8; 24]) -> String {
    format!("whsec_{}", STANDARD.encode(key))
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` with the key of a `whsec_` secret;
/// `None` when the secret is not one.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// A delivery's `webhook-id` header, which is also its `delivery_id` on the wire.
pub fn message_id(delivery_id: uuid::Uuid) -> String {
    format!("msg_{}", delivery_id.simple())
}

/// A webhook delivery's id, as a caller gives it back: the `delivery_id` that `ListDeliveries`
/// answers (its `webhook-id`, `msg_` and 32 hex digits) or the bare UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryId(uuid::Uuid);

impl DeliveryId {
    pub fn parse(text: &str) -> Result<Self, String> {
        let refused = || "must be a delivery id: msg_ and 32 hex digits, or a UUID".to_owned();
        let uuid = match text.strip_prefix("msg_") {
            Some(hex) if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => uuid::Uuid::try_parse(hex),
            Some(_) => return Err(refused()),
            None => uuid::Uuid::try_parse(text),
        };
        uuid.map(Self).map_err(|_| refused())
    }

    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

/// As the wire writes it: `msg_<32 hex>`.
impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&message_id(self.0))
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Another attempt is due at `next_attempt_at`.
    Pending,
    Succeeded,
    /// Not retried: the endpoint answered 410 or the destination was refused.
    Failed,
    /// The retry schedule is exhausted.
    GaveUp,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::GaveUp => "gave_up",
        }
    }

    /// What became of an attempt, as `dw_webhook_deliveries` counts it: a pending delivery is retrying.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Pending => "retrying",
            other => other.as_str(),
        }
    }
}

/// What an attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// No HTTP answer: a timeout, a network failure, or a secret that cannot sign.
    NoAnswer,
    /// Not sent: the destination is not allowed.
    Refused,
}

impl Answer {
    /// As the delivery log keeps it: 0 when no HTTP answer came.
    pub fn status_code(self) -> i32 {
        match self {
            Self::Status(code) => i32::from(code),
            Self::NoAnswer | Self::Refused => 0,
        }
    }

    fn succeeded(self) -> bool {
        matches!(self, Self::Status(200..=299))
    }
}

/// Why the worker turns an endpoint off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableReason {
    /// It answered 410 Gone.
    Gone,
    /// It has been failing for 5 days.
    Failing,
}

impl DisableReason {
    /// The endpoint's `disabled_reason`.
    pub fn description(self) -> &'static str {
        match self {
            Self::Gone => "endpoint answered 410 Gone",
            Self::Failing => "failing for 5 days",
        }
    }

    /// The `reason` label of `dw_webhook_endpoints_disabled`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Gone => "gone",
            Self::Failing => "failing",
        }
    }
}

/// What an attempt tells about its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointChange {
    Disable(DisableReason),
    /// It answered 2xx: no longer failing.
    Healthy,
    /// It failed (since the first failure of a run): disabled once that run is 5 days long.
    Failing,
}

/// What follows an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterAttempt {
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub endpoint: EndpointChange,
}

/// What follows attempt number `attempt` (from 1) that got `answer` at `now`; `jitter` is a sample
/// from [0, 1) (see [`retry_delay`]).
pub fn after_attempt(
    answer: Answer,
    attempt: i32,
    schedule: &[Duration],
    now: DateTime<Utc>,
    jitter: f64,
) -> AfterAttempt {
    let (status, next_attempt_at) = if answer.succeeded() {
        (DeliveryStatus::Succeeded, None)
    } else if matches!(answer, Answer::Status(410) | Answer::Refused) {
        (DeliveryStatus::Failed, None)
    } else {
        match retry_delay(schedule, attempt, jitter) {
            Some(delay) => (DeliveryStatus::Pending, Some(now + chrono::Duration::from_std(delay).unwrap_or_default())),
            None => (DeliveryStatus::GaveUp, None),
        }
    };
    let endpoint = match answer {
        Answer::Status(410) => EndpointChange::Disable(DisableReason::Gone),
        answer if answer.succeeded() => EndpointChange::Healthy,
        _ => EndpointChange::Failing,
    };
    AfterAttempt { status, next_attempt_at, endpoint }
}

/// The delay before the attempt after failed attempt number `attempt` (from 1), or `None` once the
/// schedule is exhausted. `jitter`, a sample from [0, 1), scales it by 90% to 110%, which spreads
/// the retries of many deliveries that failed together.
pub fn retry_delay(schedule: &[Duration], attempt: i32, jitter: f64) -> Option<Duration> {
    let index = usize::try_from(attempt - 1).ok()?;
    let delay = schedule.get(index)?;
    Some(delay.mul_f64(0.9 + jitter * 0.2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const NO_JITTER: f64 = 0.5;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 9, 30, 0).unwrap()
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    fn when(answer: Answer, attempt: i32) -> AfterAttempt {
        after_attempt(answer, attempt, &default_schedule(), now(), NO_JITTER)
    }

    #[test]
    fn the_schedule_waits_longer_after_each_failed_attempt_then_gives_up() {
        let expected = [secs(5), secs(300), secs(1800), secs(7200), secs(18000), secs(36000), secs(36000)];
        for (attempt, delay) in (1..).zip(expected) {
            assert_eq!(retry_delay(&default_schedule(), attempt, NO_JITTER), Some(delay), "after attempt {attempt}");
        }
        assert_eq!(retry_delay(&default_schedule(), 8, NO_JITTER), None, "attempt 8 is the last");
        assert_eq!(retry_delay(&default_schedule(), 0, NO_JITTER), None);
    }

    #[test]
    fn jitter_moves_a_retry_by_at_most_ten_percent() {
        assert_eq!(retry_delay(&default_schedule(), 2, 0.0), Some(secs(270)));
        let latest = retry_delay(&default_schedule(), 2, 0.999_999).unwrap();
        assert!(latest > secs(329) && latest < secs(330), "{latest:?}");
    }

    #[test]
    fn a_failed_attempt_is_retried_on_schedule_and_marks_the_endpoint_failing() {
        for answer in [Answer::Status(503), Answer::Status(404), Answer::Status(302), Answer::NoAnswer] {
            let after = when(answer, 1);
            assert_eq!(after.status, DeliveryStatus::Pending, "{answer:?}");
            assert_eq!(after.next_attempt_at, Some(now() + chrono::Duration::seconds(5)));
            assert_eq!(after.endpoint, EndpointChange::Failing);
        }
        assert_eq!(when(Answer::Status(500), 3).next_attempt_at, Some(now() + chrono::Duration::minutes(30)));
    }

    #[test]
    fn the_eighth_failed_attempt_gives_up() {
        let after = when(Answer::Status(500), 8);
        assert_eq!(after.status, DeliveryStatus::GaveUp);
        assert_eq!(after.status.outcome(), "gave_up");
        assert_eq!(after.next_attempt_at, None);
        assert_eq!(when(Answer::Status(500), 7).status, DeliveryStatus::Pending);
    }

    #[test]
    fn a_2xx_answer_succeeds_and_clears_the_failing_run() {
        let after = when(Answer::Status(204), 4);
        assert_eq!(
            after,
            AfterAttempt {
                status: DeliveryStatus::Succeeded,
                next_attempt_at: None,
                endpoint: EndpointChange::Healthy
            }
        );
    }

    #[test]
    fn gone_fails_for_good_and_disables_the_endpoint() {
        let after = when(Answer::Status(410), 1);
        assert_eq!((after.status, after.next_attempt_at), (DeliveryStatus::Failed, None));
        assert_eq!(after.endpoint, EndpointChange::Disable(DisableReason::Gone));
        assert_eq!(DisableReason::Gone.description(), "endpoint answered 410 Gone");
    }

    #[test]
    fn a_refused_destination_fails_without_retry() {
        let after = when(Answer::Refused, 1);
        assert_eq!((after.status, after.next_attempt_at), (DeliveryStatus::Failed, None));
        assert_eq!(after.endpoint, EndpointChange::Failing);
        assert_eq!(Answer::Refused.status_code(), 0);
    }

    #[test]
    fn a_pending_delivery_counts_as_retrying() {
        assert_eq!(DeliveryStatus::Pending.outcome(), "retrying");
        assert_eq!(DeliveryStatus::Succeeded.outcome(), "succeeded");
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The Standard Webhooks specification's example.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, id, 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn a_delivery_of_ours_is_signed_over_id_timestamp_and_utf8_body() {
        // Expected value from Python's hmac/hashlib/base64, not from this code.
        let secret = secret_from_key(&std::array::from_fn(|i| i as u8));
        assert_eq!(secret, "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX");
        let id = message_id(uuid::Uuid::parse_str("0190f1c2-a3b4-7c5d-8e9f-a0b1c2d3e4f5").unwrap());
        assert_eq!(id, "msg_0190f1c2a3b47c5d8e9fa0b1c2d3e4f5");
        let body =
            r#"{"type":"message.failed","timestamp":"2026-11-24T09:30:00Z","data":{"reason":"número inválido"}}"#;
        assert_eq!(
            signature(&secret, &id, now().timestamp(), body).as_deref(),
            Some("v1,3oGo7m2xOGM+KJ670guFZrmnGLsTuHd9NGUXFUMhF7c=")
        );
    }

    #[test]
    fn a_delivery_is_named_by_the_id_the_list_gives_or_by_its_uuid() {
        let uuid = uuid::Uuid::parse_str("0190f1c2-a3b4-7c5d-8e9f-a0b1c2d3e4f5").unwrap();
        let listed = message_id(uuid);
        assert_eq!(DeliveryId::parse(&listed).map(|id| id.as_uuid()), Ok(uuid));
        assert_eq!(DeliveryId::parse("msg_0190F1C2A3B47C5D8E9FA0B1C2D3E4F5").map(|id| id.as_uuid()), Ok(uuid));
        assert_eq!(DeliveryId::parse("0190f1c2-a3b4-7c5d-8e9f-a0b1c2d3e4f5").map(|id| id.as_uuid()), Ok(uuid));
        assert_eq!(DeliveryId::parse(&listed).map(|id| id.to_string()), Ok(listed));
    }

    #[test]
    fn anything_else_is_not_a_delivery_id() {
        for text in [
            "",
            "msg_",
            "msg_xyz",
            "msg_0190f1c2-a3b4-7c5d-8e9f-a0b1c2d3e4f5",
            "msg_0190f1c2a3b47c5d8e9fa0b1c2d3e4f",
            "msg_0190f1c2a3b47c5d8e9fa0b1c2d3e4f5a",
            "msg_+190f1c2a3b47c5d8e9fa0b1c2d3e4f5",
            "MSG_0190f1c2a3b47c5d8e9fa0b1c2d3e4f5",
            "msg_é190f1c2a3b47c5d8e9fa0b1c2d3e4f",
            "whatever",
        ] {
            assert_eq!(
                DeliveryId::parse(text),
                Err("must be a delivery id: msg_ and 32 hex digits, or a UUID".to_owned()),
                "{text}"
            );
        }
    }

    #[test]
    fn a_secret_that_is_not_a_whsec_key_cannot_sign() {
        assert_eq!(signature("not-a-secret", "msg_1", 1, "{}"), None);
        assert_eq!(signature("whsec_%%%", "msg_1", 1, "{}"), None);
    }

    #[test]
    fn an_endpoint_subscribes_to_known_event_types_only() {
        let given = |types: &[&str]| parse_event_types(&types.iter().map(|t| t.to_string()).collect::<Vec<_>>());
        assert_eq!(
            given(&["template.sent", "message.failed"]),
            Ok(vec!["template.sent".into(), "message.failed".into()])
        );
        let refused = Err(format!("one or more of {}", EVENT_TYPES.join(", ")));
        assert_eq!(given(&[]), refused);
        assert_eq!(given(&["template.sent", "message.bounced"]), refused);
    }

    #[test]
    fn a_description_is_at_most_500_characters_and_kept_trimmed() {
        assert_eq!(parse_description("  CRM automation \n"), Ok("CRM automation".to_owned()));
        assert_eq!(parse_description(&"é".repeat(500)).map(|d| d.chars().count()), Ok(500));
        assert_eq!(parse_description(&"é".repeat(501)), Err("at most 500 characters".to_owned()));
    }
}
