//! A tenant's provider accounts: the ids its webhooks must name and the secrets they are verified
//! with. Parsed once at the edge; the secrets are `SecretString`s, so `Debug` never shows them.

use secrecy::{ExposeSecret, SecretString};

/// Secrets are this many characters.
pub const SECRET_CHARS: std::ops::RangeInclusive<usize> = 8..=256;

/// A WhatsApp business phone number id: 1-32 ASCII digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumberId(String);

impl PhoneNumberId {
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        if value.is_empty() || value.len() > 32 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must be 1-32 digits");
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An SMS account sid: `AC` and 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSid(String);

impl AccountSid {
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let valid =
            value.strip_prefix("AC").is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if !valid {
            return Err("must be AC followed by 32 hex digits");
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A provider secret (app secret, verify token, auth token): 8-256 characters, none of them a
/// control character.
#[derive(Debug, Clone)]
pub struct ProviderSecret(SecretString);

impl ProviderSecret {
    /// The reason never repeats the value.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let chars = value.chars().count();
        if !SECRET_CHARS.contains(&chars) || value.chars().any(char::is_control) {
            return Err("must be 8-256 printable characters");
        }
        Ok(Self(SecretString::from(value.to_owned())))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }

    /// Whether `candidate` is this secret, in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.0.expose_secret().as_bytes(), candidate.as_bytes())
    }
}

impl From<SecretString> for ProviderSecret {
    /// A secret as stored (it was parsed when it was set).
    fn from(secret: SecretString) -> Self {
        Self(secret)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The tenant's WhatsApp Cloud API account.
#[derive(Debug, Clone)]
pub struct WhatsappAccount {
    pub phone_number_id: PhoneNumberId,
    /// The key of `X-Hub-Signature-256`.
    pub app_secret: ProviderSecret,
    /// What the GET handshake presents as `hub.verify_token`.
    pub verify_token: ProviderSecret,
}

/// The tenant's SMS account.
#[derive(Debug, Clone)]
pub struct SmsAccount {
    pub account_sid: AccountSid,
    /// The key of `X-Twilio-Signature` on the callbacks.
    pub auth_token: ProviderSecret,
}

/// What a change does to one channel's account.
#[derive(Debug, Clone)]
pub enum Change<T> {
    Keep,
    Set(T),
    Remove,
}

impl<T> Change<T> {
    pub fn is_keep(&self) -> bool {
        matches!(self, Self::Keep)
    }

    /// `kept`, `set` or `removed`, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Keep => "kept",
            Self::Set(_) => "set",
            Self::Remove => "removed",
        }
    }
}

/// A `SetProviderConfig`: at least one channel is set or removed, or the send webhooks' policy
/// replaced.
#[derive(Debug, Clone)]
pub struct ProviderChange {
    pub whatsapp: Change<WhatsappAccount>,
    pub sms: Change<SmsAccount>,
    /// The hosts a send's own webhook may name, replaced; `None`: unchanged.
    pub send_webhooks: Option<super::send_webhook::AllowedHosts>,
}

/// A tenant's accounts as the webhooks use them (secrets decrypted).
#[derive(Debug, Clone, Default)]
pub struct TenantProviders {
    pub whatsapp: Option<WhatsappAccount>,
    pub sms: Option<SmsAccount>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_number_ids_are_digits() {
        assert_eq!(PhoneNumberId::parse("100000000000001").unwrap().as_str(), "100000000000001");
        assert!(PhoneNumberId::parse(&"9".repeat(32)).is_ok());
        for bad in ["", "12a4", "+5511", " 123", &"9".repeat(33), "١٢٣"] {
            assert!(PhoneNumberId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn account_sids_are_ac_and_32_hex_digits() {
        assert!(AccountSid::parse("AC0123456789abcdef0123456789ABCDEF").is_ok());
        for bad in ["", "AC", "ac0123456789abcdef0123456789abcdef", "AC0123456789abcdef0123456789abcde", "AC123"] {
            assert!(AccountSid::parse(bad).is_err(), "{bad:?}");
        }
        assert!(AccountSid::parse("AC0123456789abcdef0123456789abcdefg").is_err());
        assert!(AccountSid::parse("AC0123456789abcdef0123456789abcdeg").is_err());
    }

    #[test]
    fn secrets_are_8_to_256_printable_characters_and_never_printed() {
        let secret = ProviderSecret::parse("s3cret-value").unwrap();
        assert!(!format!("{secret:?}").contains("s3cret"));
        assert!(secret.matches("s3cret-value"));
        assert!(!secret.matches("s3cret-valuE") && !secret.matches("s3cret") && !secret.matches(""));
        assert!(ProviderSecret::parse("12345678").is_ok());
        assert!(ProviderSecret::parse("sécrète àçñ").is_ok(), "any printable character");
        assert!(ProviderSecret::parse(&"x".repeat(256)).is_ok());
        for bad in ["", "1234567", "with\nnewline", "tab\tinside", &"x".repeat(257)] {
            let error = ProviderSecret::parse(bad).unwrap_err();
            assert_eq!(error, "must be 8-256 printable characters");
        }
    }
}
