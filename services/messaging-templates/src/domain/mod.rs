//! The pure heart of messaging-templates: template rules and rendering, SMS encoding, contacts,
//! the SMS provider's callback signature, the destination policy of a send's own webhook.

pub mod contact;
pub mod message;
pub mod preview;
pub mod provider_config;
pub mod send;
pub mod send_webhook;
pub mod sms;
pub mod template;
pub mod twilio_signature;

pub use dw_ids::{DepartmentId, PhoneNumber, RequestId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("template {0} not found")]
    TemplateNotFound(String),
    #[error("the template is archived")]
    TemplateArchived,
    #[error("an active {0} template named {1} already exists")]
    TemplateNameTaken(String, String),
    #[error("contact {0} not found")]
    ContactNotFound(String),
    #[error("message {0} not found")]
    MessageNotFound(String),
    #[error("the caller lacks permission {0}")]
    MissingPermission(&'static str),
    #[error("the number opted out of SMS (it sent STOP)")]
    SmsOptedOut,
}

impl DomainError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TemplateNotFound(_) => "TEMPLATE_NOT_FOUND",
            Self::TemplateArchived => "TEMPLATE_ARCHIVED",
            Self::TemplateNameTaken(..) => "TEMPLATE_NAME_TAKEN",
            Self::ContactNotFound(_) => "CONTACT_NOT_FOUND",
            Self::MessageNotFound(_) => "MESSAGE_NOT_FOUND",
            Self::MissingPermission(_) => "PERMISSION_REQUIRED",
            Self::SmsOptedOut => "SMS_OPTED_OUT",
        }
    }
}

use dw_proto::messaging::v1 as pb;

fn not_found<M: prost::Name>(name: &str) -> dw_eventstore::RuleKind {
    dw_eventstore::RuleKind::NotFound(dw_eventstore::Resource::of::<M>(name))
}

impl dw_eventstore::DomainRule for DomainError {
    fn reason(&self) -> &'static str {
        DomainError::reason(self)
    }

    fn kind(&self) -> dw_eventstore::RuleKind {
        match self {
            Self::TemplateNotFound(id) => not_found::<pb::Template>(id),
            Self::ContactNotFound(id) => not_found::<pb::Contact>(id),
            Self::MessageNotFound(id) => not_found::<pb::Message>(id),
            Self::MissingPermission(_) => dw_eventstore::RuleKind::PermissionDenied,
            _ => dw_eventstore::RuleKind::FailedPrecondition,
        }
    }
}
