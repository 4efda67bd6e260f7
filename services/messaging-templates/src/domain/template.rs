//! The `Template` aggregate: a channel's named template, its decisions (update, archive) and
//! `evolve`. The rules of its text are in [`rules`], its editable content in [`content`].

mod content;
mod rules;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use dw_eventstore::{CommandError, check_version};
use serde::{Deserialize, Serialize};

pub use content::{Content, ContentField, ContentInput, ContentUpdate, merge};
pub use rules::{
    METADATA_MAX_BYTES, METADATA_MAX_KEYS, Problem, SMS_BODY_MAX, WHATSAPP_BODY_MAX, WHATSAPP_FOOTER_MAX,
    WHATSAPP_HEADER_TEXT_MAX, check_metadata, count_variables, parse_language, parse_name, parse_url, render,
};

use super::DomainError;

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

/// What happens to a template. An update carries the whole template after it and the stream
/// version it has then, as the contract's `TemplateUpdated` does: the decision computes the new
/// view, so the event encodes on its own and a replay rebuilds exactly what was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Created(Template),
    Updated { template: Template, version: u64 },
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
    let template = Template { content, updated_at: now, ..state.clone() };
    Ok(vec![Event::Updated { template, version: version.saturating_add(1) }])
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
        (Some(_), Event::Updated { template, .. }) => Some(template.clone()),
        (Some(mut state), Event::Archived { at }) => {
            state.archived = true;
            state.updated_at = *at;
            Some(state)
        }
        (None, _) => None,
    }
}
