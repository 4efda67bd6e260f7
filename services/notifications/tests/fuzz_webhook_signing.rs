//! Property-based fuzzing of Standard Webhooks signing (`domain::webhook`): `signature` on any
//! secret, id, timestamp and body; the `whsec_` secrets and `msg_` ids we make; `DeliveryId::parse`
//! on any text. A signature checks out, with the specification's verification written here
//! independently, for its own delivery and for nothing else. Cases: `PROPTEST_CASES` (`make fuzz`
//! runs many more); failures are kept in `tests/fuzz-regressions/fuzz_webhook_signing.txt`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use notifications::domain::webhook::{DeliveryId, message_id, secret_from_key, signature};
use proptest::prelude::*;
use sha2::Sha256;

const TARGET: dw_fuzz::Target = dw_fuzz::Target::new("tests/fuzz-regressions/fuzz_webhook_signing.txt");

/// What a receiver does (Standard Webhooks, "Verifying webhooks"): HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` under the base64 key after `whsec_`, compared in constant time with
/// each space-separated `v1,<base64>` of the `webhook-signature` header.
fn receiver_accepts(secret: &str, id: &str, timestamp: i64, body: &str, header: &str) -> bool {
    let Some(key) = secret.strip_prefix("whsec_").and_then(|k| STANDARD.decode(k).ok()) else {
        return false;
    };
    header.split(' ').filter_map(|s| s.strip_prefix("v1,")).filter_map(|b| STANDARD.decode(b).ok()).any(|sig| {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        mac.verify_slice(&sig).is_ok()
    })
}

/// Any text, weighted towards what breaks signing: dots (the separator), NUL and control
/// characters, JSON punctuation, non-ASCII.
fn hostile_text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => any::<char>().prop_map(String::from),
        2 => "[A-Za-z0-9+/=_-]{1,12}",
        1 => prop::sample::select(vec![".", " ", "\0", "\n", "\r", "\u{7f}", "{", "\"", "é", "😀", "whsec_", "v1,"])
            .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|pieces| pieces.concat())
}

fn key() -> impl Strategy<Value = [u8; 24]> {
    any::<[u8; 24]>()
}

/// A delivery id as we make them: `msg_` and the UUID's 32 hex digits (never a dot, so
/// `{id}.{timestamp}.{body}` names one delivery).
fn delivery_id() -> impl Strategy<Value = String> {
    any::<u128>().prop_map(|n| message_id(uuid::Uuid::from_u128(n)))
}

