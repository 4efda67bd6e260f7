//! Paging of list RPCs: the page size (50 unless asked, at most 200) and the log's page token,
//! opaque to callers: the last row's `requested_at` (microseconds) and message id.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i32 = 200;

/// How many rows a page holds: `page_size`, or [`DEFAULT_PAGE_SIZE`] when it is 0.
pub fn page_limit(page_size: i32) -> Result<i64, String> {
    match page_size {
        0 => Ok(DEFAULT_PAGE_SIZE),
        size @ 1..=MAX_PAGE_SIZE => Ok(i64::from(size)),
        _ => Err(format!("must be between 1 and {MAX_PAGE_SIZE}")),
    }
}

/// Where the next page of the log starts: after this row, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub requested_at: DateTime<Utc>,
    pub message_id: uuid::Uuid,
}

impl PageToken {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.requested_at.timestamp_micros(), self.message_id))
    }

    pub fn decode(token: &str) -> Result<Self, String> {
        URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| {
                let (micros, id) = text.split_once('|')?;
                let requested_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
                Some(Self { requested_at, message_id: uuid::Uuid::parse_str(id).ok()? })
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
    fn a_page_holds_50_rows_unless_asked_and_never_more_than_200() {
        assert_eq!(page_limit(0), Ok(50));
        assert_eq!(page_limit(1), Ok(1));
        assert_eq!(page_limit(200), Ok(200));
        for refused in [-1, 201] {
            assert_eq!(page_limit(refused), Err("must be between 1 and 200".to_owned()), "{refused}");
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
