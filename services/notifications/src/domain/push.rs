//! The pure parts of Web Push: a browser subscription's keys (RFC 8291), the VAPID key (RFC 8292),
//! which endpoints a browser may register, and what follows each push (a retry, a dropped
//! subscription, giving up, a refused destination).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use web_push_native::Auth;
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};
use web_push_native::p256::PublicKey;

use crate::domain::destination::Destination;

/// The longest push endpoint URL a browser may register, in bytes.
pub const MAX_ENDPOINT_LEN: usize = 2048;

/// Attempts of one push before it fails for good (a 429 does not count against it).
pub const MAX_ATTEMPTS: i32 = 5;

/// A browser subscription's keys: `p256dh` (a P-256 public key) and `auth` (16 bytes), both
/// base64url; a refusal names the field.
pub fn parse_keys(p256dh: &str, auth: &str) -> Result<(PublicKey, Auth), (&'static str, String)> {
    let public = URL_SAFE_NO_PAD
        .decode(p256dh.trim())
        .ok()
        .and_then(|bytes| PublicKey::from_sec1_bytes(&bytes).ok())
        .ok_or(("p256dh", "must be a base64url P-256 public key".to_owned()))?;
    let auth = URL_SAFE_NO_PAD
        .decode(auth.trim())
        .ok()
        .filter(|bytes| bytes.len() == 16)
        .map(|bytes| Auth::clone_from_slice(&bytes))
        .ok_or(("auth", "must be 16 bytes, base64url".to_owned()))?;
    Ok((public, auth))
}

/// The VAPID key pair of `DW_VAPID_PRIVATE_KEY`: a base64url raw 32-byte P-256 scalar.
pub fn parse_vapid_key(encoded: &str) -> Result<ES256KeyPair, String> {
    let raw = URL_SAFE_NO_PAD.decode(encoded.trim()).map_err(|_| "DW_VAPID_PRIVATE_KEY is not base64url".to_owned())?;
    // `from_bytes` panics on any other length.
    if raw.len() != 32 {
        return Err(format!("DW_VAPID_PRIVATE_KEY must be 32 bytes, not {}", raw.len()));
    }
    ES256KeyPair::from_bytes(&raw).map_err(|e| format!("DW_VAPID_PRIVATE_KEY: {e}"))
}

/// The VAPID public key browsers subscribe with: the uncompressed point, base64url.
pub fn public_key(vapid: &ES256KeyPair) -> String {
    URL_SAFE_NO_PAD.encode(vapid.public_key().public_key().to_bytes_uncompressed())
}

/// Whether a browser may register `endpoint`: at most [`MAX_ENDPOINT_LEN`] bytes, and https unless
/// its host is allow-listed (a local push service). Where it resolves is checked apart, by the
/// destination rules.
pub fn endpoint_allowed(endpoint: &str, allowed_hosts: &[String]) -> bool {
    let Ok(destination) = Destination::parse(endpoint) else { return false };
    let https = endpoint.starts_with("https://");
    endpoint.len() <= MAX_ENDPOINT_LEN && (https || destination.is_allow_listed(allowed_hosts))
}

/// Where a push job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Sent,
    /// The subscription is gone (404/410, or unusable): the job and the subscription are dropped.
    Dropped,
    /// Another attempt is due.
    Pending,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Dropped => "dropped",
            Self::Pending => "pending",
            Self::Failed => "failed",
        }
    }
}

/// What became of a push, as `dw_push_deliveries` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Gone,
    Throttled,
    Retrying,
    Failed,
    /// Not sent: the destination policy refused the endpoint.
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Gone => "gone",
            Self::Throttled => "throttled",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Refused => "refused",
        }
    }
}

/// What follows a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterPush {
    pub state: JobState,
    /// When the job is pending: how long until the next attempt.
    pub retry_in: Option<Duration>,
    pub outcome: Outcome,
}

impl AfterPush {
    /// Whether the subscription goes too: it is gone, or its endpoint may not be called (a
    /// subscription that can never be delivered to is not kept to fail every push).
    pub fn drops_subscription(&self) -> bool {
        self.state == JobState::Dropped || self.outcome == Outcome::Refused
    }
}

/// What follows a push the destination policy refused: it fails, without retry.
pub fn after_refused() -> AfterPush {
    AfterPush { state: JobState::Failed, retry_in: None, outcome: Outcome::Refused }
}