proptest! {
    #![proptest_config(TARGET.config(1024))]

    /// Any secret, id, timestamp and body: no panic; a secret that is not `whsec_` and base64
    /// cannot sign; a signature is `v1,` and 32 bytes of base64 that a receiver accepts.
    #[test]
    fn signature_never_panics(
        secret in hostile_text(12),
        id in hostile_text(12),
        timestamp in any::<i64>(),
        body in hostile_text(40),
    ) {
        let whsec_key = secret.strip_prefix("whsec_").and_then(|k| STANDARD.decode(k).ok());
        match signature(&secret, &id, timestamp, &body) {
            Some(signed) => {
                prop_assert!(whsec_key.is_some(), "signed with {:?}", secret);
                let encoded = signed.strip_prefix("v1,").unwrap();
                prop_assert_eq!(STANDARD.decode(encoded).map(|s| s.len()), Ok(32));
                prop_assert!(receiver_accepts(&secret, &id, timestamp, &body, &signed));
            }
            None => prop_assert!(whsec_key.is_none(), "{:?} could not sign", secret),
        }
    }

    /// `whsec_` and the base64 of any key, of any length (even empty), signs.
    #[test]
    fn any_whsec_key_signs(key in prop::collection::vec(any::<u8>(), 0..100), body in hostile_text(20)) {
        let secret = format!("whsec_{}", STANDARD.encode(&key));
        let signed = signature(&secret, "msg_1", 0, &body);
        prop_assert!(signed.is_some());
        prop_assert!(receiver_accepts(&secret, "msg_1", 0, &body, &signed.unwrap()));
    }

    /// A signature checks out for its own delivery, and for no other body, timestamp, id or key.
    #[test]
    fn a_signature_checks_out_for_its_delivery_only(
        key in key(),
        other_key in key(),
        id in delivery_id(),
        other_id in delivery_id(),
        timestamp in any::<i64>(),
        other_timestamp in any::<i64>(),
        body in hostile_text(40),
        other_body in hostile_text(40),
    ) {
        let secret = secret_from_key(&key);
        let signed = signature(&secret, &id, timestamp, &body).unwrap();
        prop_assert_eq!(signature(&secret, &id, timestamp, &body), Some(signed.clone()), "deterministic");
        prop_assert!(receiver_accepts(&secret, &id, timestamp, &body, &signed));
        if other_body != body {
            prop_assert!(!receiver_accepts(&secret, &id, timestamp, &other_body, &signed));
        }
        if other_timestamp != timestamp {
            prop_assert!(!receiver_accepts(&secret, &id, other_timestamp, &body, &signed));
        }
        if other_id != id {
            prop_assert!(!receiver_accepts(&secret, &other_id, timestamp, &body, &signed));
        }
        if other_key != key {
            let other_secret = secret_from_key(&other_key);
            prop_assert!(!receiver_accepts(&other_secret, &id, timestamp, &body, &signed));
            prop_assert_ne!(signature(&other_secret, &id, timestamp, &body), Some(signed));
        }
    }

    /// A body changed in one byte's worth (one character replaced, added or removed) fails.
    #[test]
    fn a_body_changed_by_one_character_fails(
        key in key(),
        id in delivery_id(),
        body in hostile_text(40),
        at in any::<prop::sample::Index>(),
        c in any::<char>(),
        edit in 0u8..3,
    ) {
        let secret = secret_from_key(&key);
        let signed = signature(&secret, &id, 1_700_000_000, &body).unwrap();
        let mut chars: Vec<char> = body.chars().collect();
        let position = at.index(chars.len() + 1);
        match edit {
            0 if position < chars.len() => chars[position] = c,
            1 if position < chars.len() => { chars.remove(position); }
            _ => chars.insert(position, c),
        }
        let changed: String = chars.into_iter().collect();
        prop_assume!(changed != body);
        prop_assert!(!receiver_accepts(&secret, &id, 1_700_000_000, &changed, &signed));
    }

    /// The secret of any key is `whsec_` and its base64, which decodes back to the key.
    #[test]
    fn secrets_carry_their_key(key in key()) {
        let secret = secret_from_key(&key);
        let decoded = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
        prop_assert_eq!(decoded.as_slice(), key.as_slice());
    }

    /// Any text: `DeliveryId::parse` does not panic and accepts exactly `msg_` and 32 hex digits or
    /// a UUID; what it accepts prints as the `msg_` id, which parses back to it.
    #[test]
    fn delivery_ids_parse_exactly_their_forms(text in prop_oneof![
        hostile_text(40),
        "msg_[0-9a-fA-F]{30,34}",
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).simple().to_string()),
    ]) {
        let msg_form =
            text.strip_prefix("msg_").map(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        let expected_ok = match msg_form {
            Some(ok) => ok,
            None => uuid::Uuid::try_parse(&text).is_ok(),
        };
        match DeliveryId::parse(&text) {
            Ok(id) => {
                prop_assert!(expected_ok, "accepted {:?}", text);
                let printed = id.to_string();
                prop_assert_eq!(printed.clone(), message_id(id.as_uuid()));
                prop_assert_eq!(DeliveryId::parse(&printed), Ok(id));
            }
            Err(_) => prop_assert!(!expected_ok, "refused {:?}", text),
        }
    }

    /// The `msg_` id of any delivery parses back to it.
    #[test]
    fn message_ids_round_trip(n in any::<u128>()) {
        let uuid = uuid::Uuid::from_u128(n);
        prop_assert_eq!(DeliveryId::parse(&message_id(uuid)).map(|id| id.as_uuid()), Ok(uuid));
    }
}

/// Bodies, ids and secrets up to ~100 KB: no panic; a huge body signs and checks out.
#[test]
fn huge_inputs_never_panic() {
    let strategy = (50_000usize..100_000, prop::sample::select(vec!["a", ".", "\0", "é", "😀"]), key());
    TARGET
        .huge_runner(32)
        .run(&strategy, |(size, filler, key)| {
            let huge = filler.repeat(size / filler.len());
            let secret = secret_from_key(&key);
            let signed = signature(&secret, "msg_1", 1, &huge).unwrap();
            prop_assert!(receiver_accepts(&secret, "msg_1", 1, &huge, &signed));
            let huge_secret = format!("whsec_{huge}");
            let _ = signature(&huge_secret, &huge, i64::MIN, &huge);
            prop_assert!(DeliveryId::parse(&huge).is_err());
            let huge_msg = format!("msg_{huge}");
            prop_assert!(DeliveryId::parse(&huge_msg).is_err());
            Ok(())
        })
        .unwrap();
}
