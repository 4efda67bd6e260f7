//! The SMS provider's callback signature, made the way Twilio makes it: `X-Twilio-Signature` is
//! the base64 of HMAC-SHA1 under the account's auth token of the full URL the provider called
//! (scheme, host, path, query) followed by every POST parameter sorted by name, each written as
//! its name then its value. This module signs (the fake provider) and verifies (the webhooks).
//!
//! What is signed is the URL and the *decoded* parameters, not the body's bytes: two bodies that
//! encode the same parameters (another order, `+` or `%20`) carry the same signature, as with
//! Twilio's own helper libraries. A parameter repeated under one name counts once per value, the
//! values in order (`Digits5678`, `Digits1234` → `Digits1234Digits5678`), as twilio-python does.
//! Names and values are concatenated without a separator, as Twilio does (so `Ab=c` and `A=bc`
//! sign alike: a limit of the provider's scheme, not one to "fix" here, or nothing would verify).
//!
//! The URL is the one the provider was given, so behind an ingress it is the public URL, not the
//! one the request arrived on: [`WebhookBaseUrl`] is that public base, [`WebhookBaseUrl::url_of`]
//! the full URL of a request's path and query.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The header carrying the signature.
pub const HEADER: &str = "X-Twilio-Signature";

/// The base64 signature of a callback to `url` with the form `params`, under `auth_token`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    BASE64.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `signature` (the header's value, absent when the header was) is the signature of a
/// callback to `url` with `params` under `auth_token`. The digests are compared in constant time;
/// anything that is not the base64 of a digest is refused.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: Option<&str>) -> bool {
    let Some(claimed) = signature.and_then(|s| BASE64.decode(s).ok()) else {
        return false;
    };
    mac(auth_token, url, params).verify_slice(&claimed).is_ok()
}

/// HMAC-SHA1 over the URL, then every `name value` pair in byte order (name first, then value).
fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut mac = match Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("hmac accepts any key length"),
    };
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// Where the providers reach this service's webhooks (`DW_WEBHOOK_PUBLIC_URL`): `http(s)://`,
/// a host (and port), optionally a path prefix that the ingress strips before the request gets
/// here; no query, fragment or user info. Kept without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookBaseUrl(String);

impl WebhookBaseUrl {
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let trimmed = value.trim().trim_end_matches('/');
        let Some(rest) = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://")) else {
            return Err("must start with http:// or https://");
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err("must name a host");
        }
        if authority.contains('@') {
            return Err("must not carry user info");
        }
        if trimmed.contains(['?', '#']) {
            return Err("must have no query or fragment (the request's own query is appended)");
        }
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must have no spaces or control characters");
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The public URL of a request that arrived with `path_and_query` (as sent, percent-encoding
    /// and all), e.g. `/webhooks/sms/acme/status?x=1`.
    pub fn url_of(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.0)
    }
}

impl std::fmt::Display for WebhookBaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// The worked example of Twilio's "Webhooks security" page (auth token `12345`).
    fn docs_example() -> Vec<(String, String)> {
        params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ])
    }

    #[test]
    fn given_twilios_documented_example_when_signed_then_the_documented_signature_comes_out() {
        // Given the documented request, parameters in any order
        let mut shuffled = docs_example();
        shuffled.reverse();
        // When it is signed
        let signed = signature("12345", DOCS_URL, &shuffled);
        // Then it is the documented value, and it verifies
        assert_eq!(signed, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(verify("12345", DOCS_URL, &docs_example(), Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")));
    }

    #[test]
    fn given_twilio_pythons_test_vectors_when_signed_then_they_match() {
        // Given the vectors of twilio-python's tests/unit/test_request_validator.py
        let single = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ]);
        let repeated = params(&[("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]);
        // When signed, then the helper library's values come out (a repeated name, values sorted)
        assert_eq!(signature("12345", DOCS_URL, &single), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert_eq!(signature("12345", DOCS_URL, &repeated), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    }

    #[test]
    fn given_a_signed_callback_when_anything_signed_changes_then_it_does_not_verify() {
        // Given a callback signed for the documented URL
        let signed = signature("12345", DOCS_URL, &docs_example());
        let ok = |token: &str, url: &str, params: &[(String, String)]| verify(token, url, params, Some(&signed));
        assert!(ok("12345", DOCS_URL, &docs_example()));
        // When the token, the URL (scheme, host, path, query) or a parameter changes, then it fails
        assert!(!ok("12346", DOCS_URL, &docs_example()));
        assert!(!ok("12345", "http://mycompany.com/myapp.php?foo=1&bar=2", &docs_example()));
        assert!(!ok("12345", "https://evil.example/myapp.php?foo=1&bar=2", &docs_example()));
        assert!(!ok("12345", "https://mycompany.com/myapp.php?foo=1&bar=3", &docs_example()));
        assert!(!ok("12345", "https://mycompany.com/myapp.php", &docs_example()));
        let mut tampered = docs_example();
        tampered[2].1 = "9999".into();
        assert!(!ok("12345", DOCS_URL, &tampered));
        let mut added = docs_example();
        added.push(("Body".into(), "STOP".into()));
        assert!(!ok("12345", DOCS_URL, &added));
        assert!(!ok("12345", DOCS_URL, &docs_example()[1..]));
    }

    #[test]
    fn given_a_header_that_is_no_signature_when_verified_then_it_is_refused_without_panicking() {
        // Given headers that are absent, empty, not base64, truncated, padded oddly or too long
        let signed = signature("12345", DOCS_URL, &docs_example());
        let longer = format!("{signed}AAAA");
        let cases = [None, Some(""), Some("!!!!"), Some(&signed[..signed.len() - 1]), Some(&longer[..])];
        for header in cases {
            // When verified, then refused
            assert!(!verify("12345", DOCS_URL, &docs_example(), header), "{header:?}");
        }
        // Base64 is case-sensitive: the signature in lower case is another digest.
        assert!(!verify("12345", DOCS_URL, &docs_example(), Some(&signed.to_lowercase())));
    }

    #[test]
    fn given_a_public_base_when_parsed_then_only_an_http_origin_with_an_optional_prefix_is_taken() {
        // Given bases with and without a prefix and a trailing slash, then the URL of a request
        let base = WebhookBaseUrl::parse("https://hooks.example.com/dw/").unwrap();
        assert_eq!(
            base.url_of("/webhooks/sms/acme/status?x=1"),
            "https://hooks.example.com/dw/webhooks/sms/acme/status?x=1"
        );
        let local = WebhookBaseUrl::parse(" http://127.0.0.1:8083 ").unwrap();
        assert_eq!(local.url_of("/webhooks/sms/acme/inbound"), "http://127.0.0.1:8083/webhooks/sms/acme/inbound");
        // When it is no such base, then refused with a reason
        for bad in [
            "",
            "hooks.example.com",
            "ftp://x",
            "https://",
            "https:///path",
            "https://a@b",
            "https://h?x=1",
            "https://h/#f",
            "https://h/a b",
        ] {
            assert!(WebhookBaseUrl::parse(bad).is_err(), "{bad:?}");
        }
    }
}
