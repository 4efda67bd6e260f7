//! The `Template` aggregate and the rules of its content: names, positional variables, lengths
//! per channel, headers, metadata, and rendering.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dw_eventstore::{CommandError, UpdateMask, check_version};
use serde::{Deserialize, Serialize};

use super::{DepartmentId, DomainError};

/// WhatsApp limits.
pub const WHATSAPP_HEADER_TEXT_MAX: usize = 60;
pub const WHATSAPP_BODY_MAX: usize = 1024;
pub const WHATSAPP_FOOTER_MAX: usize = 60;
/// An SMS body may span several segments, up to this many characters.
pub const SMS_BODY_MAX: usize = 1600;
pub const METADATA_MAX_KEYS: usize = 20;
pub const METADATA_MAX_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    Whatsapp,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whatsapp => "whatsapp",
            Self::Sms => "sms",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "whatsapp" => Some(Self::Whatsapp),
            "sms" => Some(Self::Sms),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Category {
    Marketing,
    Utility,
    Authentication,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeaderKind {
    None,
    Text,
    Image,
}

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

/// A template's editable content, valid for its channel by construction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// Required for WhatsApp (the provider selects the approved translation by it); optional for
    /// SMS, which has no such concept.
    pub language: Option<String>,
    /// Required for WhatsApp (Meta's template categories); optional for SMS.
    pub category: Option<Category>,
    pub header_kind: HeaderKind,
    pub header_text: Option<String>,
    pub header_image_url: Option<String>,
    pub body: String,
    pub footer: Option<String>,
    pub department: Option<DepartmentId>,
    pub default_webhook_url: Option<String>,
    pub default_metadata: BTreeMap<String, String>,
    pub variable_count: usize,
}

/// Unchecked content as it arrives.
#[derive(Debug, Clone, Default)]
pub struct ContentInput {
    pub language: String,
    pub category: Option<Category>,
    pub header_kind: Option<HeaderKind>,
    pub header_text: String,
    pub header_image_url: String,
    pub body: String,
    pub footer: String,
    pub department: String,
    pub default_webhook_url: String,
    pub default_metadata: BTreeMap<String, String>,
}

