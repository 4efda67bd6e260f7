//! Paging of list RPCs: the page size (50 unless asked, at most 200) and the log's page token,
//! opaque to callers: the last row's `requested_at` (microseconds) and message id.

use chrono::{DateTime, Utc};
use dw_grpc_kit::paging::{decode_parts, encode_token};

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i32 = 200;

/// Where the next page of the log starts: after this row, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub requested_at: DateTime<Utc>,
    pub message_id: uuid::Uuid,
}

impl PageToken {
    /// The token, in the kernel's page-token format.
    pub fn encode(&self) -> String {
        encode_token(&[&self.requested_at.timestamp_micros().to_string(), &self.message_id.to_string()])
    }

    pub fn decode(token: &str) -> Result<Self, String> {
        decode_parts(token)
            .and_then(|parts| match parts.as_slice() {
                [micros, id] => Some(Self {
                    requested_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
                    message_id: uuid::Uuid::parse_str(id).ok()?,
                }),
                _ => None,
            })
            .ok_or_else(|| "not a token returned by this call".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn token() -> PageToken {
        PageToken {
            requested_at: Utc.with_ymd_and_hms(2026, 11, 24, 9, 30, 0).unwrap(),
            message_id: uuid::Uuid::parse_str("0190f1c2-a3b4-7c5d-8e9f-a0b1c2d3e4f5").unwrap(),
        }
    }

    #[test]
    fn a_page_token_is_base64url_of_micros_and_message_id() {
        // base64url("1795512600000000|0190f1c2-a3b4-7c5d-8e9f-a0b1c2d3e4f5"), computed with Python.
        let encoded = "MTc5NTUxMjYwMDAwMDAwMHwwMTkwZjFjMi1hM2I0LTdjNWQtOGU5Zi1hMGIxYzJkM2U0ZjU";
        assert_eq!(token().encode(), encoded);
        assert_eq!(PageToken::decode(encoded), Ok(token()));
    }

    #[test]
    fn a_page_token_keeps_microseconds() {
        let precise =
            PageToken { requested_at: token().requested_at + chrono::Duration::microseconds(123_456), ..token() };
        assert_eq!(PageToken::decode(&precise.encode()), Ok(precise));
    }

    #[test]
    fn anything_else_is_not_a_page_token() {
        let not_ours = Err("not a token returned by this call".to_owned());
        for token in ["", "%%%", "bm90IGEgdG9rZW4", "MTc5NTUxMjYwMDAwMDAwMHxub3QtYS11dWlk"] {
            assert_eq!(PageToken::decode(token), not_ours, "{token}");
        }
    }
}
