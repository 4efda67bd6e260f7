//! Tokens of the company's OpenID Connect provider: signed with an asymmetric key (RS256, ES256,
//! EdDSA, …) published in the provider's JWKS, naming its issuer (`iss`) and this platform as
//! audience (`aud`).
//!
//! The algorithm is the key's, never the token's alone: a key is usable with exactly one
//! algorithm (its JWK `alg`, or the one its type and curve imply), and a token whose header names
//! another (an `HS256` token "signed" with the public key as HMAC secret, `none`) is refused
//! before any signature is computed. Symmetric (`oct`) keys and encryption keys in a JWKS are
//! ignored. Fetching and caching the JWKS is the caller's (dw-grpc-kit's `identity`); this module
//! does no I/O.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::claims::ClaimMapping;
use crate::{AuthError, Principal};

/// The smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// The longest `kid` echoed in an error message.
const MAX_KID_IN_MESSAGE: usize = 64;

/// One usable verification key: its algorithm and its public key.
#[derive(Clone)]
struct PublicKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The usable signing keys of a JWKS, by key id.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, PublicKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<_> = self.keys.iter().map(|(kid, key)| format!("{kid} ({:?})", key.algorithm)).collect();
        kids.sort();
        f.debug_struct("KeySet").field("keys", &kids).finish()
    }
}

/// A JWKS document that gives no key to verify with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    #[error("the JWKS is not JSON with a `keys` list: {0}")]
    Malformed(String),
    #[error("the JWKS has no usable signing key ({0})")]
    NoUsableKey(String),
}

impl KeySet {
    /// The usable keys of a JWKS document, and why each other key was skipped.
    pub fn parse(document: &[u8]) -> Result<(Self, Vec<String>), JwksError> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<Value>,
        }
        let document: Document = serde_json::from_slice(document).map_err(|e| JwksError::Malformed(e.to_string()))?;
        let mut keys = HashMap::new();
        let mut skipped = Vec::new();
        for (index, value) in document.keys.into_iter().enumerate() {
            match usable_key(value) {
                Ok((kid, key)) => {
                    if keys.insert(kid.clone(), key).is_some() {
                        skipped.push(format!("key {kid}: key id listed twice, the last one kept"));
                    }
                }
                Err(reason) => skipped.push(format!("key #{index}: {reason}")),
            }
        }
        if keys.is_empty() {
            let reasons = if skipped.is_empty() { "the list is empty".to_owned() } else { skipped.join("; ") };
            return Err(JwksError::NoUsableKey(reasons));
        }
        Ok((Self { keys }, skipped))
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, sorted (for logs).
    pub fn key_ids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

