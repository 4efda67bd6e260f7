//! Input hygiene, in one place for every RPC: which characters a string field of a request may
//! hold. Identifiers and single-line fields (names, labels, phone numbers, ids, URLs, template
//! variables) refuse every control character; free text (message bodies, descriptions, reasons,
//! additional information) allows `\n` and `\t` and refuses the rest. Both refuse the Unicode
//! bidirectional overrides and isolates (text that displays other than it reads).
//!
//! The check walks the request by reflection over the contract's descriptors, so a field added
//! to a `.proto` is covered without anyone remembering to.

use prost_reflect::{DynamicMessage, MapKey, Value};

/// Fields, by name, that hold free text. Every other string field is single-line.
pub const FREE_TEXT_FIELDS: &[&str] = &["body", "additional_information", "description", "reason"];

/// Whether a string field may span lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    SingleLine,
    FreeText,
}

impl TextKind {
    pub fn of_field(name: &str) -> Self {
        if FREE_TEXT_FIELDS.contains(&name) { Self::FreeText } else { Self::SingleLine }
    }
}

/// Why `value` may not be stored as `kind`, if it may not.
pub fn check_text(value: &str, kind: TextKind) -> Result<(), &'static str> {
    for c in value.chars() {
        match c {
            '\0' => return Err("must not contain NUL characters"),
            '\n' | '\t' if kind == TextKind::FreeText => {}
            c if c.is_control() => return Err("must not contain control characters"),
            '\u{2028}' | '\u{2029}' if kind == TextKind::SingleLine => {
                return Err("must not contain line or paragraph separators");
            }
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {
                return Err("must not contain bidirectional override or isolate characters");
            }
            _ => {}
        }
    }
    Ok(())
}

/// `value` with what [`check_text`] refuses removed and at most `max_chars` characters: for text
/// from outside parties the service cannot refuse (a client's message relayed by a provider).
pub fn scrub(value: &str, kind: TextKind, max_chars: usize) -> String {
    value
        .chars()
        .filter(|c| {
            let mut buffer = [0u8; 4];
            check_text(c.encode_utf8(&mut buffer), kind).is_ok()
        })
        .take(max_chars)
        .collect()
}

/// The violations, `(field path, reason)`, in an encoded message of type `full_name`. A type
/// outside the contract or a body that does not decode has none here (decoding reports those).
pub fn check_encoded(full_name: &str, bytes: &[u8]) -> Vec<(String, String)> {
    let Some(descriptor) = crate::descriptor_pool().and_then(|pool| pool.get_message_by_name(full_name)) else {
        return Vec::new();
    };
    let Ok(message) = DynamicMessage::decode(descriptor, bytes) else {
        return Vec::new();
    };
    let mut violations = Vec::new();
    walk(&message, "", &mut violations);
    violations
}

fn walk(message: &DynamicMessage, prefix: &str, out: &mut Vec<(String, String)>) {
    for (field, value) in message.fields() {
        let path = format!("{prefix}{}", field.name());
        check_value(value, &path, TextKind::of_field(field.name()), out);
    }
}

fn check_value(value: &Value, path: &str, kind: TextKind, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(text) => {
            if let Err(reason) = check_text(text, kind) {
                out.push((path.to_owned(), reason.to_owned()));
            }
        }
        Value::Message(inner) => walk(inner, &format!("{path}."), out),
        Value::List(items) => {
            for (index, item) in items.iter().enumerate() {
                check_value(item, &format!("{path}[{index}]"), kind, out);
            }
        }
        Value::Map(entries) => {
            for (key, item) in entries {
                let key_text = match key {
                    MapKey::String(text) => {
                        if let Err(reason) = check_text(text, TextKind::SingleLine) {
                            out.push((format!("{path} (a key)"), reason.to_owned()));
                            continue;
                        }
                        text.clone()
                    }
                    other => format!("{other:?}"),
                };
                check_value(item, &format!("{path}[{key_text:?}]"), TextKind::SingleLine, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::v1 as messaging;
    use prost::Message;

    #[test]
    fn single_line_fields_refuse_every_control_character() {
        for bad in ["a\0b", "a\nb", "a\tb", "a\rb", "a\u{1b}[31mb", "a\u{7f}b", "a\u{85}b", "a\u{2028}b"] {
            assert!(check_text(bad, TextKind::SingleLine).is_err(), "{bad:?}");
        }
        assert!(check_text("Café — São Paulo 😀", TextKind::SingleLine).is_ok());
    }

    #[test]
    fn free_text_allows_new_lines_and_tabs_only() {
        assert!(check_text("line one\n\tline two", TextKind::FreeText).is_ok());
        for bad in ["a\0b", "a\rb", "a\u{1b}b", "a\u{7}b"] {
            assert!(check_text(bad, TextKind::FreeText).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scrubbing_keeps_what_the_kind_allows_and_bounds_the_length() {
        assert_eq!(scrub("Olá\0 mundo\u{1b}[31m\n!", TextKind::FreeText, 100), "Olá mundo[31m\n!");
        assert_eq!(scrub("a\nb\u{202e}c", TextKind::SingleLine, 100), "abc");
        assert_eq!(scrub("abcdef", TextKind::SingleLine, 3), "abc");
    }

    #[test]
    fn bidirectional_overrides_are_refused_everywhere() {
        for kind in [TextKind::SingleLine, TextKind::FreeText] {
            assert!(check_text("invoice\u{202E}fdp.exe", kind).is_err());
            assert!(check_text("a\u{2066}b", kind).is_err());
        }
    }

    #[test]
    fn a_request_is_walked_through_nested_messages_lists_maps_and_oneofs() {
        let request = messaging::SendTemplateRequest {
            request_id: "ok".into(),
            variables: vec!["fine".into(), "bad\0".into()],
            metadata: [("k\u{1b}".to_owned(), "v".to_owned()), ("k".to_owned(), "v\n".to_owned())].into(),
            recipient: Some(messaging::send_template_request::Recipient::Phone("+55\r".into())),
            additional_information: "multi\nline".into(),
            ..Default::default()
        };
        let mut fields: Vec<String> = check_encoded("dw.messaging.v1.SendTemplateRequest", &request.encode_to_vec())
            .into_iter()
            .map(|v| v.0)
            .collect();
        fields.sort();
        assert_eq!(fields, vec!["metadata (a key)", "metadata[\"k\"]", "phone", "variables[1]"]);
    }

    #[test]
    fn a_clean_request_has_no_violations() {
        let request = messaging::UpsertContactRequest {
            request_id: "r-1".into(),
            name: "Ana Lúcia".into(),
            phone: "+5511999999999".into(),
            ..Default::default()
        };
        assert!(check_encoded("dw.messaging.v1.UpsertContactRequest", &request.encode_to_vec()).is_empty());
    }
}
