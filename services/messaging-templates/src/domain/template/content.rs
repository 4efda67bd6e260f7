//! A template's editable content: parsed once for its channel, and changed by a masked update.

use std::collections::BTreeMap;

use dw_eventstore::UpdateMask;
use serde::{Deserialize, Serialize};

use super::rules::{
    Problem, SMS_BODY_MAX, WHATSAPP_BODY_MAX, WHATSAPP_FOOTER_MAX, WHATSAPP_HEADER_TEXT_MAX, check_metadata,
    count_variables, parse_language, parse_url,
};
use super::{Category, Channel, HeaderKind};
use crate::domain::DepartmentId;

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
