//! Paging of every list RPC (AIP-158): the page size with its bounds, and one opaque page-token
//! codec. A token is the keyset of the last row returned (its parts joined by `|`, base64url);
//! a caller can only hand back what a call gave it, and anything else is `INVALID_ARGUMENT` on
//! `page_token`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
