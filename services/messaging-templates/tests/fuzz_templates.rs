//! Property-based fuzzing of template content and rendering (`domain::template`,
//! `domain::preview`) and of SMS encoding and segmenting (`domain::sms`).
//!
//! - `render` substitutes exactly the placeholders it is given values for and never re-expands a
//!   value (a variable containing `{{1}}` stays literal); with no values it changes nothing.
//! - `count_variables`, `Content::parse`, `parse_name`, `parse_language`, `parse_url` never panic,
//!   and what they accept satisfies the rules they state.
//! - `render_send` never panics, and a render without problems is the send the template promises.
//! - `sms::analyze` picks GSM-7 exactly for GSM 03.38 text, counts septets or UTF-16 units, and
//!   counts segments as carriers do: 160 septets or 70 units in one, else 153 or 67 per segment,
//!   a character never split across two; more text never needs fewer segments.
//!
//! Inputs include NUL, control characters, braces and huge strings (~100 KB). Cases:
//! `PROPTEST_CASES` (`make fuzz` runs many more); failures are kept in
//! `tests/fuzz-regressions/fuzz_templates.txt` and replayed first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use messaging_templates::domain::preview::Limits;
use messaging_templates::domain::sms::{self, Encoding};
use messaging_templates::domain::template::{
    Category, Channel, Content, ContentInput, HeaderKind, SMS_BODY_MAX, Template, WHATSAPP_BODY_MAX,
    WHATSAPP_FOOTER_MAX, WHATSAPP_HEADER_TEXT_MAX, count_variables, parse_language, parse_name, parse_url, render,
};
use messaging_templates::domain::{DepartmentId, preview};
use proptest::prelude::*;

const TARGET: dw_fuzz::Target = dw_fuzz::Target::new("tests/fuzz-regressions/fuzz_templates.txt");

/// Any text, weighted towards what breaks template parsing: braces and placeholders, NUL and
/// control characters, whitespace, GSM-7 extension characters, non-GSM letters, emoji.
fn hostile_text(max: usize) -> impl Strategy<Value = String> {
    let specials = vec![
        "{{",
        "}}",
        "{",
        "}",
        "{{1}}",
        "{{2}}",
        "{{ 1 }}",
        "{{0}}",
        "{{+1}}",
        "{{-1}}",
        "{{x}}",
        "{{}}",
        "{{99999999999999999999999}}",
        "\0",
        "\t",
        "\n",
        "\r",
        "\u{7f}",
        "\u{202e}",
        "€",
        "[",
        "é",
        "ã",
        "😀",
    ];
    dw_fuzz::hostile_text(max, "[a-z0-9 ]{1,8}", specials, 2)
}

/// Text between placeholders: anything without `{{` that does not end in `{` (which would make
/// `{{{n}}`, refused as a variable).
fn literal() -> impl Strategy<Value = String> {
    hostile_text(6).prop_map(|text| {
        let mut text = text.replace('{', "(");
        if text.len() % 3 == 0 {
            text.push('{');
            text.push('x');
        }
        text
    })
}

/// A template body as pieces, and the values it is rendered with.
#[derive(Debug, Clone)]
struct Body {
    literals: Vec<String>,
    /// After `literals[i]`, placeholder number `slots[i]` (1-based), spelled `{{n}}` or `{{ n }}`.
    slots: Vec<(usize, bool)>,
    values: Vec<String>,
}

impl Body {
    fn text(&self) -> String {
        let mut text = String::new();
        for (i, literal) in self.literals.iter().enumerate() {
            text.push_str(literal);
            if let Some(&(n, spaced)) = self.slots.get(i) {
                text.push_str(&if spaced { format!("{{{{ {n} }}}}") } else { format!("{{{{{n}}}}}") });
            }
        }
        text
    }

    /// What rendering must give: each placeholder with a value replaced by it, verbatim.
    fn expected(&self) -> String {
        let mut text = String::new();
        for (i, literal) in self.literals.iter().enumerate() {
            text.push_str(literal);
            if let Some(&(n, spaced)) = self.slots.get(i) {
                match self.values.get(n - 1) {
                    Some(value) => text.push_str(value),
                    None => text.push_str(&if spaced { format!("{{{{ {n} }}}}") } else { format!("{{{{{n}}}}}") }),
                }
            }
        }
        text
    }
}

