//! The rules of a template's text: names, language tags, positional variables and their
//! rendering, URLs, metadata bounds, and the lengths per channel.

use std::collections::BTreeMap;

/// WhatsApp limits.
pub const WHATSAPP_HEADER_TEXT_MAX: usize = 60;
pub const WHATSAPP_BODY_MAX: usize = 1024;
pub const WHATSAPP_FOOTER_MAX: usize = 60;
/// An SMS body may span several segments, up to this many characters.
pub const SMS_BODY_MAX: usize = 1600;
pub const METADATA_MAX_KEYS: usize = 20;
pub const METADATA_MAX_BYTES: usize = 4096;

/// A request field and what is wrong with it.
pub type Problem = (String, String);

/// `^[a-z][a-z0-9_]*$`, at most 512 characters (the WhatsApp limit).
pub fn parse_name(value: &str) -> Result<String, String> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok || value.len() > 512 || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err("must match ^[a-z][a-z0-9_]*$".into());
    }
    Ok(value.to_owned())
}

/// A language tag such as `pt_BR`, `en_US` or `es`.
pub fn parse_language(value: &str) -> Result<String, String> {
    let (language, region) = match value.split_once(['_', '-']) {
        Some((l, r)) => (l, Some(r)),
        None => (value, None),
    };
    let language_ok = (2..=3).contains(&language.len()) && language.chars().all(|c| c.is_ascii_lowercase());
    let region_ok = region.is_none_or(|r| (2..=3).contains(&r.len()) && r.chars().all(|c| c.is_ascii_alphanumeric()));
    if !language_ok || !region_ok {
        return Err("must be a language tag such as pt_BR or en".into());
    }
    Ok(value.replace('-', "_"))
}

/// The variables of a body: `{{1}}`..`{{n}}`, each number from 1 to n present. Returns n.
pub fn count_variables(body: &str) -> Result<usize, String> {
    let mut numbers = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("has an unclosed {{")?;
        let number: usize = after[..end]
            .trim()
            .parse()
            .map_err(|_| format!("has a variable {{{{{}}}}} that is not a number", &after[..end]))?;
        if number == 0 {
            return Err("variables start at {{1}}".into());
        }
        numbers.push(number);
        rest = &after[end + 2..];
    }
    numbers.sort_unstable();
    numbers.dedup();
    let n = numbers.len();
    if numbers.last().is_some_and(|&last| last != n) {
        return Err(format!("variables must be numbered {{{{1}}}} to {{{{{n}}}}} without gaps"));
    }
    Ok(n)
}

/// Replaces `{{i}}` with `values[i - 1]`.
pub fn render(text: &str, values: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        match after[..end].trim().parse::<usize>().ok().and_then(|i| values.get(i.wrapping_sub(1))) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[start..start + 4 + end]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// An `https://` URL, or `http://` to a loopback host (local fakes and tests).
pub fn parse_url(value: &str) -> Result<String, String> {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    let https = value.strip_prefix("https://").is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    let local = loopback.iter().any(|prefix| value.strip_prefix(prefix).is_some_and(is_after_loopback_host));
    if !(https || local) || value.len() > 2048 || value.contains(char::is_whitespace) {
        return Err("must be an https:// URL".into());
    }
    Ok(value.to_owned())
}

/// What may follow a loopback host: nothing, a path, or a port and then nothing or a path. Never
/// userinfo: the host of `http://localhost:8080@elsewhere/` is `elsewhere`.
fn is_after_loopback_host(rest: &str) -> bool {
    let after_port = match rest.strip_prefix(':') {
        Some(port_and_path) => port_and_path.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    after_port.is_empty() || after_port.starts_with('/')
}

pub fn check_metadata(field: &str, metadata: &BTreeMap<String, String>, problems: &mut Vec<Problem>) {
    if metadata.len() > METADATA_MAX_KEYS {
        problems.push((field.to_owned(), format!("at most {METADATA_MAX_KEYS} keys")));
    }
    let bytes: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > METADATA_MAX_BYTES {
        problems.push((field.to_owned(), format!("at most {METADATA_MAX_BYTES} bytes of keys and values")));
    }
    if metadata.keys().any(|k| k.is_empty() || k.len() > 64) {
        problems.push((field.to_owned(), "keys must be 1-64 characters".into()));
    }
}
