//! Property-based fuzzing of bearer-token parsing: `bearer_token` on any header value and
//! `JwtVerifier::verify` on any string, on tokens signed with any claims, and on valid tokens
//! mutated every way an attacker might try (flipped bits, swapped or dropped segments, `alg: none`,
//! other secrets, huge inputs). Cases: `PROPTEST_CASES` (`make fuzz` runs many more); failures are
//! kept in `tests/fuzz-regressions/fuzz_tokens.txt` and replayed first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dw_auth::{AuthError, Claims, JwtVerifier, Role, TenantId, bearer_token};
use proptest::prelude::*;

const SECRET: &[u8] = b"fuzz-secret-of-sufficient-length";
const OTHER_SECRET: &[u8] = b"another-secret-of-enough-length!";
/// `verify`'s leeway on `exp` and `nbf`.
const LEEWAY: i128 = 30;

const TARGET: dw_fuzz::Target = dw_fuzz::Target::new("tests/fuzz-regressions/fuzz_tokens.txt");

fn verifier() -> JwtVerifier {
    JwtVerifier::new(SECRET).unwrap()
}

/// Any text, weighted towards what breaks parsers: NUL and control characters, dots, spaces,
/// base64url and JSON punctuation, non-ASCII.
fn hostile_text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => any::<char>().prop_map(String::from),
        2 => "[A-Za-z0-9_-]{1,12}",
        1 => prop::sample::select(vec![
            ".", " ", "\0", "\t", "\n", "\r", "\u{7f}", "\u{202e}", "=", "+", "/", "\"", "{", "}", "é", "😀",
            "Bearer", "bearer ", "HS256", "eyJ",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|pieces| pieces.concat())
}

/// Unix times, with the extremes where `exp + leeway` and `nbf - leeway` would overflow.
fn time() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 0i64..4_000_000_000,
        1 => any::<i64>(),
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, i64::MAX - 29, i64::MIN + 29]),
    ]
}

fn claims() -> impl Strategy<Value = Claims> {
    let sub = prop_oneof![3 => "[a-z0-9._@:-]{1,20}", 1 => hostile_text(20), 1 => Just("x".repeat(129))];
    let tenant = prop_oneof![3 => "[a-z0-9][a-z0-9_-]{0,10}", 1 => hostile_text(12)];
    let role = prop_oneof![
        4 => prop::sample::select(vec!["agent", "manager", "service"]).prop_map(str::to_owned),
        1 => hostile_text(8),
    ];
    (sub, tenant, prop::collection::vec(role, 0..4), time(), prop::option::of(time()), prop::option::of(time()))
        .prop_map(|(sub, tenant, roles, exp, nbf, iat)| Claims { sub, tenant, roles, exp, iat, nbf })
}

/// What `verify` must conclude of correctly signed `claims` at `now`, computed without overflow.
fn expected(claims: &Claims, now: i64) -> Result<(String, String, Vec<Role>), &'static str> {
    if i128::from(claims.exp) + LEEWAY < i128::from(now) {
        return Err("expired");
    }
    if claims.nbf.is_some_and(|nbf| i128::from(nbf) - LEEWAY > i128::from(now)) {
        return Err("not yet valid");
    }
    let sub = claims.sub.trim();
    if sub.is_empty() || sub.len() > 128 || sub.chars().any(char::is_control) {
        return Err("sub");
    }
    if TenantId::parse(&claims.tenant).is_err() {
        return Err("tenant");
    }
    let roles: Option<Vec<Role>> = claims.roles.iter().map(|r| Role::parse(r)).collect();
    let roles = roles.ok_or("roles")?;
    Ok((sub.to_owned(), claims.tenant.clone(), roles))
}

fn valid_claims() -> impl Strategy<Value = Claims> {
    ("[a-z0-9._@:-]{1,20}", "[a-z0-9][a-z0-9_-]{0,10}", prop::collection::vec(0usize..3, 0..3)).prop_map(
        |(sub, tenant, roles)| Claims {
            sub,
            tenant,
            roles: roles.into_iter().map(|i| ["agent", "manager", "service"][i].to_owned()).collect(),
            exp: 2_000_000_000,
            iat: Some(1_000_000_000),
            nbf: None,
        },
    )
}

const NOW: i64 = 1_500_000_000;

