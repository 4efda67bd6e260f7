//! Property-based fuzzing of the ids parsed at the edge: `PhoneNumber` (E.164, as contacts,
//! sends and provider webhooks parse it) and the string ids (`TenantId` is one token of a NATS
//! subject, so a tenant id that slipped a `.`, `*` or `>` through would reach another tenant's
//! subjects). Each `parse` never panics, accepts exactly what its rule says, and a parsed value
//! round-trips through its text. Cases: `PROPTEST_CASES` (`make fuzz` runs many more); failures
//! are kept in `tests/fuzz-regressions/fuzz_ids.txt` and replayed first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dw_ids::{AgentId, DepartmentId, PhoneNumber, ReasonId, RequestId, TenantId};
use proptest::prelude::*;

const TARGET: dw_fuzz::Target = dw_fuzz::Target::new("tests/fuzz-regressions/fuzz_ids.txt");

/// Any text, weighted towards what an id parser must refuse: NUL and control characters,
/// whitespace, NATS wildcards and separators, non-ASCII digits and letters, a full-width plus.
fn hostile_text(max: usize) -> impl Strategy<Value = String> {
    let specials = vec![
        "\0", "\t", "\n", "\r", " ", "\u{7f}", "\u{200b}", "\u{202e}", ".", "*", ">", "/", "A", "é", "+", "\u{ff0b}",
        "\u{0663}", "\u{ff11}", "😀",
    ];
    dw_fuzz::hostile_text(max, "[a-z0-9_+-]{1,8}", specials, 1)
}

/// E.164 as the rule states it, written independently of `PhoneNumber::parse`.
fn is_e164(text: &str) -> bool {
    let Some(digits) = text.strip_prefix('+') else { return false };
    let count = digits.chars().count();
    (7..=15).contains(&count) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0')
}

fn is_token(text: &str, max: usize) -> bool {
    let mut chars = text.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok && text.len() <= max && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn valid_phone() -> impl Strategy<Value = String> {
    "\\+[1-9][0-9]{6,14}"
}

proptest! {
    #![proptest_config(TARGET.config(2048))]

    /// Any text: no panic; accepted exactly when it is E.164, and then kept as given.
    #[test]
    fn phone_parse_accepts_exactly_e164(text in prop_oneof![hostile_text(24), valid_phone(), "\\+?[0-9 ()-]{0,20}"]) {
        match PhoneNumber::parse(&text) {
            Ok(phone) => {
                prop_assert!(is_e164(&text), "accepted {:?}", text);
                prop_assert_eq!(phone.as_str(), text.as_str());
            }
            Err(_) => prop_assert!(!is_e164(&text), "refused {:?}", text),
        }
    }

    /// A valid number round-trips through its displayed text and its JSON.
    #[test]
    fn phone_round_trips(text in valid_phone()) {
        let phone = PhoneNumber::parse(&text).unwrap();
        prop_assert_eq!(PhoneNumber::parse(&phone.to_string()), Ok(phone.clone()));
        let json = serde_json::to_string(&phone).unwrap();
        prop_assert_eq!(serde_json::from_str::<PhoneNumber>(&json).unwrap(), phone);
    }

    /// A valid number with anything around or inside it (spaces, dashes, a second plus, NUL) is
    /// refused: the parser does not guess.
    #[test]
    fn phone_with_anything_added_is_refused(
        text in valid_phone(),
        at in any::<prop::sample::Index>(),
        junk in prop::sample::select(vec![" ", "-", "(", "+", "\0", "\n", "a", "\u{0663}", "\u{ff11}"]),
    ) {
        let mut chars: Vec<char> = text.chars().collect();
        let position = 1 + at.index(chars.len());
        chars.splice(position..position, junk.chars());
        let changed: String = chars.into_iter().collect();
        prop_assert!(PhoneNumber::parse(&changed).is_err(), "accepted {:?}", changed);
        let prefixed = format!("{junk}{text}");
        prop_assert!(PhoneNumber::parse(&prefixed).is_err());
    }

    /// Tenant, department and reason ids: no panic; accepted exactly by their rule, so never with a
    /// NATS separator or wildcard, whitespace or a control character; round-trip through text.
    #[test]
    fn token_ids_accept_exactly_their_rule(text in prop_oneof![hostile_text(20), "[a-z0-9][a-z0-9_-]{0,70}"]) {
        let tenant = TenantId::parse(&text);
        prop_assert_eq!(tenant.is_ok(), is_token(&text, 63), "tenant {:?}", text);
        prop_assert_eq!(DepartmentId::parse(&text).is_ok(), is_token(&text, 64), "department {:?}", text);
        prop_assert_eq!(ReasonId::parse(&text).is_ok(), is_token(&text, 64), "reason {:?}", text);
        if let Ok(tenant) = tenant {
            prop_assert!(!tenant.as_str().contains(['.', '*', '>', ' ']));
            prop_assert_eq!(tenant.to_string().parse::<TenantId>(), Ok(tenant.clone()));
            let json = serde_json::to_string(&tenant).unwrap();
            prop_assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), tenant);
        }
    }

    /// Agent ids and request ids: no panic; accepted exactly by their rule.
    #[test]
    fn agent_and_request_ids_accept_exactly_their_rule(
        text in prop_oneof![hostile_text(20), "[A-Za-z0-9.@:_-]{1,140}"],
    ) {
        let length_ok = !text.is_empty() && text.len() <= 128;
        let agent_ok = length_ok && text.chars().all(|c| c.is_ascii_alphanumeric() || ".@:_-".contains(c));
        prop_assert_eq!(AgentId::parse(&text).is_ok(), agent_ok, "agent {:?}", text);
        let request_ok = length_ok && !text.chars().any(|c| c.is_control() || c.is_whitespace());
        prop_assert_eq!(RequestId::parse(&text).is_ok(), request_ok, "request {:?}", text);
    }
}

/// Inputs up to ~100 KB: no panic, never accepted.
#[test]
fn huge_inputs_are_refused() {
    let strategy = (50_000usize..100_000, prop::sample::select(vec!["1", "a", "\0", "é", "+1"]));
    TARGET
        .huge_runner(32)
        .run(&strategy, |(size, filler)| {
            let huge = filler.repeat(size / filler.len());
            let plus = format!("+{huge}");
            prop_assert!(PhoneNumber::parse(&huge).is_err());
            prop_assert!(PhoneNumber::parse(&plus).is_err());
            prop_assert!(TenantId::parse(&huge).is_err());
            prop_assert!(AgentId::parse(&huge).is_err());
            prop_assert!(RequestId::parse(&huge).is_err());
            Ok(())
        })
        .unwrap();
}