/// A body using placeholders 1..=n (each at least once, any order, some repeated) and values
/// that are themselves placeholders, braces or anything else.
fn body() -> impl Strategy<Value = Body> {
    (1usize..6, 0usize..4)
        .prop_flat_map(|(n, repeats)| {
            let order = Just((1..=n).collect::<Vec<_>>()).prop_shuffle();
            let extra = prop::collection::vec(1..=n, repeats);
            let values = prop::collection::vec(hostile_text(6), n);
            (order, extra, prop::collection::vec(any::<bool>(), n + repeats), values)
        })
        .prop_flat_map(|(order, extra, spaced, values)| {
            let numbers: Vec<usize> = order.into_iter().chain(extra).collect();
            let slots: Vec<(usize, bool)> = numbers.into_iter().zip(spaced).collect();
            let literals = prop::collection::vec(literal(), slots.len() + 1);
            (literals, Just(slots), Just(values))
        })
        .prop_map(|(literals, slots, values)| Body { literals, slots, values })
}

/// GSM 03.38, written out here from the specification's table (row by row, 0x00-0x7F without
/// the escape 0x1B) independently of `sms.rs`.
const GSM_BASIC: [char; 127] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', 'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω',
    'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', 'Æ', 'æ', 'ß', 'É', ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-',
    '.', '/', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', '¡', 'A', 'B', 'C', 'D',
    'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä',
    'Ö', 'Ñ', 'Ü', '§', '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r',
    's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];
/// The extension table: the escape septet and one more each.
const GSM_EXTENSION: [char; 10] = ['\u{c}', '^', '{', '}', '\\', '[', '~', ']', '|', '€'];

/// Encoding, units and segments of `text` as a carrier splits it: one segment while it fits
/// (160 septets, 70 UTF-16 units), else segments of 153 or 67, a character (an extension
/// character's two septets, a surrogate pair) never split across two.
fn carrier_split(text: &str) -> (Encoding, usize, usize) {
    let gsm: Option<Vec<usize>> = text
        .chars()
        .map(|c| {
            if GSM_BASIC.contains(&c) {
                Some(1)
            } else if GSM_EXTENSION.contains(&c) {
                Some(2)
            } else {
                None
            }
        })
        .collect();
    let (encoding, widths, single, multi) = match gsm {
        Some(widths) => (Encoding::Gsm7, widths, 160, 153),
        None => (Encoding::Ucs2, text.chars().map(char::len_utf16).collect(), 70, 67),
    };
    let units: usize = widths.iter().sum();
    if units == 0 {
        return (encoding, 0, 0);
    }
    if units <= single {
        return (encoding, units, 1);
    }
    let mut segments = 1;
    let mut used = 0;
    for width in widths {
        if used + width > multi {
            segments += 1;
            used = 0;
        }
        used += width;
    }
    (encoding, units, segments)
}

/// SMS text: GSM-7 only (with extension characters), or with some UCS-2 characters, of lengths
/// around the segment boundaries.
fn sms_text() -> impl Strategy<Value = String> {
    let gsm_char = prop_oneof![
        6 => prop::sample::select(GSM_BASIC.to_vec()),
        1 => prop::sample::select(GSM_EXTENSION.to_vec()),
    ];
    let any_char = prop_oneof![
        6 => prop::sample::select(GSM_BASIC.to_vec()),
        1 => prop::sample::select(GSM_EXTENSION.to_vec()),
        1 => prop::sample::select(vec!['ã', 'ú', 'ç', '😀', '👍', '\u{1f1e7}', '\0', '\u{7f}', '\u{202e}']),
        1 => any::<char>(),
    ];
    prop_oneof![
        prop::collection::vec(gsm_char, 0..700).prop_map(|chars| chars.into_iter().collect()),
        prop::collection::vec(any_char, 0..400).prop_map(|chars| chars.into_iter().collect()),
    ]
}

