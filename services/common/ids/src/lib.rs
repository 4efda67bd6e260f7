//! Identifier newtypes shared by the services, parsed once at the edge and valid by construction.
//!
//! Every id is its own type, so a swapped pair (a template id where a message id belongs, a
//! tenant where an agent belongs) does not compile. String ids ([`TenantId`], [`AgentId`], …) keep
//! their text; uuid ids ([`TaskId`], [`MessageId`], …) are UUIDv7 so they sort by creation time.
//! With the `sqlx` feature every id binds and decodes directly in queries.

use serde::{Deserialize, Serialize};
use std::fmt;

#[cfg(feature = "sqlx")]
mod sql;
mod uuid_ids;

pub use uuid_ids::*;

fn check_token(value: &str, max: usize) -> Result<(), String> {
    let Some(first) = value.chars().next() else {
        return Err("must not be empty".into());
    };
    if value.len() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err("must start with a lowercase letter or digit".into());
    }
    if !value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        return Err("may contain only lowercase letters, digits, '_' and '-'".into());
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $parse:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $parse;
                check(value)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(value: &str) -> Result<Self, String> {
                Self::parse(value)
            }
        }

        #[cfg(feature = "sqlx")]
        $crate::sql::string_id_sql!($name);
    };
}

string_id!(
    /// A tenant: `^[a-z0-9][a-z0-9_-]{0,62}$`, so it is safe as one token of a NATS subject.
    TenantId,
    |value| check_token(value, 63)
);

string_id!(
    /// An agent's identity: the `sub` of their tokens. 1-128 of `A-Z a-z 0-9 . _ @ : -`.
    AgentId,
    |value| {
        if value.is_empty() || value.len() > 128 {
            return Err("must be 1-128 characters".into());
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | ':' | '-')) {
            return Err("may contain only letters, digits and . _ @ : -".into());
        }
        Ok(())
    }
);

string_id!(
    /// A department, `^[a-z0-9][a-z0-9_-]{0,63}$`.
    DepartmentId,
    |value| check_token(value, 64)
);

string_id!(
    /// An exit or break reason, `^[a-z0-9][a-z0-9_-]{0,63}$`.
    ReasonId,
    |value| check_token(value, 64)
);

string_id!(
    /// A client-chosen idempotency key: 1-128 printable characters.
    RequestId,
    |value| {
        if value.is_empty() {
            return Err("is required (a client-chosen id that makes retries safe)".into());
        }
        if value.len() > 128 || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must be 1-128 printable characters without spaces".into());
        }
        Ok(())
    }
);

/// An E.164 phone number: `+` and 7-15 digits, not starting with 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(value: &str) -> Result<Self, String> {
        let digits = value.strip_prefix('+').ok_or("must be E.164: + and the country code")?;
        let valid =
            (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if !valid {
            return Err("must be E.164: + followed by 7-15 digits".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// The number of a client whose personal data was erased (empty): what a stored event
    /// reads as once its key is gone (`dw_eventstore::personal`).
    pub fn erased() -> Self {
        Self(String::new())
    }

    pub fn is_erased(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(feature = "sqlx")]
sql::string_id_sql!(PhoneNumber);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_valid_and_reject_invalid_values() {
        assert!(TenantId::parse("acme-1").is_ok());
        assert!(TenantId::parse(&"a".repeat(63)).is_ok());
        assert!(TenantId::parse(&"a".repeat(64)).is_err());
        assert!(TenantId::parse("Acme").is_err());
        assert!(TenantId::parse("acme.corp").is_err());
        assert!(AgentId::parse("agent.ana@acme").is_ok());
        assert!(AgentId::parse("").is_err());
        assert!(AgentId::parse("has space").is_err());
        assert!(DepartmentId::parse("sales-1").is_ok());
        assert!(DepartmentId::parse("Sales").is_err());
        assert!(ReasonId::parse("lunch").is_ok());
        assert!(ReasonId::parse("_lunch").is_err());
        assert!(RequestId::parse("").is_err());
        assert!(RequestId::parse(&"x".repeat(129)).is_err());
        assert!(RequestId::parse("0193f0a4-7c1e-7d2a-9b8e-2f1c3d4e5f60").is_ok());
        assert!(PhoneNumber::parse("+5511987654321").is_ok());
        assert!(PhoneNumber::parse("5511987654321").is_err());
        assert!(PhoneNumber::parse("+0123456789").is_err());
    }
}