proptest! {
    #![proptest_config(TARGET.config(1024))]

    /// Any header value: no panic; a token found is non-empty, trimmed and part of the value, and
    /// only under the `Bearer` scheme.
    #[test]
    fn bearer_token_never_panics_and_finds_only_bearer_tokens(value in hostile_text(40)) {
        if let Ok(token) = bearer_token(&value) {
            prop_assert!(!token.is_empty());
            prop_assert_eq!(token, token.trim());
            prop_assert!(value.contains(token));
            let (scheme, _) = value.trim().split_once(' ').unwrap();
            prop_assert!(scheme.eq_ignore_ascii_case("bearer"));
        }
    }

    /// `Bearer <token>` in any case and with surrounding spaces gives the token back.
    #[test]
    fn bearer_token_round_trips(scheme in "[bB][eE][aA][rR][eE][rR]", token in "[!-~]{1,60}", pad in " {0,3}") {
        let value = format!("{pad}{scheme} {pad}{token}{pad}");
        prop_assert_eq!(bearer_token(&value), Ok(token.as_str()));
    }

    /// Any string, and any three dot-separated strings: no panic, and never a principal.
    #[test]
    fn verify_never_accepts_garbage(
        text in hostile_text(60),
        a in hostile_text(20),
        b in hostile_text(20),
        c in hostile_text(20),
        now in any::<i64>(),
    ) {
        prop_assert!(verifier().verify(&text, now).is_err());
        let dotted = format!("{a}.{b}.{c}");
        prop_assert!(verifier().verify(&dotted, now).is_err());
    }

    /// base64url of any header and claims bytes with any signature bytes: no panic, never accepted.
    #[test]
    fn verify_never_accepts_unsigned_base64(
        header in prop::collection::vec(any::<u8>(), 0..64),
        claims in prop::collection::vec(any::<u8>(), 0..128),
        signature in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let [header, claims, signature] = [header, claims, signature].map(|bytes| URL_SAFE_NO_PAD.encode(bytes));
        let token = format!("{header}.{claims}.{signature}");
        prop_assert!(verifier().verify(&token, NOW).is_err());
    }

    /// A correctly signed token with any claims (any times, including the extremes of i64): no
    /// panic, and accepted exactly when its claims are valid at `now`, as that principal.
    #[test]
    fn signed_claims_are_judged_by_their_content(
        claims in claims(),
        now in prop_oneof![3 => 0i64..4_000_000_000, 1 => any::<i64>()],
    ) {
        let token = verifier().sign(&claims);
        let verdict = verifier().verify(&token, now);
        match expected(&claims, now) {
            Ok((sub, tenant, roles)) => {
                let principal = verdict.map_err(|e| TestCaseError::fail(format!("refused valid claims: {e}")))?;
                prop_assert_eq!(principal.subject(), sub.as_str());
                prop_assert_eq!(principal.tenant().as_str(), tenant.as_str());
                prop_assert_eq!(principal.roles(), roles.as_slice());
            }
            Err(why) => prop_assert!(verdict.is_err(), "accepted claims that are invalid ({})", why),
        }
    }

    /// A valid token with 1-3 bits flipped anywhere never verifies.
    #[test]
    fn flipped_bits_never_verify(
        claims in valid_claims(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
    ) {
        let token = verifier().sign(&claims);
        prop_assert!(verifier().verify(&token, NOW).is_ok());
        let mut bytes = token.clone().into_bytes();
        for (index, bit) in &flips {
            let i = index.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        prop_assume!(mutated != token);
        prop_assert!(verifier().verify(&mutated, NOW).is_err(), "{} verified", mutated);
    }

    /// A valid token whose segments are reordered, dropped, repeated, or extended never verifies.
    #[test]
    fn rearranged_segments_never_verify(
        claims in valid_claims(),
        order in prop::collection::vec(0usize..3, 0..5),
        extra in hostile_text(4),
    ) {
        let token = verifier().sign(&claims);
        let parts: Vec<&str> = token.split('.').collect();
        let mut rearranged: Vec<&str> = order.iter().map(|&i| parts[i]).collect();
        if !extra.is_empty() {
            rearranged.push(&extra);
        }
        let mutated = rearranged.join(".");
        prop_assume!(mutated != token);
        prop_assert!(verifier().verify(&mutated, NOW).is_err(), "{} verified", mutated);
    }

    /// A token cut short, or with anything appended or prepended, never verifies.
    #[test]
    fn truncated_or_extended_tokens_never_verify(
        claims in valid_claims(),
        cut in any::<prop::sample::Index>(),
        extra in hostile_text(6).prop_filter("non-empty", |e| !e.is_empty()),
        before in any::<bool>(),
    ) {
        let token = verifier().sign(&claims);
        let truncated = &token[..cut.index(token.len())];
        prop_assert!(verifier().verify(truncated, NOW).is_err());
        let extended = if before { format!("{extra}{token}") } else { format!("{token}{extra}") };
        prop_assert!(verifier().verify(&extended, NOW).is_err(), "{} verified", extended);
    }

    /// Any other algorithm (`none` in any spelling, HS384, RS256, empty) with the real claims and
    /// any signature, empty or the real one, never verifies.
    #[test]
    fn other_algorithms_never_verify(
        claims in valid_claims(),
        alg in prop_oneof![
            prop::sample::select(vec![
                "none", "None", "NONE", "nOnE", "", "HS384", "HS512", "RS256", "ES256", "hs256", "HS256 ", " HS256",
                "HS256\u{0}",
            ])
            .prop_map(str::to_owned),
            hostile_text(8).prop_filter("not HS256", |a| a != "HS256"),
        ],
        signature in prop_oneof![Just(String::new()), Just("original".to_owned()), "[A-Za-z0-9_-]{0,64}"],
    ) {
        let token = verifier().sign(&claims);
        let parts: Vec<&str> = token.split('.').collect();
        let header = URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": alg, "typ": "JWT"}).to_string());
        let signature = if signature == "original" { parts[2].to_owned() } else { signature };
        let forged = format!("{header}.{}.{signature}", parts[1]);
        prop_assert!(verifier().verify(&forged, NOW).is_err(), "{} verified", forged);
    }

    /// Claims changed after signing, or signed with another secret, never verify.
    #[test]
    fn forged_claims_never_verify(claims in valid_claims(), forged in valid_claims()) {
        let token = verifier().sign(&claims);
        let forged_token = verifier().sign(&forged);
        let parts: Vec<&str> = token.split('.').collect();
        let forged_parts: Vec<&str> = forged_token.split('.').collect();
        prop_assume!(parts[1] != forged_parts[1]);
        let spliced = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
        prop_assert_eq!(verifier().verify(&spliced, NOW), Err(AuthError::BadSignature));
        let other = JwtVerifier::new(OTHER_SECRET).unwrap().sign(&claims);
        prop_assert_eq!(verifier().verify(&other, NOW), Err(AuthError::BadSignature));
    }
}

/// Header values and tokens up to ~100 KB: no panic, no principal.
#[test]
fn huge_inputs_never_panic() {
    let strategy = (50_000usize..100_000, prop::sample::select(vec!["a", ".", "\0", "é", "eyJ", "Bearer "]));
    TARGET
        .huge_runner(32)
        .run(&strategy, |(size, filler)| {
            let huge = filler.repeat(size / filler.len());
            let _ = bearer_token(&huge);
            let _ = bearer_token(&format!("Bearer {huge}"));
            prop_assert!(verifier().verify(&huge, NOW).is_err());
            let dotted = format!("{huge}.{huge}.{huge}");
            prop_assert!(verifier().verify(&dotted, NOW).is_err());
            let base64_huge = URL_SAFE_NO_PAD.encode(huge.as_bytes());
            let encoded = format!("{base64_huge}.{base64_huge}.{base64_huge}");
            prop_assert!(verifier().verify(&encoded, NOW).is_err());
            Ok(())
        })
        .unwrap();
}

/// A correctly signed token with huge claims: no panic; judged by its content like any other.
#[test]
fn huge_signed_claims_never_panic() {
    TARGET
        .huge_runner(32)
        .run(&(50_000usize..100_000), |size| {
            let claims = Claims {
                sub: "s".repeat(size),
                tenant: "acme".into(),
                roles: vec!["agent".into(); 8],
                exp: 2_000_000_000,
                iat: None,
                nbf: None,
            };
            let token = verifier().sign(&claims);
            let verdict = verifier().verify(&token, NOW);
            let refused_for_sub = matches!(verdict, Err(AuthError::InvalidClaim { claim: "sub", .. }));
            prop_assert!(refused_for_sub);
            Ok(())
        })
        .unwrap();
}

/// The identity provider's verifier over the committed test keys (one RSA, one EC).
fn oidc() -> (dw_auth::OidcVerifier, dw_auth::KeySet) {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../testkit/keys/");
    let jwk = |name: &str, kid: &str| {
        let mut jwk: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{keys}{name}.public.json")).unwrap()).unwrap();
        jwk["kid"] = kid.into();
        jwk
    };
    let set = serde_json::json!({ "keys": [jwk("rsa-1", "rsa"), jwk("ec-p256", "ec")] }).to_string();
    let (keys, _) = dw_auth::KeySet::parse(set.as_bytes()).unwrap();
    let settings = dw_auth::OidcSettings {
        issuer: "https://idp.example.com".into(),
        audience: "dw".into(),
        claims: dw_auth::ClaimMapping::default(),
        leeway_seconds: 30,
    };
    (dw_auth::OidcVerifier::new(settings), keys)
}

proptest! {
    #![proptest_config(TARGET.config(512))]

    /// Any string, and tokens whose header names any algorithm and any (also a published) key id
    /// over any claims and signature: no panic, and never a principal.
    #[test]
    fn the_identity_providers_verifier_never_accepts_garbage(
        text in hostile_text(60),
        alg in prop_oneof![prop::sample::select(vec!["RS256", "ES256", "EdDSA", "HS256", "none", "PS256"]).prop_map(str::to_owned), hostile_text(6)],
        kid in prop_oneof![prop::sample::select(vec!["rsa", "ec"]).prop_map(str::to_owned), hostile_text(6)],
        claims in hostile_text(40),
        signature in prop::collection::vec(any::<u8>(), 0..300),
        now in any::<i64>(),
    ) {
        let (verifier, keys) = oidc();
        prop_assert!(verifier.verify(&keys, &text, now).is_err());
        let header = serde_json::json!({ "alg": alg, "kid": kid }).to_string();
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims),
            URL_SAFE_NO_PAD.encode(&signature)
        );
        prop_assert!(verifier.verify(&keys, &token, now).is_err());
    }
}