fn content_input() -> impl Strategy<Value = ContentInput> {
    let language = prop_oneof![3 => "[a-z]{2,3}([_-][A-Za-z0-9]{2,3})?", 1 => hostile_text(6)];
    let category =
        prop::option::of(prop::sample::select(vec![Category::Marketing, Category::Utility, Category::Authentication]));
    let header_kind =
        prop::option::of(prop::sample::select(vec![HeaderKind::None, HeaderKind::Text, HeaderKind::Image]));
    let url = prop_oneof![
        2 => Just(String::new()),
        1 => "https://[a-z]{1,8}\\.example/[a-z]{0,8}\\.png",
        1 => hostile_text(8),
    ];
    let short = prop_oneof![2 => Just(String::new()), 2 => "[A-Za-z ]{1,20}", 1 => hostile_text(10)];
    let body = prop_oneof![3 => body().prop_map(|b| b.text()), 1 => hostile_text(40)];
    let metadata = prop::collection::btree_map(hostile_text(4), hostile_text(4), 0..4);
    let department = prop_oneof![2 => Just(String::new()), 1 => "[a-z0-9-]{1,10}", 1 => hostile_text(6)];
    (language, category, header_kind, short.clone(), url.clone(), body, short, department, url, metadata).prop_map(
        |(
            language,
            category,
            header_kind,
            header_text,
            header_image_url,
            body,
            footer,
            department,
            default_webhook_url,
            default_metadata,
        )| ContentInput {
            language,
            category,
            header_kind,
            header_text,
            header_image_url,
            body,
            footer,
            department,
            default_webhook_url,
            default_metadata,
        },
    )
}

fn channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(vec![Channel::Whatsapp, Channel::Sms])
}

fn template_of(channel: Channel, content: Content) -> Template {
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    Template {
        template_id: uuid::Uuid::from_u128(1),
        channel,
        name: "fuzz".into(),
        content,
        archived: false,
        created_at: at,
        updated_at: at,
    }
}

/// URL-shaped text around the rule's edges: each scheme and loopback prefix, then ports, paths,
/// userinfo (`@`), fragments and hosts that are not loopback.
fn url_like() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec![
        "https://",
        "http://",
        "http://127.0.0.1",
        "http://localhost",
        "http://[::1]",
        "HTTP://localhost",
    ]);
    let piece =
        prop::sample::select(vec![":", "/", "@", ".", "8080", "evil.example", "#", "?", "\\", "%40", " ", "localhost"]);
    (prefix, prop::collection::vec(piece, 0..6)).prop_map(|(prefix, rest)| format!("{prefix}{}", rest.concat()))
}

/// The loopback hosts `parse_url` admits over plain http.
fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

