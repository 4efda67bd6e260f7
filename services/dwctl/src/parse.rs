//! Pure argument parsers (used as clap value parsers and by the commands).

use chrono::{DateTime, NaiveDate, Utc};
use dw_auth::Role;
use dw_proto::agentsessions::v1::Reason;

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
}
