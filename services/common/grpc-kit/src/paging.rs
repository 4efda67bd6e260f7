//! Paging of every list RPC (AIP-158): the page size with its bounds, and one opaque page-token
//! codec. A token is the keyset of the last row returned (its parts joined by `|`, base64url);
//! a caller can only hand back what a call gave it, and anything else is `INVALID_ARGUMENT` on
//! `page_token`. A *bound* token ([`encode_bound_token`]) also names the call, the tenant and the
//! request's filters it was made for (AIP-158: they stay the same from page to page), so a token
//! of another list, another tenant or another search is refused rather than misread.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use tonic::Status;

use crate::errors;

/// How many rows a page holds: `requested`, or `default` when it is 0, at most `max`.
pub fn page_size(requested: i32, default: i64, max: i32) -> Result<i64, Status> {
    match requested {
        0 => Ok(default),
        size if (1..=max).contains(&size) => Ok(i64::from(size)),
        _ => Err(errors::invalid_argument("page_size", format!("must be between 1 and {max}"))),
    }
}

/// The token of a page that starts after the row whose keyset is `parts`.
pub fn encode_token(parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(parts.join("|"))
}

/// The parts of a token made by [`encode_token`]; `None` when it is not one.
pub fn decode_parts(token: &str) -> Option<Vec<String>> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    Some(text.split('|').map(str::to_owned).collect())
}

/// The keyset a `page_token` carries, read by `parse` from its parts; `None` for the first page
/// (an empty token).
pub fn decode_token<T>(token: &str, parse: impl FnOnce(&[&str]) -> Option<T>) -> Result<Option<T>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let parts = decode_parts(token);
    let parts: Option<Vec<&str>> = parts.as_ref().map(|parts| parts.iter().map(String::as_str).collect());
    match parts.and_then(|parts| parse(&parts)) {
        Some(keyset) => Ok(Some(keyset)),
        None => Err(errors::invalid_argument("page_token", "not a token returned by this call")),
    }
}