/// The key id and key of one JWK, or why it cannot verify tokens.
fn usable_key(value: Value) -> Result<(String, PublicKey), String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a JWK this service reads: {e}"))?;
    let kid = jwk.common.key_id.clone().filter(|kid| !kid.is_empty()).ok_or("no kid")?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))) {
        return Err(format!("{kid}: not a signing key (use)"));
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let modulus = URL_SAFE_NO_PAD.decode(&rsa.n).map_err(|_| format!("{kid}: n is not base64url"))?;
            let bits = modulus.iter().skip_while(|byte| **byte == 0).count() * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!("{kid}: RSA key of fewer than {MIN_RSA_BITS} bits"));
            }
            Algorithm::RS256
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err(format!("{kid}: unsupported curve")),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => Algorithm::EdDSA,
            _ => return Err(format!("{kid}: unsupported curve")),
        },
        AlgorithmParameters::OctetKey(_) => return Err(format!("{kid}: symmetric keys are never used")),
    };
    let algorithm = match jwk.common.key_algorithm {
        None => implied,
        Some(named) => {
            let algorithm =
                signing_algorithm(named).ok_or_else(|| format!("{kid}: algorithm {named} is not accepted"))?;
            if algorithm.family() != implied.family() || (implied != Algorithm::RS256 && algorithm != implied) {
                return Err(format!("{kid}: algorithm {named} does not fit the key type"));
            }
            algorithm
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{kid}: {e}"))?;
    Ok((kid, PublicKey { algorithm, key }))
}

/// The asymmetric signature algorithms a JWK may name.
fn signing_algorithm(named: KeyAlgorithm) -> Option<Algorithm> {
    Some(match named {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The part of a token's header read before its key is chosen.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

fn raw_header(token: &str) -> Result<RawHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed("expected three dot-separated parts"));
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed("header is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed("header is not JSON with alg"))
}

/// The key id a token's header names, when it is a well-formed token that names one: what a
/// cache looks up before verifying (an unknown one is worth a JWKS refresh).
pub fn token_key_id(token: &str) -> Option<String> {
    raw_header(token).ok()?.kid.filter(|kid| !kid.is_empty())
}

/// What a token must say besides its signature.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The exact `iss` of the provider (`DW_JWT_ISSUER`).
    pub issuer: String,
    /// An `aud` the token must name (`DW_JWT_AUDIENCE`).
    pub audience: String,
    pub claims: ClaimMapping,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_seconds: i64,
}

/// Verifies the provider's tokens against a [`KeySet`].
#[derive(Debug, Clone)]
pub struct OidcVerifier {
    settings: OidcSettings,
}

impl OidcVerifier {
    pub fn new(settings: OidcSettings) -> Self {
        Self { settings }
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Verifies `token` with `keys` at unix time `now`: the header's `kid` chooses the key, the key
    /// the algorithm; then the signature, `iss`, `aud`, `exp`/`nbf` and the mapped claims.
    pub fn verify(&self, keys: &KeySet, token: &str, now: i64) -> Result<Principal, AuthError> {
        let header = raw_header(token)?;
        if header.alg.eq_ignore_ascii_case("none") || header.alg.starts_with("HS") {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let kid = header.kid.filter(|kid| !kid.is_empty()).ok_or(AuthError::MissingKeyId)?;
        let Some(key) = keys.keys.get(&kid) else {
            return Err(AuthError::UnknownKey(kid.chars().take(MAX_KID_IN_MESSAGE).collect()));
        };
        let key_algorithm = format!("{:?}", key.algorithm);
        if header.alg != key_algorithm {
            return Err(AuthError::AlgorithmMismatch {
                token: header.alg.chars().take(16).collect(),
                key: key_algorithm,
            });
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // `exp` and `nbf` are checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Value>(token, &key.key, &validation).map_err(rejection)?.claims;
        let leeway = self.settings.leeway_seconds;
        let exp = numeric_date(&claims, "exp")?.ok_or(AuthError::MissingClaim { claim: "exp".into() })?;
        if exp.saturating_add(leeway) < now {
            return Err(AuthError::Expired);
        }
        if numeric_date(&claims, "nbf")?.is_some_and(|nbf| nbf.saturating_sub(leeway) > now) {
            return Err(AuthError::NotYetValid);
        }
        self.settings.claims.principal(&claims)
    }
}

/// A NumericDate claim (seconds, possibly fractional), whole seconds down.
fn numeric_date(claims: &Value, name: &'static str) -> Result<Option<i64>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => match (number.as_i64(), number.as_f64()) {
            (Some(seconds), _) => Ok(Some(seconds)),
            // `as` saturates at the ends of i64, and NaN is not a JSON number.
            (None, Some(seconds)) => Ok(Some(seconds.floor() as i64)),
            (None, None) => Err(AuthError::BadClaim { claim: name.into(), reason: "must be a number".into() }),
        },
        Some(_) => Err(AuthError::BadClaim { claim: name.into(), reason: "must be a number".into() }),
    }
}

fn rejection(error: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim { claim: claim.clone() },
        ErrorKind::InvalidClaimFormat(claim) => {
            AuthError::BadClaim { claim: claim.clone(), reason: "has the wrong type".into() }
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::UnsupportedAlgorithm,
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            AuthError::Malformed("not a signed JWT with JSON claims")
        }
        // A key the provider published that does not verify (a bad point, a bad modulus): the
        // token is not accepted, whatever its signature.
        _ => AuthError::BadSignature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testkit/keys/");

    fn file(name: &str) -> String {
        std::fs::read_to_string(format!("{KEYS}{name}")).unwrap()
    }

    fn jwk(name: &str, kid: &str, extra: Value) -> Value {
        let mut jwk: Value = serde_json::from_str(&file(&format!("{name}.public.json"))).unwrap();
        jwk["kid"] = json!(kid);
        if let (Some(jwk), Some(extra)) = (jwk.as_object_mut(), extra.as_object()) {
            jwk.extend(extra.clone());
        }
        jwk
    }

    fn key_set(jwks: &[Value]) -> KeySet {
        KeySet::parse(json!({ "keys": jwks }).to_string().as_bytes()).unwrap().0
    }

    fn verifier() -> OidcVerifier {
        OidcVerifier::new(OidcSettings {
            issuer: "https://idp.example.com/realms/dw".into(),
            audience: "digital-workspace".into(),
            claims: ClaimMapping::default(),
            leeway_seconds: 30,
        })
    }

    fn claims(now: i64) -> Value {
        json!({"iss": "https://idp.example.com/realms/dw", "aud": ["digital-workspace", "account"], "sub": "ana",
               "tenant": "acme", "roles": ["agent"], "exp": now + 300, "iat": now})
    }

    fn sign(alg: Algorithm, kid: &str, pem: &str, claims: &Value) -> String {
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(file(pem).as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(file(pem).as_bytes()),
            _ => EncodingKey::from_rsa_pem(file(pem).as_bytes()),
        }
        .unwrap();
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn forge(header: Value, claims: &Value, signature: &[u8]) -> String {
        let part = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        format!("{}.{}.{}", part(&header), part(claims), URL_SAFE_NO_PAD.encode(signature))
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn rs256_es256_and_eddsa_tokens_verify_with_their_published_keys() {
        let keys = key_set(&[
            jwk("rsa-1", "rsa", json!({"alg": "RS256", "use": "sig"})),
            jwk("ec-p256", "ec", json!({})),
            jwk("ed25519", "ed", json!({"alg": "EdDSA"})),
        ]);
        for (alg, kid, pem) in [
            (Algorithm::RS256, "rsa", "rsa-1.pem"),
            (Algorithm::ES256, "ec", "ec-p256.pem"),
            (Algorithm::EdDSA, "ed", "ed25519.pem"),
        ] {
            let token = sign(alg, kid, pem, &claims(NOW));
            let principal = verifier().verify(&keys, &token, NOW).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!((principal.subject(), principal.tenant().as_str()), ("ana", "acme"));
        }
    }

    #[test]
    fn issuer_audience_expiry_and_key_id_are_enforced() {
        let keys = key_set(&[jwk("ec-p256", "ec", json!({}))]);
        let verify = |claims: &Value, kid: &str| {
            verifier().verify(&keys, &sign(Algorithm::ES256, kid, "ec-p256.pem", claims), NOW)
        };
        let mut wrong_iss = claims(NOW);
        wrong_iss["iss"] = json!("https://evil.example.com");
        assert_eq!(verify(&wrong_iss, "ec"), Err(AuthError::WrongIssuer));
        let mut wrong_aud = claims(NOW);
        wrong_aud["aud"] = json!("another-app");
        assert_eq!(verify(&wrong_aud, "ec"), Err(AuthError::WrongAudience));
        let mut no_aud = claims(NOW);
        no_aud.as_object_mut().unwrap().remove("aud");
        assert_eq!(verify(&no_aud, "ec"), Err(AuthError::MissingClaim { claim: "aud".into() }));
        assert_eq!(verify(&claims(NOW - 1_000), "ec"), Err(AuthError::Expired));
        let mut not_yet = claims(NOW);
        not_yet["nbf"] = json!(NOW + 100);
        assert_eq!(verify(&not_yet, "ec"), Err(AuthError::NotYetValid));
        assert_eq!(verify(&claims(NOW), "other"), Err(AuthError::UnknownKey("other".into())));
        let mut no_roles = claims(NOW);
        no_roles.as_object_mut().unwrap().remove("roles");
        assert_eq!(verify(&no_roles, "ec"), Err(AuthError::MissingClaim { claim: "roles".into() }));
    }

    #[test]
    fn the_algorithm_is_the_keys_never_the_tokens() {
        let keys = key_set(&[jwk("rsa-1", "rsa", json!({"alg": "RS256"}))]);
        let public_json = file("rsa-1.public.json");
        // HS256 "signed" with the public key as HMAC secret: refused before any HMAC.
        let hs256 = jsonwebtoken::encode(
            &Header { kid: Some("rsa".into()), ..Header::new(Algorithm::HS256) },
            &claims(NOW),
            &EncodingKey::from_secret(public_json.as_bytes()),
        )
        .unwrap();
        assert_eq!(verifier().verify(&keys, &hs256, NOW), Err(AuthError::UnsupportedAlgorithm));
        let none = forge(json!({"alg": "none", "kid": "rsa"}), &claims(NOW), b"");
        assert_eq!(verifier().verify(&keys, &none, NOW), Err(AuthError::UnsupportedAlgorithm));
        // Another asymmetric algorithm than the key's (PS256 with the RS256 key).
        let ps256 = sign(Algorithm::PS256, "rsa", "rsa-1.pem", &claims(NOW));
        assert!(matches!(verifier().verify(&keys, &ps256, NOW), Err(AuthError::AlgorithmMismatch { .. })));
        // The right algorithm and kid, the other RSA key's signature.
        let other = sign(Algorithm::RS256, "rsa", "rsa-2.pem", &claims(NOW));
        assert_eq!(verifier().verify(&keys, &other, NOW), Err(AuthError::BadSignature));
        let no_kid = forge(json!({"alg": "RS256"}), &claims(NOW), b"x");
        assert_eq!(verifier().verify(&keys, &no_kid, NOW), Err(AuthError::MissingKeyId));
    }

    #[test]
    fn unusable_keys_are_skipped_and_a_set_without_any_is_refused() {
        let (keys, skipped) = KeySet::parse(
            json!({"keys": [
                jwk("rsa-1", "rsa", json!({})),
                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
                jwk("rsa-2", "enc", json!({"use": "enc"})),
                jwk("ec-p256", "ec-as-rsa", json!({"alg": "RS256"})),
                jwk("rsa-2", "oaep", json!({"alg": "RSA-OAEP"})),
                {"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
                jwk("ed25519", "", json!({})),
                {"kty": "weird"},
            ]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(keys.key_ids(), ["rsa"]);
        assert_eq!(skipped.len(), 7, "{skipped:?}");
        assert!(matches!(KeySet::parse(br#"{"keys": []}"#), Err(JwksError::NoUsableKey(_))));
        assert!(matches!(KeySet::parse(b"<html>"), Err(JwksError::Malformed(_))));
        assert_eq!(token_key_id(&forge(json!({"alg": "RS256", "kid": "k1"}), &json!({}), b"")), Some("k1".into()));
        assert_eq!(token_key_id("garbage"), None);
    }
}