fn non_empty(value: &str) -> Option<String> {
    let trimmed = value.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

impl Content {
    /// Checks `input` for `channel`; every problem is reported with its field (under `prefix`).
    pub fn parse(channel: Channel, input: ContentInput, prefix: &str) -> Result<Self, Vec<Problem>> {
        let field = |name: &str| format!("{prefix}{name}");
        let mut problems = Vec::new();
        // WhatsApp concepts: required there, optional (but still checked when given) for SMS.
        let language = match (non_empty(&input.language), channel) {
            (Some(language), _) => parse_language(&language).map_err(|e| problems.push((field("language"), e))).ok(),
            (None, Channel::Whatsapp) => {
                problems.push((field("language"), "is required for WhatsApp".into()));
                None
            }
            (None, Channel::Sms) => None,
        };
        if channel == Channel::Whatsapp && input.category.is_none() {
            problems.push((field("category"), "is required for WhatsApp".into()));
        }
        let header_kind = input.header_kind.unwrap_or(HeaderKind::None);
        let body = input.body.trim().to_owned();
        let variable_count = count_variables(&body).map_err(|e| problems.push((field("body"), e))).ok();
        if body.is_empty() {
            problems.push((field("body"), "is required".into()));
        }
        let header_text = non_empty(&input.header_text);
        let header_image_url = match non_empty(&input.header_image_url) {
            Some(url) => parse_url(&url).map_err(|e| problems.push((field("header_image_url"), e))).ok(),
            None => None,
        };
        let footer = non_empty(&input.footer);
        match channel {
            Channel::Whatsapp => {
                if body.chars().count() > WHATSAPP_BODY_MAX {
                    problems.push((field("body"), format!("at most {WHATSAPP_BODY_MAX} characters for WhatsApp")));
                }
                if header_text.as_ref().is_some_and(|t| t.chars().count() > WHATSAPP_HEADER_TEXT_MAX) {
                    problems.push((field("header_text"), format!("at most {WHATSAPP_HEADER_TEXT_MAX} characters")));
                }
                if footer.as_ref().is_some_and(|t| t.chars().count() > WHATSAPP_FOOTER_MAX) {
                    problems.push((field("footer"), format!("at most {WHATSAPP_FOOTER_MAX} characters")));
                }
                if header_kind != HeaderKind::Text && header_text.is_some() {
                    problems.push((field("header_text"), "only with header kind TEXT".into()));
                }
                if header_kind != HeaderKind::Image && header_image_url.is_some() {
                    problems.push((field("header_image_url"), "only with header kind IMAGE".into()));
                }
            }
            Channel::Sms => {
                if body.chars().count() > SMS_BODY_MAX {
                    problems.push((field("body"), format!("at most {SMS_BODY_MAX} characters for SMS")));
                }
                if header_kind != HeaderKind::None || header_text.is_some() || header_image_url.is_some() {
                    problems.push((field("header_kind"), "SMS templates have no header".into()));
                }
                if footer.is_some() {
                    problems.push((field("footer"), "SMS templates have no footer".into()));
                }
            }
        }
        let department = match non_empty(&input.department) {
            Some(d) => DepartmentId::parse(&d).map_err(|e| problems.push((field("department_id"), e))).ok(),
            None => None,
        };
        let default_webhook_url = match non_empty(&input.default_webhook_url) {
            Some(url) => parse_url(&url).map_err(|e| problems.push((field("default_webhook_url"), e))).ok(),
            None => None,
        };
        check_metadata(&field("default_metadata"), &input.default_metadata, &mut problems);
        match variable_count {
            Some(variable_count) if problems.is_empty() => Ok(Self {
                language,
                category: input.category,
                header_kind,
                header_text,
                header_image_url,
                body,
                footer,
                department,
                default_webhook_url,
                default_metadata: input.default_metadata,
                variable_count,
            }),
            _ => Err(problems),
        }
    }

    /// The content as an input again: what an update starts from.
    pub fn to_input(&self) -> ContentInput {
        ContentInput {
            language: self.language.clone().unwrap_or_default(),
            category: self.category,
            header_kind: Some(self.header_kind),
            header_text: self.header_text.clone().unwrap_or_default(),
            header_image_url: self.header_image_url.clone().unwrap_or_default(),
            body: self.body.clone(),
            footer: self.footer.clone().unwrap_or_default(),
            department: self.department.as_ref().map(ToString::to_string).unwrap_or_default(),
            default_webhook_url: self.default_webhook_url.clone().unwrap_or_default(),
            default_metadata: self.default_metadata.clone(),
        }
    }
}

/// The content fields an update can name in its mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContentField {
    Language,
    Category,
    HeaderKind,
    HeaderText,
    HeaderImageUrl,
    Body,
    Footer,
    Department,
    DefaultWebhookUrl,
    DefaultMetadata,
}

impl ContentField {
    /// The mask paths (the contract's field names) of the updatable content.
    pub const UPDATABLE: &'static [(&'static str, ContentField)] = &[
        ("language", ContentField::Language),
        ("category", ContentField::Category),
        ("header_kind", ContentField::HeaderKind),
        ("header_text", ContentField::HeaderText),
        ("header_image_url", ContentField::HeaderImageUrl),
        ("body", ContentField::Body),
        ("footer", ContentField::Footer),
        ("department_id", ContentField::Department),
        ("default_webhook_url", ContentField::DefaultWebhookUrl),
        ("default_metadata", ContentField::DefaultMetadata),
    ];

    /// The template's other fields: a mask naming them is refused (a template keeps its channel
    /// and name; the rest is the service's).
    pub const READ_ONLY: &'static [&'static str] =
        &["template_id", "channel", "name", "variable_count", "archived", "version", "created_at", "updated_at"];
}