proptest! {
    #![proptest_config(TARGET.config(1024))]

    /// Each placeholder with a value is replaced by it verbatim, once: a value that looks like a
    /// placeholder (or holds braces) stays literal; placeholders without a value stay as written.
    #[test]
    fn render_substitutes_exactly_and_never_re_expands(body in body(), keep in 0usize..8) {
        let text = body.text();
        prop_assert_eq!(count_variables(&text), Ok(body.values.len()), "{:?}", text);
        prop_assert_eq!(render(&text, &body.values), body.expected());
        let fewer = Body { values: body.values.iter().take(keep).cloned().collect(), ..body.clone() };
        prop_assert_eq!(render(&text, &fewer.values), fewer.expected());
    }

    /// Any text and any values: no panic; with no values nothing changes.
    #[test]
    fn render_never_panics(text in hostile_text(40), values in prop::collection::vec(hostile_text(4), 0..4)) {
        let _ = render(&text, &values);
        prop_assert_eq!(render(&text, &[]), text);
    }

    /// Any text: `count_variables` does not panic, and a body it accepts with n variables renders
    /// with n brace-free values to text that uses each of them and has no placeholder left.
    #[test]
    fn accepted_bodies_render_completely(text in hostile_text(40)) {
        if let Ok(n) = count_variables(&text) {
            let values: Vec<String> = (1..=n).map(|i| format!("<value {i}>")).collect();
            let rendered = render(&text, &values);
            prop_assert!(!rendered.contains("{{"), "{:?} rendered as {:?}", text, rendered);
            for value in &values {
                prop_assert!(rendered.contains(value.as_str()), "{:?} lost {}", text, value);
            }
        }
    }

    /// Any input: `Content::parse` does not panic; content it accepts keeps the channel's rules,
    /// and every problem it reports names a field under the prefix.
    #[test]
    fn content_parse_keeps_its_rules(channel in channel(), input in content_input()) {
        let metadata: BTreeMap<String, String> = input.default_metadata.clone();
        match Content::parse(channel, input, "content.") {
            Ok(content) => {
                prop_assert!(!content.body.is_empty());
                prop_assert_eq!(content.body.trim(), content.body.as_str());
                prop_assert_eq!(count_variables(&content.body), Ok(content.variable_count));
                if let Some(language) = &content.language {
                    prop_assert_eq!(parse_language(language), Ok(language.clone()));
                }
                if channel == Channel::Whatsapp {
                    prop_assert!(content.language.is_some() && content.category.is_some());
                }
                for url in [&content.header_image_url, &content.default_webhook_url].into_iter().flatten() {
                    prop_assert_eq!(parse_url(url), Ok(url.clone()));
                }
                if let Some(department) = &content.department {
                    prop_assert!(DepartmentId::parse(department.as_str()).is_ok());
                }
                prop_assert_eq!(content.default_metadata, metadata);
                let body_chars = content.body.chars().count();
                match channel {
                    Channel::Whatsapp => {
                        prop_assert!(body_chars <= WHATSAPP_BODY_MAX);
                        let within = |text: &Option<String>, max: usize| text.iter().all(|t| t.chars().count() <= max);
                        prop_assert!(within(&content.header_text, WHATSAPP_HEADER_TEXT_MAX));
                        prop_assert!(within(&content.footer, WHATSAPP_FOOTER_MAX));
                        let kind = content.header_kind;
                        prop_assert!(content.header_text.is_none() || kind == HeaderKind::Text);
                        prop_assert!(content.header_image_url.is_none() || kind == HeaderKind::Image);
                    }
                    Channel::Sms => {
                        prop_assert!(body_chars <= SMS_BODY_MAX);
                        prop_assert_eq!(content.header_kind, HeaderKind::None);
                        prop_assert!(content.header_text.is_none() && content.header_image_url.is_none());
                        prop_assert!(content.footer.is_none());
                    }
                }
            }
            Err(problems) => {
                prop_assert!(!problems.is_empty());
                prop_assert!(problems.iter().all(|(field, _)| field.starts_with("content.")));
            }
        }
    }

    /// Names: accepted exactly when `^[a-z][a-z0-9_]*$` and at most 512 bytes, kept as given.
    #[test]
    fn parse_name_accepts_exactly_its_pattern(
        text in prop_oneof![hostile_text(10), "[a-z][a-z0-9_]{0,20}", "[a-z]{513}"],
    ) {
        let mut chars = text.chars();
        let expected = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && text.len() <= 512;
        match parse_name(&text) {
            Ok(name) => {
                prop_assert!(expected, "accepted {:?}", text);
                prop_assert_eq!(name, text);
            }
            Err(_) => prop_assert!(!expected, "refused {:?}", text),
        }
    }

    /// Language tags: no panic; what is accepted is `ll` or `ll_RR` (the `-` form normalised),
    /// and accepting it again gives the same tag.
    #[test]
    fn parse_language_normalises_once(
        text in prop_oneof![hostile_text(6), "[a-z]{1,4}([_-][A-Za-z0-9]{1,4})?"],
    ) {
        if let Ok(tag) = parse_language(&text) {
            prop_assert!(!tag.contains('-'));
            prop_assert!(tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            prop_assert_eq!(tag.replace('_', "-"), text.replace('_', "-"));
            prop_assert_eq!(parse_language(&tag), Ok(tag.clone()));
        }
    }

    /// URLs: no panic; an accepted URL is at most 2,048 bytes without whitespace, and either
    /// https or plain http whose host, as a URL parser reads it, is a loopback host.
    #[test]
    fn parse_url_admits_only_https_or_loopback(text in prop_oneof![hostile_text(10), url_like()]) {
        if let Ok(url) = parse_url(&text) {
            prop_assert_eq!(&url, &text);
            prop_assert!(url.len() <= 2048 && !url.contains(char::is_whitespace));
            if !url.starts_with("https://") {
                prop_assert!(url.starts_with("http://"), "{:?}", url);
                if let Ok(parsed) = reqwest::Url::parse(&url) {
                    let host = parsed.host_str().unwrap_or_default();
                    prop_assert!(is_loopback(host), "{:?} reaches {:?} over plain http", url, host);
                }
            }
        }
    }

    /// Any variables and header overrides on any valid template: no panic; a render without
    /// problems sends exactly the template's variables, its rendered body within the channel's
    /// limits, and for SMS the analysis of that body.
    #[test]
    fn render_send_keeps_its_promises(
        channel in channel(),
        input in content_input(),
        variables in prop::collection::vec(prop_oneof![3 => "[A-Za-z0-9 ]{1,20}", 1 => hostile_text(6)], 0..6),
        header_text in prop::option::of(hostile_text(8)),
        header_image_url in prop::option::of(prop_oneof!["https://[a-z]{1,8}\\.example/i\\.png", hostile_text(6)]),
        archived in any::<bool>(),
    ) {
        let Ok(content) = Content::parse(channel, input, "") else { return Ok(()) };
        let template = Template { archived, ..template_of(channel, content) };
        let rendered =
            preview::render_send(&template, &variables, header_text.as_deref(), header_image_url.as_deref(), &Limits::default());
        prop_assert_eq!(&rendered.body, &render(&template.content.body, &variables));
        prop_assert_eq!(rendered.sms, (channel == Channel::Sms).then(|| sms::analyze(&rendered.body)));
        if rendered.problems.is_empty() {
            prop_assert!(!archived);
            prop_assert_eq!(variables.len(), template.content.variable_count);
            prop_assert!(variables.iter().all(|v| !v.trim().is_empty() && !v.contains(['\n', '\r'])));
            let header_chars = rendered.header_text.as_ref().map_or(0, |t| t.chars().count());
            prop_assert!(header_chars <= WHATSAPP_HEADER_TEXT_MAX);
            if channel == Channel::Whatsapp {
                prop_assert!(rendered.body.chars().count() <= WHATSAPP_BODY_MAX);
            }
            if template.content.header_kind == HeaderKind::Image {
                prop_assert!(rendered.header_image_url.is_some());
            }
        }
    }

    /// Encoding, units and segments are those of GSM 03.38 and the carriers' split.
    #[test]
    fn sms_segments_match_the_carrier_rules(text in sms_text()) {
        let analysis = sms::analyze(&text);
        let (encoding, units, segments) = carrier_split(&text);
        let found = (analysis.encoding, analysis.units, analysis.segments);
        prop_assert_eq!(found, (encoding, units, segments), "{:?}", text);
    }

    /// More text never needs fewer segments.
    #[test]
    fn sms_segments_grow_with_the_text(text in sms_text(), more in sms_text()) {
        let longer = format!("{text}{more}");
        prop_assert!(sms::analyze(&text).segments <= sms::analyze(&longer).segments, "{:?} + {:?}", text, more);
    }

    /// One character more: the count stays or grows by one (or jumps when the text turns UCS-2).
    #[test]
    fn sms_segments_step_one_at_a_time(
        text in sms_text(),
        c in prop_oneof![prop::sample::select(GSM_BASIC.to_vec()), prop::sample::select(GSM_EXTENSION.to_vec())],
    ) {
        let before = sms::analyze(&text);
        let after = sms::analyze(&format!("{text}{c}"));
        if before.encoding == after.encoding {
            let step = after.segments.checked_sub(before.segments);
            prop_assert!(matches!(step, Some(0 | 1)), "{:?} + {:?}", text, c);
        }
    }
}

/// Bodies, values and SMS texts up to ~100 KB: no panic; the analysis still follows the rules.
#[test]
fn huge_inputs_never_panic() {
    let fillers = vec!["a", "{{1}}", "{{", "}}", "\0", "€", "ã", "😀"];
    TARGET
        .huge_runner(24)
        .run(&(50_000usize..100_000, prop::sample::select(fillers)), |(size, filler)| {
            let huge = filler.repeat(size / filler.len());
            // Small values: every `{{1}}` of a huge body is replaced.
            let values = vec!["x".to_owned(); 2];
            prop_assert_eq!(render(&huge, &[]), huge.clone());
            let _ = render(&huge, &values);
            let _ = count_variables(&huge);
            let _ = parse_name(&huge);
            let _ = parse_language(&huge);
            prop_assert!(parse_url(&huge).is_err());
            let input = ContentInput {
                language: "en".into(),
                category: Some(Category::Utility),
                body: huge.clone(),
                header_text: huge.clone(),
                footer: huge.clone(),
                ..ContentInput::default()
            };
            let _ = Content::parse(Channel::Whatsapp, input.clone(), "");
            let _ = Content::parse(Channel::Sms, input, "");
            let (encoding, units, segments) = carrier_split(&huge);
            let analysis = sms::analyze(&huge);
            prop_assert_eq!((analysis.encoding, analysis.units, analysis.segments), (encoding, units, segments));
            let small = ContentInput {
                language: "en".into(),
                category: Some(Category::Utility),
                body: "Oi {{1}}".into(),
                ..ContentInput::default()
            };
            let content = Content::parse(Channel::Sms, small, "").unwrap();
            let rendered =
                preview::render_send(&template_of(Channel::Sms, content), &[huge], None, None, &Limits::default());
            prop_assert!(!rendered.problems.is_empty(), "a variable of {} bytes is refused", size);
            Ok(())
        })
        .unwrap();
}
