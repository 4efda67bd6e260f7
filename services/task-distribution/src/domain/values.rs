//! Value types of the distribution context, valid by construction.

use chrono::NaiveDate;
pub use dw_ids::{PhoneNumber, TaskId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Digits of the daily sequence in a protocol.
pub const PROTOCOL_SEQUENCE_DIGITS: usize = 6;

/// A readable, tenant-unique ticket number: `YYYYMMDD` + the zero-padded daily sequence.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Protocol(String);

impl Protocol {
    pub fn new(day: NaiveDate, sequence: u32) -> Self {
        Self(format!("{}{:0width$}", day.format("%Y%m%d"), sequence, width = PROTOCOL_SEQUENCE_DIGITS))
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        let well_formed = value.len() >= 8 + PROTOCOL_SEQUENCE_DIGITS
            && value.len() <= 8 + 10
            && value.bytes().all(|b| b.is_ascii_digit())
            && NaiveDate::parse_from_str(&value[..8], "%Y%m%d").is_ok();
        if !well_formed {
            return Err(format!("must be YYYYMMDD followed by at least {PROTOCOL_SEQUENCE_DIGITS} digits"));
        }
        Ok(Self(value.to_owned()))
    }

    /// A prefix to search by: 1-18 digits.
    pub fn parse_prefix(value: &str) -> Result<String, String> {
        if value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must be 1-18 digits".into());
        }
        Ok(value.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    Whatsapp,
    Sms,
    Voice,
    Email,
    Chat,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whatsapp => "whatsapp",
            Self::Sms => "sms",
            Self::Voice => "voice",
            Self::Email => "email",
            Self::Chat => "chat",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "whatsapp" => Some(Self::Whatsapp),
            "sms" => Some(Self::Sms),
            "voice" => Some(Self::Voice),
            "email" => Some(Self::Email),
            "chat" => Some(Self::Chat),
            _ => None,
        }
    }
}

/// 0 (lowest) to 9 (highest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Priority(u8);

impl Priority {
    pub fn parse(value: i32) -> Result<Self, String> {
        u8::try_from(value).ok().filter(|p| *p <= 9).map(Self).ok_or_else(|| "must be between 0 and 9".to_owned())
    }

    pub fn value(self) -> i32 {
        i32::from(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientContact {
    pub name: String,
    pub phone: PhoneNumber,
    pub contact_id: Option<String>,
}

impl ClientContact {
    /// A contact not at hand: erased, or left out of where it was read from (snapshots).
    pub fn withheld() -> Self {
        Self { name: String::new(), phone: PhoneNumber::erased(), contact_id: None }
    }
}

/// A client's display name: 1-200 printable characters.
pub fn parse_client_name(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 200 || trimmed.chars().any(char::is_control) {
        return Err("must be 1-200 printable characters".into());
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_the_day_and_a_padded_sequence() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        assert_eq!(Protocol::new(day, 42).as_str(), "20261124000042");
        assert!(Protocol::parse("20261124000042").is_ok());
        assert!(Protocol::parse("20261324000042").is_err(), "month 13");
        assert!(Protocol::parse("2026112400004x").is_err());
        assert!(Protocol::parse("2026").is_err());
        assert!(Protocol::parse_prefix("202611").is_ok());
        assert!(Protocol::parse_prefix("2026%").is_err());
    }

    #[test]
    fn phones_priorities_and_channels_parse_at_the_edge() {
        assert!(PhoneNumber::parse("+5511987654321").is_ok());
        assert!(PhoneNumber::parse("5511987654321").is_err());
        assert!(PhoneNumber::parse("+0123456789").is_err());
        assert!(PhoneNumber::parse("+12").is_err());
        assert_eq!(Priority::parse(9).map(Priority::value), Ok(9));
        assert!(Priority::parse(10).is_err());
        assert!(Priority::parse(-1).is_err());
        assert_eq!(Channel::parse("sms"), Some(Channel::Sms));
        assert_eq!(Channel::parse("fax"), None);
        assert_eq!(parse_client_name("  José  ").as_deref(), Ok("José"));
        assert!(parse_client_name(" ").is_err());
    }
}