/// A keyset part that may hold any text (a name): encoded so that it cannot split the token.
pub fn text_part(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

/// The text of a [`text_part`]; `None` when it is not one.
pub fn read_text_part(part: &str) -> Option<String> {
    String::from_utf8(URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// What a bound token is bound to: a digest of the call's name and its `scope` (the tenant, then
/// the request's filters), short enough to keep tokens small.
fn binding(call: &str, scope: &[&str]) -> String {
    let mut digest = Sha256::new();
    digest.update(call.as_bytes());
    for part in scope {
        // Length-prefixed, so that ["ab", "c"] and ["a", "bc"] differ.
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(&digest.finalize()[..12])
}

/// The token of a page of `call` (e.g. `dw.notifications.v1.WebhookService/ListWebhooks`) for
/// `scope` (the tenant, then every filter of the request) that starts after the row whose
/// keyset is `keyset`.
pub fn encode_bound_token(call: &str, scope: &[&str], keyset: &[&str]) -> String {
    let bound = binding(call, scope);
    let mut parts = Vec::with_capacity(keyset.len() + 1);
    parts.push(bound.as_str());
    parts.extend_from_slice(keyset);
    encode_token(&parts)
}

/// The keyset of a token made by [`encode_bound_token`] for the same `call` and `scope`, read by
/// `parse`; `None` for the first page (an empty token). A token of another call, tenant or
/// filters, or not a token at all, is `INVALID_ARGUMENT` on `page_token`.
pub fn decode_bound_token<T>(
    token: &str,
    call: &str,
    scope: &[&str],
    parse: impl FnOnce(&[&str]) -> Option<T>,
) -> Result<Option<T>, Status> {
    let bound = binding(call, scope);
    decode_token(token, |parts| match parts.split_first() {
        Some((first, keyset)) if *first == bound => parse(keyset),
        _ => None,
    })
}

/// Keeps the first `limit` of `rows` (fetched as `limit + 1`) and answers the next page's
/// token: the last kept row's, when there were more rows; empty on the last page.
pub fn next_page<T>(rows: &mut Vec<T>, limit: i64, token_of: impl Fn(&T) -> Option<String>) -> String {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() <= limit {
        return String::new();
    }
    rows.truncate(limit);
    rows.last().and_then(token_of).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_carries_its_keyset_and_refuses_anything_else() {
        let token = encode_token(&["1700000000000000", "0193f0a4-7c1e-7d2a-9b8e-2f1c3d4e5f60"]);
        let read = decode_token(&token, |parts| match parts {
            [micros, id] => Some((micros.parse::<i64>().ok()?, (*id).to_owned())),
            _ => None,
        });
        assert_eq!(read.unwrap(), Some((1_700_000_000_000_000, "0193f0a4-7c1e-7d2a-9b8e-2f1c3d4e5f60".to_owned())));
        assert_eq!(decode_token("", |_| Some(())).unwrap(), None, "the first page");
        for garbage in ["%%%", "bm90IGEgdG9rZW4", &encode_token(&["only-one-part"])] {
            let refused = decode_token(garbage, |parts| match parts {
                [a, b] => Some((a.len(), b.len())),
                _ => None,
            });
            let status = refused.unwrap_err();
            assert_eq!(errors::violated_fields(&status), ["page_token"], "{garbage}");
        }
    }

    #[test]
    fn a_bound_token_is_refused_by_another_call_tenant_or_filter() {
        let call = "dw.test.v1.Things/ListThings";
        let parse = |parts: &[&str]| match parts {
            [micros, id] => Some((micros.parse::<i64>().ok()?, (*id).to_owned())),
            _ => None,
        };
        let token = encode_bound_token(call, &["acme", "ana"], &["17", "id-1"]);
        assert_eq!(decode_bound_token(&token, call, &["acme", "ana"], parse).unwrap(), Some((17, "id-1".to_owned())));
        assert_eq!(decode_bound_token("", call, &["acme", "ana"], parse).unwrap(), None, "the first page");
        let refused = [
            decode_bound_token(&token, "dw.test.v1.Things/ListOthers", &["acme", "ana"], parse),
            decode_bound_token(&token, call, &["globex", "ana"], parse),
            decode_bound_token(&token, call, &["acme", "bob"], parse),
            decode_bound_token(&token, call, &["acmea", "na"], parse),
            decode_bound_token(&encode_token(&["17", "id-1"]), call, &["acme", "ana"], parse),
            decode_bound_token("garbage!", call, &["acme", "ana"], parse),
        ];
        for status in refused {
            assert_eq!(errors::violated_fields(&status.unwrap_err()), ["page_token"]);
        }
    }

    #[test]
    fn a_text_part_carries_any_text() {
        for text in ["", "Ana | Souza", "Zoë 😀", "a|b|c"] {
            let part = text_part(text);
            assert!(!part.contains('|'));
            assert_eq!(read_text_part(&part).as_deref(), Some(text));
        }
        assert_eq!(read_text_part("%%"), None);
    }

    #[test]
    fn page_sizes_default_and_stay_within_bounds() {
        assert_eq!(page_size(0, 50, 200).unwrap(), 50);
        assert_eq!(page_size(200, 50, 200).unwrap(), 200);
        for refused in [-1, 201] {
            assert_eq!(errors::violated_fields(&page_size(refused, 50, 200).unwrap_err()), ["page_size"]);
        }
    }

    #[test]
    fn the_next_page_starts_after_the_last_row_kept() {
        let mut rows = vec![1, 2, 3];
        assert_eq!(next_page(&mut rows, 2, |r| Some(r.to_string())), "2");
        assert_eq!(rows, [1, 2]);
        let mut last = vec![1, 2];
        assert_eq!(next_page(&mut last, 2, |r| Some(r.to_string())), "");
        assert_eq!(last, [1, 2]);
    }
}