/// What follows attempt number `attempt` (from 1) of a push that got HTTP `status` (`None`: no
/// answer) and, perhaps, a `Retry-After`.
pub fn after_push(status: Option<u16>, retry_after: Option<Duration>, attempt: i32) -> AfterPush {
    let backoff = Duration::from_secs(u64::from(attempt.unsigned_abs()) * 2);
    let retries_left = attempt < MAX_ATTEMPTS;
    let (state, retry_in, outcome) = match status {
        Some(200..=299) => (JobState::Sent, None, Outcome::Sent),
        Some(404 | 410) => (JobState::Dropped, None, Outcome::Gone),
        Some(429) => (JobState::Pending, Some(retry_after.unwrap_or(Duration::from_secs(30))), Outcome::Throttled),
        Some(500..) | None if retries_left => (JobState::Pending, Some(backoff), Outcome::Retrying),
        _ => (JobState::Failed, None, Outcome::Failed),
    };
    AfterPush { state, retry_in, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8291, section 5: the user agent's public key and authentication secret, and the
    // application server's key pair (checked with Python's `cryptography`).
    const UA_PUBLIC: &str = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const UA_AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const AS_PUBLIC: &str = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";

    fn secs(seconds: u64) -> Option<Duration> {
        Some(Duration::from_secs(seconds))
    }

    #[test]
    fn a_browser_subscription_has_a_p256_key_and_a_16_byte_secret() {
        let (public, auth) = parse_keys(&format!(" {UA_PUBLIC} "), UA_AUTH).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(public.to_sec1_bytes()), UA_PUBLIC);
        assert_eq!(URL_SAFE_NO_PAD.encode(auth.as_slice()), UA_AUTH);
    }

    #[test]
    fn keys_that_are_not_keys_are_refused_by_field() {
        let off_curve = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw8";
        for p256dh in [off_curve, "not base64!", ""] {
            assert_eq!(parse_keys(p256dh, UA_AUTH).err().map(|(field, _)| field), Some("p256dh"), "{p256dh}");
        }
        for auth in ["BTBZMqHH6r4Tts7J_aSI", "BTBZMqHH6r4Tts7J_aSIgg00", "%%"] {
            assert_eq!(parse_keys(UA_PUBLIC, auth).err().map(|(field, _)| field), Some("auth"), "{auth}");
        }
    }

    #[test]
    fn the_vapid_public_key_is_derived_from_the_configured_private_key() {
        assert_eq!(public_key(&parse_vapid_key(AS_PRIVATE).unwrap()), AS_PUBLIC);
        assert_eq!(parse_vapid_key("***").err().as_deref(), Some("DW_VAPID_PRIVATE_KEY is not base64url"));
    }

    #[test]
    fn a_vapid_key_of_the_wrong_length_is_refused_not_a_panic() {
        assert_eq!(parse_vapid_key("AAAA").err().as_deref(), Some("DW_VAPID_PRIVATE_KEY must be 32 bytes, not 3"));
        let too_long = URL_SAFE_NO_PAD.encode([7u8; 33]);
        assert_eq!(parse_vapid_key(&too_long).err().as_deref(), Some("DW_VAPID_PRIVATE_KEY must be 32 bytes, not 33"));
        assert!(parse_vapid_key(&URL_SAFE_NO_PAD.encode([0u8; 32])).is_err(), "zero is not a private key");
    }

    #[test]
    fn a_browser_registers_an_https_endpoint_or_an_allow_listed_host() {
        let allowed = ["127.0.0.1".to_owned()];
        assert!(endpoint_allowed("https://fcm.googleapis.com/fcm/send/abc", &[]));
        assert!(!endpoint_allowed("http://push.example.com/abc", &[]));
        assert!(endpoint_allowed("http://127.0.0.1:8080/push", &allowed));
        assert!(!endpoint_allowed("ftp://127.0.0.1/push", &allowed));
        let long = format!("https://push.example.com/{}", "a".repeat(MAX_ENDPOINT_LEN));
        assert!(!endpoint_allowed(&long, &[]));
    }

    #[test]
    fn a_delivered_push_is_sent_and_a_gone_subscription_dropped() {
        assert_eq!(
            after_push(Some(201), None, 1),
            AfterPush { state: JobState::Sent, retry_in: None, outcome: Outcome::Sent }
        );
        for status in [404, 410] {
            let after = after_push(Some(status), None, 1);
            assert_eq!((after.state, after.outcome, after.retry_in), (JobState::Dropped, Outcome::Gone, None));
        }
    }

    #[test]
    fn a_throttled_push_waits_retry_after_or_thirty_seconds_even_after_the_last_attempt() {
        assert_eq!(after_push(Some(429), secs(7), 1).retry_in, secs(7));
        let after = after_push(Some(429), None, MAX_ATTEMPTS + 3);
        assert_eq!((after.state, after.outcome, after.retry_in), (JobState::Pending, Outcome::Throttled, secs(30)));
    }

    #[test]
    fn server_errors_and_silence_back_off_two_seconds_per_attempt_then_fail() {
        for status in [Some(500), Some(503), None] {
            assert_eq!(after_push(status, None, 1).retry_in, secs(2), "{status:?}");
            let fourth = after_push(status, None, 4);
            assert_eq!(
                (fourth.state, fourth.outcome, fourth.retry_in),
                (JobState::Pending, Outcome::Retrying, secs(8))
            );
            let last = after_push(status, None, MAX_ATTEMPTS);
            assert_eq!((last.state, last.outcome, last.retry_in), (JobState::Failed, Outcome::Failed, None));
        }
    }

    #[test]
    fn a_refused_endpoint_fails_at_once_and_its_subscription_goes() {
        let after = after_refused();
        assert_eq!((after.state, after.outcome, after.retry_in), (JobState::Failed, Outcome::Refused, None));
        assert!(after.drops_subscription());
        assert!(after_push(Some(410), None, 1).drops_subscription());
        assert!(!after_push(Some(500), None, 1).drops_subscription());
        assert!(!after_push(Some(400), None, 1).drops_subscription());
    }

    #[test]
    fn other_answers_fail_at_once() {
        for status in [301, 400, 403, 413] {
            assert_eq!(after_push(Some(status), None, 1).state, JobState::Failed, "{status}");
        }
    }
}