/// A manager's change of a template's content: the fields `mask` names take their value from
/// `patch`, the others keep theirs; with `expected_version`, only if the template is still at it.
#[derive(Debug, Clone)]
pub struct ContentUpdate {
    pub patch: ContentInput,
    pub mask: UpdateMask<ContentField>,
    pub expected_version: Option<u64>,
}

/// `current`'s input with the fields `mask` names taken from `patch`.
pub fn merge(current: ContentInput, patch: ContentInput, mask: &UpdateMask<ContentField>) -> ContentInput {
    use ContentField as F;
    ContentInput {
        language: mask.pick(F::Language, current.language, patch.language),
        category: mask.pick(F::Category, current.category, patch.category),
        header_kind: mask.pick(F::HeaderKind, current.header_kind, patch.header_kind),
        header_text: mask.pick(F::HeaderText, current.header_text, patch.header_text),
        header_image_url: mask.pick(F::HeaderImageUrl, current.header_image_url, patch.header_image_url),
        body: mask.pick(F::Body, current.body, patch.body),
        footer: mask.pick(F::Footer, current.footer, patch.footer),
        department: mask.pick(F::Department, current.department, patch.department),
        default_webhook_url: mask.pick(F::DefaultWebhookUrl, current.default_webhook_url, patch.default_webhook_url),
        default_metadata: mask.pick(F::DefaultMetadata, current.default_metadata, patch.default_metadata),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub template_id: uuid::Uuid,
    pub channel: Channel,
    pub name: String,
    pub content: Content,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Created(Template),
    Updated { content: Content, at: DateTime<Utc> },
    Archived { at: DateTime<Utc> },
}

/// Applies `update` to the template at `version`: refused when the caller read an older version,
/// when the template is archived, or when the merged content is not valid for its channel (each
/// problem under `content.`); an update that leaves the content equal changes nothing.
pub fn update(
    state: &Template,
    version: u64,
    update: ContentUpdate,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, CommandError<DomainError>> {
    check_version(update.expected_version, version)?;
    if state.archived {
        return Err(DomainError::TemplateArchived.into());
    }
    let merged = merge(state.content.to_input(), update.patch, &update.mask);
    let content = Content::parse(state.channel, merged, "content.").map_err(CommandError::Invalid)?;
    if state.content == content {
        return Ok(Vec::new());
    }
    Ok(vec![Event::Updated { content, at: now }])
}

pub fn archive(state: &Template, now: DateTime<Utc>) -> Result<Vec<Event>, DomainError> {
    if state.archived {
        return Err(DomainError::TemplateArchived);
    }
    Ok(vec![Event::Archived { at: now }])
}

pub fn evolve(state: Option<Template>, event: &Event) -> Option<Template> {
    match (state, event) {
        (_, Event::Created(template)) => Some(template.clone()),
        (Some(mut state), Event::Updated { content, at }) => {
            state.content = content.clone();
            state.updated_at = *at;
            Some(state)
        }
        (Some(mut state), Event::Archived { at }) => {
            state.archived = true;
            state.updated_at = *at;
            Some(state)
        }
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(body: &str) -> ContentInput {
        ContentInput {
            language: "pt_BR".into(),
            category: Some(Category::Utility),
            body: body.into(),
            ..Default::default()
        }
    }

    fn fields(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn names_languages_and_urls() {
        assert!(parse_name("order_update_2").is_ok());
        assert!(parse_name("Order").is_err());
        assert!(parse_name("2fa").is_err());
        assert!(parse_name("with-dash").is_err());
        assert_eq!(parse_language("pt-BR").as_deref(), Ok("pt_BR"));
        assert!(parse_language("portuguese").is_err());
        assert!(parse_url("https://cdn.example.com/a.png").is_ok());
        assert!(parse_url("http://cdn.example.com/a.png").is_err());
        assert!(parse_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(parse_url("http://127.0.0.1.evil.com/").is_err());
        assert!(parse_url("http://localhost/a@b").is_ok());
        assert!(parse_url("http://localhost:8080@evil.example/").is_err(), "userinfo: the host is evil.example");
        assert!(parse_url("http://[::1]:@evil.example").is_err());
        assert!(parse_url("https://").is_err());
    }

    #[test]
    fn variables_are_numbered_without_gaps() {
        assert_eq!(count_variables("Hi"), Ok(0));
        assert_eq!(count_variables("Hi {{1}}, order {{2}} ({{1}})"), Ok(2));
        assert!(count_variables("Hi {{2}}").is_err());
        assert!(count_variables("Hi {{0}}").is_err());
        assert!(count_variables("Hi {{name}}").is_err());
        assert!(count_variables("Hi {{1").is_err());
        let values = vec!["Ana".to_owned(), "42".to_owned()];
        assert_eq!(render("Hi {{1}}, order {{2}} ({{1}}) {{3}}", &values), "Hi Ana, order 42 (Ana) {{3}}");
    }

    #[test]
    fn whatsapp_lengths_and_header_kinds() {
        let content = Content::parse(Channel::Whatsapp, input("Olá {{1}}"), "").unwrap();
        assert_eq!(content.variable_count, 1);
        let long = ContentInput {
            header_kind: Some(HeaderKind::Text),
            header_text: "x".repeat(61),
            ..input(&"y".repeat(1025))
        };
        let problems = Content::parse(Channel::Whatsapp, long, "content.").unwrap_err();
        assert_eq!(fields(&problems), ["content.body", "content.header_text"]);
        let wrong_kind = ContentInput { header_image_url: "https://x.example/i.png".into(), ..input("Hi") };
        assert_eq!(fields(&Content::parse(Channel::Whatsapp, wrong_kind, "").unwrap_err()), ["header_image_url"]);
        let http_image = ContentInput {
            header_kind: Some(HeaderKind::Image),
            header_image_url: "http://x.example/i.png".into(),
            ..input("Hi")
        };
        assert_eq!(fields(&Content::parse(Channel::Whatsapp, http_image, "").unwrap_err()), ["header_image_url"]);
    }

    #[test]
    fn sms_has_no_header_or_footer_and_metadata_is_bounded() {
        let with_header = ContentInput { header_kind: Some(HeaderKind::Text), footer: "bye".into(), ..input("Hi") };
        assert_eq!(fields(&Content::parse(Channel::Sms, with_header, "").unwrap_err()), ["header_kind", "footer"]);
        let metadata: BTreeMap<String, String> = (0..21).map(|i| (format!("k{i}"), "v".into())).collect();
        let too_many = ContentInput { default_metadata: metadata, ..input("Hi") };
        assert_eq!(fields(&Content::parse(Channel::Sms, too_many, "").unwrap_err()), ["default_metadata"]);
        let bad = ContentInput { category: None, language: "x".into(), ..input("") };
        assert_eq!(fields(&Content::parse(Channel::Sms, bad, "").unwrap_err()), ["language", "body"]);
    }

    #[test]
    fn given_an_sms_template_without_language_or_category_when_parsed_then_it_is_valid() {
        let plain = ContentInput { body: "Your code is {{1}}".into(), ..Default::default() };
        let content = Content::parse(Channel::Sms, plain, "").unwrap();
        assert_eq!((content.language, content.category), (None, None));
    }

    #[test]
    fn given_a_whatsapp_template_without_language_or_category_when_parsed_then_both_are_required() {
        let plain = ContentInput { body: "Olá {{1}}".into(), ..Default::default() };
        let problems = Content::parse(Channel::Whatsapp, plain, "content.").unwrap_err();
        assert_eq!(fields(&problems), ["content.language", "content.category"]);
        assert!(problems.iter().all(|(_, why)| why.contains("required for WhatsApp")), "{problems:?}");
    }

    fn whatsapp_template(now: DateTime<Utc>) -> Template {
        let content = ContentInput {
            footer: "Loja Exemplo".into(),
            department: "sales".into(),
            default_metadata: BTreeMap::from([("crm".to_owned(), "x".to_owned())]),
            ..input("Olá {{1}}")
        };
        Template {
            template_id: uuid::Uuid::now_v7(),
            channel: Channel::Whatsapp,
            name: "hello".into(),
            content: Content::parse(Channel::Whatsapp, content, "").unwrap(),
            archived: false,
            created_at: now,
            updated_at: now,
        }
    }

    fn only(fields: &[ContentField], patch: ContentInput) -> ContentUpdate {
        ContentUpdate { patch, mask: UpdateMask::Fields(fields.iter().copied().collect()), expected_version: None }
    }

    fn updated(template: &Template, events: &[Event]) -> Template {
        events.iter().fold(Some(template.clone()), evolve).unwrap()
    }

    #[test]
    fn given_a_template_when_only_the_body_is_named_then_the_rest_is_kept() {
        let now = Utc::now();
        let template = whatsapp_template(now);
        let patch = ContentInput { body: "Oi {{1}}, pedido {{2}}".into(), ..Default::default() };

        let events = update(&template, 1, only(&[ContentField::Body], patch), now).unwrap();

        let after = updated(&template, &events).content;
        assert_eq!((after.body.as_str(), after.variable_count), ("Oi {{1}}, pedido {{2}}", 2));
        let before = template.content;
        assert_eq!((after.language, after.category, after.footer), (before.language, before.category, before.footer));
        assert_eq!((after.department, after.default_metadata), (before.department, before.default_metadata));
    }

    #[test]
    fn given_a_template_when_a_named_field_is_absent_then_it_is_cleared_and_the_result_validated() {
        let now = Utc::now();
        let template = whatsapp_template(now);
        let events = update(&template, 1, only(&[ContentField::Footer], ContentInput::default()), now).unwrap();
        assert_eq!(updated(&template, &events).content.footer, None);

        // Clearing a WhatsApp concept of a WhatsApp template leaves it invalid.
        let refused = update(&template, 1, only(&[ContentField::Language], ContentInput::default()), now);
        let Err(CommandError::Invalid(problems)) = refused else { panic!("invalid expected: {refused:?}") };
        assert_eq!(fields(&problems), ["content.language"]);
    }

    #[test]
    fn given_a_template_when_the_mask_is_all_then_the_patch_replaces_the_content() {
        let now = Utc::now();
        let template = whatsapp_template(now);
        let all = ContentUpdate { patch: input("Hi"), mask: UpdateMask::All, expected_version: None };
        let after = updated(&template, &update(&template, 1, all, now).unwrap()).content;
        assert_eq!(after, Content::parse(Channel::Whatsapp, input("Hi"), "").unwrap());
    }

    #[test]
    fn given_a_template_at_version_three_when_the_caller_read_version_two_then_it_is_stale() {
        let now = Utc::now();
        let template = whatsapp_template(now);
        let stale = ContentUpdate { expected_version: Some(2), ..only(&[ContentField::Body], input("Hi")) };
        let refused = update(&template, 3, stale, now);
        assert!(matches!(refused, Err(CommandError::StaleVersion(s)) if s.current == 3), "{refused:?}");
    }

    #[test]
    fn archived_templates_cannot_change() {
        let now = Utc::now();
        let template = Template {
            template_id: uuid::Uuid::now_v7(),
            channel: Channel::Sms,
            name: "hello".into(),
            content: Content::parse(Channel::Sms, input("Hi {{1}}"), "").unwrap(),
            archived: false,
            created_at: now,
            updated_at: now,
        };
        let same = ContentUpdate { patch: template.content.to_input(), mask: UpdateMask::All, expected_version: None };
        assert!(update(&template, 1, same.clone(), now).unwrap().is_empty(), "same content, no event");
        let archived = archive(&template, now).unwrap().iter().fold(Some(template), evolve).unwrap();
        assert!(archived.archived);
        assert_eq!(archive(&archived, now), Err(DomainError::TemplateArchived));
        assert!(matches!(update(&archived, 2, same, now), Err(CommandError::Rule(DomainError::TemplateArchived))));
    }
}
