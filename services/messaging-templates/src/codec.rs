//! Templates and contacts to and from the `dw.messaging.v1` contract.

use dw_ids::TenantId;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dw_eventstore::codec::decode_contract;
use dw_eventstore::personal::{PersonalFields, SubjectKey};
use dw_eventstore::{CodecError, NewEvent, RecordedEvent};
use dw_proto::messaging::v1 as pb;
use dw_proto::time::{datetime, timestamp};
use prost::{Message as _, Name as _};

use crate::domain::contact::Contact;
use crate::domain::template::{self, Category, Channel, Content, HeaderKind, Template};
use crate::domain::{DepartmentId, PhoneNumber};

pub fn template_stream(tenant: &TenantId, id: uuid::Uuid) -> String {
    format!("template:{tenant}:{id}")
}

pub fn contact_stream(tenant: &TenantId, id: uuid::Uuid) -> String {
    format!("contact:{tenant}:{id}")
}

/// The stream of one erasure (`ClientDataErased`).
pub fn erasure_stream(tenant: &TenantId, erasure_id: uuid::Uuid) -> String {
    format!("erasure:{tenant}:{erasure_id}")
}

/// The data subject a client's personal fields are sealed for: their phone number (the same
/// subject task-distribution seals the client's tasks for, in its own key table).
pub fn client_subject(phone: &PhoneNumber) -> String {
    format!("phone:{phone}")
}

/// Calls `field` on the personal fields of a contact.
fn contact_fields(contact: &mut pb::Contact, field: &mut dyn FnMut(&mut String)) {
    field(&mut contact.name);
    field(&mut contact.phone);
    field(&mut contact.external_id);
}

/// Calls `field` on the personal fields of a sent message: the recipient, what was rendered for
/// them and the values it was rendered with.
fn message_fields(message: &mut pb::Message, field: &mut dyn FnMut(&mut String)) {
    field(&mut message.recipient_phone);
    field(&mut message.rendered_header);
    field(&mut message.rendered_body);
    message.variables.iter_mut().for_each(&mut *field);
    field(&mut message.additional_information);
}

/// Calls `field` on the personal fields of a client's message.
fn inbound_fields(message: &mut pb::InboundMessageReceived, field: &mut dyn FnMut(&mut String)) {
    field(&mut message.contact_name);
    field(&mut message.phone);
    field(&mut message.text);
}

/// The personal fields of this service's events: a contact's name, phone and CRM id
/// (`ContactUpserted`), a sent message's recipient, rendered texts, variables and additional
/// information (`MessageRequested`), a client message's name, phone and text
/// (`InboundMessageReceived`). Opt-outs keep their phone: they are the record that the number
/// must not be messaged.
pub struct ClientFields;

impl PersonalFields for ClientFields {
    fn map_fields(&self, event_type: &str, payload: &[u8], field: &mut dyn FnMut(&mut String)) -> Option<Vec<u8>> {
        if event_type == pb::ContactUpserted::full_name() {
            let mut event = pb::ContactUpserted::decode(payload).ok()?;
            contact_fields(event.contact.as_mut()?, field);
            Some(event.encode_to_vec())
        } else if event_type == pb::MessageRequested::full_name() {
            let mut event = pb::MessageRequested::decode(payload).ok()?;
            message_fields(event.message.as_mut()?, field);
            Some(event.encode_to_vec())
        } else if event_type == pb::InboundMessageReceived::full_name() {
            let mut event = pb::InboundMessageReceived::decode(payload).ok()?;
            inbound_fields(&mut event, field);
            Some(event.encode_to_vec())
        } else {
            None
        }
    }
}

/// A client's message as stored, its personal fields sealed with the client's key (the bus
/// carries it in the clear).
pub fn inbound_received(event: &pb::InboundMessageReceived, key: &SubjectKey) -> NewEvent {
    NewEvent::sealed("inbound.received", event, |stored| inbound_fields(stored, &mut |value| *value = key.seal(value)))
}

pub fn channel_to_pb(channel: Channel) -> pb::Channel {
    match channel {
        Channel::Whatsapp => pb::Channel::Whatsapp,
        Channel::Sms => pb::Channel::Sms,
    }
}

pub fn channel_from_pb(value: i32) -> Option<Channel> {
    match pb::Channel::try_from(value).ok()? {
        pb::Channel::Whatsapp => Some(Channel::Whatsapp),
        pb::Channel::Sms => Some(Channel::Sms),
        pb::Channel::Unspecified => None,
    }
}

pub fn category_from_pb(value: i32) -> Option<Category> {
    match pb::TemplateCategory::try_from(value).ok()? {
        pb::TemplateCategory::Marketing => Some(Category::Marketing),
        pb::TemplateCategory::Utility => Some(Category::Utility),
        pb::TemplateCategory::Authentication => Some(Category::Authentication),
        pb::TemplateCategory::Unspecified => None,
    }
}

fn category_to_pb(category: Category) -> pb::TemplateCategory {
    match category {
        Category::Marketing => pb::TemplateCategory::Marketing,
        Category::Utility => pb::TemplateCategory::Utility,
        Category::Authentication => pb::TemplateCategory::Authentication,
    }
}

pub fn header_kind_from_pb(value: i32) -> Option<HeaderKind> {
    match pb::HeaderKind::try_from(value).ok()? {
        pb::HeaderKind::Unspecified => Some(HeaderKind::None),
        pb::HeaderKind::Text => Some(HeaderKind::Text),
        pb::HeaderKind::Image => Some(HeaderKind::Image),
    }
}

fn header_kind_to_pb(kind: HeaderKind) -> pb::HeaderKind {
    match kind {
        HeaderKind::None => pb::HeaderKind::Unspecified,
        HeaderKind::Text => pb::HeaderKind::Text,
        HeaderKind::Image => pb::HeaderKind::Image,
    }
}

pub fn template_to_pb(template: &Template, version: i64) -> pb::Template {
    let content = &template.content;
    pb::Template {
        template_id: template.template_id.to_string(),
        channel: channel_to_pb(template.channel) as i32,
        name: template.name.clone(),
        language: content.language.clone().unwrap_or_default(),
        category: content.category.map_or(pb::TemplateCategory::Unspecified, category_to_pb) as i32,
        header_kind: header_kind_to_pb(content.header_kind) as i32,
        header_text: content.header_text.clone().unwrap_or_default(),
        header_image_url: content.header_image_url.clone().unwrap_or_default(),
        body: content.body.clone(),
        footer: content.footer.clone().unwrap_or_default(),
        department_id: content.department.as_ref().map(ToString::to_string).unwrap_or_default(),
        default_webhook_url: content.default_webhook_url.clone().unwrap_or_default(),
        default_metadata: content
            .default_metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        variable_count: i32::try_from(content.variable_count).unwrap_or(i32::MAX),
        archived: template.archived,
        version: version.max(0) as u64,
        created_at: Some(timestamp(template.created_at)),
        updated_at: Some(timestamp(template.updated_at)),
    }
}

pub fn contact_to_pb(contact: &Contact, version: i64) -> pb::Contact {
    pb::Contact {
        contact_id: contact.contact_id.to_string(),
        name: contact.name.clone(),
        phone: contact.phone.as_str().to_owned(),
        external_id: contact.external_id.clone().unwrap_or_default(),
        tags: contact.tags.clone(),
        sms_opted_out: contact.sms_opted_out,
        version: version.max(0) as u64,
        updated_at: Some(timestamp(contact.updated_at)),
    }
}

/// A template's event as the contract's, `by` the manager who changed it.
pub fn encode_template(template_id: uuid::Uuid, by: &str, event: &template::Event) -> NewEvent {
    use template::Event as E;
    match event {
        E::Created(template) => NewEvent::of(
            "template.created",
            &pb::TemplateCreated { template: Some(template_to_pb(template, 1)), created_by: by.to_owned() },
        ),
        E::Updated { template, version } => {
            let version = i64::try_from(*version).unwrap_or(i64::MAX);
            NewEvent::of(
                "template.updated",
                &pb::TemplateUpdated { template: Some(template_to_pb(template, version)), updated_by: by.to_owned() },
            )
        }
        E::Archived { at } => NewEvent::of(
            "template.archived",
            &pb::TemplateArchived {
                template_id: template_id.to_string(),
                archived_by: by.to_owned(),
                archived_at: Some(timestamp(*at)),
            },
        ),
    }
}

/// A stored event of a template's stream back into the domain's event (every release's events
/// decode: the contract only ever gains fields).
pub fn decode_template(recorded: &RecordedEvent) -> Result<template::Event, CodecError> {
    use template::Event as E;
    Ok(match decode_contract::<pb::Event>(recorded)? {
        pb::Event::TemplateCreated(m) => E::Created(template_from_pb(m.template)?),
        pb::Event::TemplateUpdated(m) => {
            let version = m.template.as_ref().map_or(0, |view| view.version);
            E::Updated { template: template_from_pb(m.template)?, version }
        }
        pb::Event::TemplateArchived(m) => E::Archived { at: datetime_from("archived_at", m.archived_at.as_ref())? },
        other @ (pb::Event::InboundMessageReceived(_)
        | pb::Event::ContactUpserted(_)
        | pb::Event::MessageRequested(_)
        | pb::Event::MessageDispatched(_)
        | pb::Event::MessageDelivered(_)
        | pb::Event::MessageRead(_)
        | pb::Event::MessageFailed(_)
        | pb::Event::ContactOptedOut(_)
        | pb::Event::ContactOptedIn(_)
        | pb::Event::ProviderConfigChanged(_)
        | pb::Event::ClientDataErased(_)) => {
            return Err(CodecError::Invalid("event_type", format!("{} is not a template event", other.type_name())));
        }
    })
}

fn datetime_from(field: &'static str, at: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>, CodecError> {
    let at = at.ok_or(CodecError::Invalid(field, "missing".into()))?;
    datetime(at).ok_or(CodecError::Invalid(field, "out of range".into()))
}

/// The contract leaves an absent optional text empty.
fn optional(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// A template view as the events carry it back into the domain's template (the inverse of
/// [`template_to_pb`]).
fn template_from_pb(view: Option<pb::Template>) -> Result<Template, CodecError> {
    let view = view.ok_or(CodecError::Invalid("template", "missing".into()))?;
    let invalid = |field: &'static str| move |reason: String| CodecError::Invalid(field, reason);
    let template_id = uuid::Uuid::parse_str(&view.template_id).map_err(|e| invalid("template_id")(e.to_string()))?;
    let channel = channel_from_pb(view.channel).ok_or_else(|| invalid("channel")(view.channel.to_string()))?;
    let header_kind =
        header_kind_from_pb(view.header_kind).ok_or_else(|| invalid("header_kind")(view.header_kind.to_string()))?;
    let department = optional(view.department_id)
        .map(|department| DepartmentId::parse(&department))
        .transpose()
        .map_err(invalid("department_id"))?;
    let variable_count = usize::try_from(view.variable_count).map_err(|e| invalid("variable_count")(e.to_string()))?;
    let content = Content {
        language: optional(view.language),
        category: category_from_pb(view.category),
        header_kind,
        header_text: optional(view.header_text),
        header_image_url: optional(view.header_image_url),
        body: view.body,
        footer: optional(view.footer),
        department,
        default_webhook_url: optional(view.default_webhook_url),
        default_metadata: view.default_metadata.into_iter().collect(),
        variable_count,
    };
    Ok(Template {
        template_id,
        channel,
        name: view.name,
        content,
        archived: view.archived,
        created_at: datetime_from("created_at", view.created_at.as_ref())?,
        updated_at: datetime_from("updated_at", view.updated_at.as_ref())?,
    })
}

/// A contact's change as stored, its personal fields sealed with the client's `key`.
pub fn contact_upserted(contact: &pb::Contact, by: &str, key: &SubjectKey) -> NewEvent {
    let event = pb::ContactUpserted { contact: Some(contact.clone()), upserted_by: by.to_owned() };
    NewEvent::sealed("contact.upserted", &event, |stored| {
        if let Some(contact) = stored.contact.as_mut() {
            contact_fields(contact, &mut |value| *value = key.seal(value));
        }
    })
}

pub fn message_stream(tenant: &TenantId, id: uuid::Uuid) -> String {
    format!("message:{tenant}:{id}")
}

fn status_to_pb(status: crate::domain::message::Status) -> pb::MessageStatus {
    use crate::domain::message::Status as S;
    match status {
        S::Requested => pb::MessageStatus::Requested,
        S::Dispatched => pb::MessageStatus::Dispatched,
        S::Delivered => pb::MessageStatus::Delivered,
        S::Read => pb::MessageStatus::Read,
        S::Failed => pb::MessageStatus::Failed,
    }
}

pub fn message_to_pb(message: &crate::domain::message::OutboundMessage) -> pb::Message {
    let failure = message.failure.as_ref();
    pb::Message {
        message_id: message.message_id.to_string(),
        template_id: message.template_id.to_string(),
        template_name: message.template_name.clone(),
        channel: channel_to_pb(message.channel) as i32,
        recipient_phone: message.phone.as_str().to_owned(),
        contact_id: message.contact_id.map(|c| c.to_string()).unwrap_or_default(),
        rendered_header: message.header_text.clone().unwrap_or_default(),
        rendered_body: message.body.clone(),
        variables: message.variables.clone(),
        department_id: message.department.as_ref().map(ToString::to_string).unwrap_or_default(),
        webhook_url: message.webhook_url.clone().unwrap_or_default(),
        metadata: message.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        additional_information: message.additional_information.clone(),
        agent_id: message.agent.clone(),
        status: status_to_pb(message.status) as i32,
        provider_message_id: message.provider_message_id.clone().unwrap_or_default(),
        failure_code: failure.map(|f| f.code.clone()).unwrap_or_default(),
        failure_reason: failure.map(|f| f.reason.clone()).unwrap_or_default(),
        failure_terminal: failure.is_some_and(|f| f.terminal),
        history: message
            .history
            .iter()
            .map(|c| pb::MessageStatusChange {
                status: status_to_pb(c.status) as i32,
                at: Some(timestamp(c.at)),
                detail: c.detail.clone(),
            })
            .collect(),
        requested_at: Some(timestamp(message.requested_at)),
        header_image_url: message.header_image_url.clone().unwrap_or_default(),
        language: message.language.clone(),
    }
}

/// A message's event as stored; a request's personal fields sealed with the recipient's `key`
/// (the only event of a message that has any).
pub fn message_event(
    message_id: uuid::Uuid,
    event: &crate::domain::message::Event,
    key: Option<&SubjectKey>,
) -> NewEvent {
    use crate::domain::message::Event as E;
    let id = message_id.to_string();
    let attempts = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    match event {
        E::Requested(message) => {
            let event = pb::MessageRequested { message: Some(message_to_pb(message)) };
            NewEvent::sealed("message.requested", &event, |stored| {
                if let Some(message) = stored.message.as_mut() {
                    // No key: the recipient was erased while the request was made; keep nothing.
                    message_fields(message, &mut |value| *value = key.map(|k| k.seal(value)).unwrap_or_default());
                }
            })
        }
        E::Dispatched { provider_message_id, attempts: n, at } => NewEvent::of(
            "message.dispatched",
            &pb::MessageDispatched {
                message_id: id,
                provider_message_id: provider_message_id.clone(),
                attempts: attempts(*n),
                dispatched_at: Some(timestamp(*at)),
            },
        ),
        E::Delivered { at } => NewEvent::of(
            "message.delivered",
            &pb::MessageDelivered { message_id: id, delivered_at: Some(timestamp(*at)) },
        ),
        E::Read { at } => {
            NewEvent::of("message.read", &pb::MessageRead { message_id: id, read_at: Some(timestamp(*at)) })
        }
        E::Failed { failure, attempts: n, at } => NewEvent::of(
            "message.failed",
            &pb::MessageFailed {
                message_id: id,
                code: failure.code.clone(),
                reason: failure.reason.clone(),
                terminal: failure.terminal,
                attempts: attempts(*n),
                failed_at: Some(timestamp(*at)),
            },
        ),
    }
}

/// The stream of a tenant's provider accounts (one per tenant).
pub fn providers_stream(tenant: &TenantId) -> String {
    format!("providers:{tenant}")
}

/// A change of the tenant's provider accounts: the accounts after it (never a secret) and whether
/// it replaced each channel's secrets.
pub fn provider_config_changed(config: &pb::ProviderConfig, whatsapp: bool, sms: bool, by: &str) -> NewEvent {
    NewEvent::of(
        "providers.changed",
        &pb::ProviderConfigChanged {
            config: Some(config.clone()),
            whatsapp_secrets_replaced: whatsapp,
            sms_secrets_replaced: sms,
            changed_by: by.to_owned(),
        },
    )
}

fn status_from_pb(value: i32) -> Option<crate::domain::message::Status> {
    use crate::domain::message::Status as S;
    Some(match pb::MessageStatus::try_from(value).ok()? {
        pb::MessageStatus::Requested => S::Requested,
        pb::MessageStatus::Dispatched => S::Dispatched,
        pb::MessageStatus::Delivered => S::Delivered,
        pb::MessageStatus::Read => S::Read,
        pb::MessageStatus::Failed => S::Failed,
        pb::MessageStatus::Unspecified => return None,
    })
}

/// A message as the events carry it back into the domain's (the inverse of [`message_to_pb`]).
/// An empty recipient is one erased since (`EraseClientData`): the message comes back without
/// anything of the client.
pub fn message_from_pb(view: pb::Message) -> Result<crate::domain::message::OutboundMessage, CodecError> {
    use crate::domain::message::{Change, Failure, OutboundMessage};
    let invalid = |field: &'static str| move |reason: String| CodecError::Invalid(field, reason);
    let uuid =
        |field: &'static str, value: &str| uuid::Uuid::parse_str(value).map_err(|e| invalid(field)(e.to_string()));
    let erased = view.recipient_phone.is_empty();
    let phone = if erased {
        PhoneNumber::erased()
    } else {
        PhoneNumber::parse(&view.recipient_phone).map_err(invalid("recipient_phone"))?
    };
    let mut history = Vec::with_capacity(view.history.len());
    for change in view.history {
        history.push(Change {
            status: status_from_pb(change.status)
                .ok_or_else(|| invalid("history.status")(change.status.to_string()))?,
            at: datetime_from("history.at", change.at.as_ref())?,
            detail: change.detail,
        });
    }
    let message = OutboundMessage {
        message_id: uuid("message_id", &view.message_id)?,
        template_id: uuid("template_id", &view.template_id)?,
        template_name: view.template_name,
        language: view.language,
        channel: channel_from_pb(view.channel).ok_or_else(|| invalid("channel")(view.channel.to_string()))?,
        phone,
        contact_id: optional(view.contact_id).map(|id| uuid("contact_id", &id)).transpose()?,
        header_text: optional(view.rendered_header),
        header_image_url: optional(view.header_image_url),
        body: view.rendered_body,
        variables: view.variables,
        department: optional(view.department_id)
            .map(|d| DepartmentId::parse(&d))
            .transpose()
            .map_err(invalid("department_id"))?,
        webhook_url: optional(view.webhook_url),
        metadata: view.metadata.into_iter().collect(),
        additional_information: view.additional_information,
        agent: view.agent_id,
        status: status_from_pb(view.status).ok_or_else(|| invalid("status")(view.status.to_string()))?,
        provider_message_id: optional(view.provider_message_id),
        failure: optional(view.failure_code.clone()).map(|code| Failure {
            code,
            reason: view.failure_reason,
            terminal: view.failure_terminal,
        }),
        history,
        requested_at: datetime_from("requested_at", view.requested_at.as_ref())?,
    };
    Ok(if erased { message.erased() } else { message })
}

/// A stored event of a message's stream back into the domain's event, its personal fields as
/// they are in `recorded` (the caller opens them first).
pub fn decode_message(recorded: &RecordedEvent) -> Result<crate::domain::message::Event, CodecError> {
    use crate::domain::message::{Event as E, Failure};
    let attempts = |n: i32| u32::try_from(n).unwrap_or_default();
    Ok(match decode_contract::<pb::Event>(recorded)? {
        pb::Event::MessageRequested(m) => {
            E::Requested(Box::new(message_from_pb(m.message.ok_or(CodecError::Invalid("message", "missing".into()))?)?))
        }
        pb::Event::MessageDispatched(m) => E::Dispatched {
            provider_message_id: m.provider_message_id,
            attempts: attempts(m.attempts),
            at: datetime_from("dispatched_at", m.dispatched_at.as_ref())?,
        },
        pb::Event::MessageDelivered(m) => E::Delivered { at: datetime_from("delivered_at", m.delivered_at.as_ref())? },
        pb::Event::MessageRead(m) => E::Read { at: datetime_from("read_at", m.read_at.as_ref())? },
        pb::Event::MessageFailed(m) => E::Failed {
            failure: Failure { code: m.code, reason: m.reason, terminal: m.terminal },
            attempts: attempts(m.attempts),
            at: datetime_from("failed_at", m.failed_at.as_ref())?,
        },
        other => {
            return Err(CodecError::Invalid("event_type", format!("{} is not a message event", other.type_name())));
        }
    })
}

/// A contact as its event carries it back into the domain's; `None` for a contact erased since
/// (its phone reads as empty).
pub fn contact_from_pb(view: pb::Contact) -> Result<Option<Contact>, CodecError> {
    if view.phone.is_empty() {
        return Ok(None);
    }
    let invalid = |field: &'static str| move |reason: String| CodecError::Invalid(field, reason);
    Ok(Some(Contact {
        contact_id: uuid::Uuid::parse_str(&view.contact_id).map_err(|e| invalid("contact_id")(e.to_string()))?,
        name: view.name,
        phone: PhoneNumber::parse(&view.phone).map_err(invalid("phone"))?,
        external_id: optional(view.external_id),
        tags: view.tags,
        sms_opted_out: view.sms_opted_out,
        updated_at: datetime_from("updated_at", view.updated_at.as_ref())?,
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::template::{ContentInput, HeaderKind};

    fn recorded(event: NewEvent) -> RecordedEvent {
        RecordedEvent {
            global_position: 1,
            event_id: event.event_id,
            tenant_id: TenantId::parse("acme").unwrap(),
            stream_id: "template:acme:x".into(),
            version: 1,
            event_type: event.event_type,
            subject: event.subject,
            payload: event.payload,
            recorded_at: Utc::now(),
            metadata: Default::default(),
        }
    }

    fn template(channel: Channel, input: ContentInput) -> Template {
        let now = chrono::DateTime::from_timestamp(1_764_500_000, 123_456_000).unwrap();
        Template {
            template_id: uuid::Uuid::now_v7(),
            channel,
            name: "order_update".into(),
            content: Content::parse(channel, input, "").unwrap(),
            archived: false,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn given_each_template_event_when_encoded_then_it_decodes_to_itself() {
        let whatsapp = template(
            Channel::Whatsapp,
            ContentInput {
                language: "pt_BR".into(),
                category: Some(Category::Utility),
                header_kind: Some(HeaderKind::Text),
                header_text: "Pedido".into(),
                body: "Olá {{1}}, pedido {{2}}".into(),
                footer: "Acme".into(),
                department: "sales".into(),
                default_webhook_url: "https://hooks.example.com/a".into(),
                default_metadata: BTreeMap::from([("crm".to_owned(), "x".to_owned())]),
                ..Default::default()
            },
        );
        let sms = template(Channel::Sms, ContentInput { body: "Code {{1}}".into(), ..Default::default() });
        let later = whatsapp.created_at + chrono::Duration::seconds(5);
        let updated = Template { updated_at: later, ..sms.clone() };
        for event in [
            template::Event::Created(whatsapp.clone()),
            template::Event::Created(sms.clone()),
            template::Event::Updated { template: updated, version: 7 },
            template::Event::Archived { at: later },
        ] {
            let encoded = encode_template(whatsapp.template_id, "boss", &event);
            assert_eq!(decode_template(&recorded(encoded)).unwrap(), event);
        }
    }

    #[test]
    fn a_message_and_its_status_events_decode_to_themselves_and_an_erased_one_without_the_client() {
        use crate::domain::message::{Change, Event as E, Failure, OutboundMessage, Status, evolve};
        let at = chrono::DateTime::from_timestamp(1_764_500_000, 123_456_000).unwrap();
        let requested = OutboundMessage {
            message_id: uuid::Uuid::now_v7(),
            template_id: uuid::Uuid::now_v7(),
            template_name: "order_update".into(),
            language: "pt_BR".into(),
            channel: Channel::Whatsapp,
            phone: PhoneNumber::parse("+5511999990000").unwrap(),
            contact_id: Some(uuid::Uuid::now_v7()),
            header_text: Some("Pedido".into()),
            header_image_url: None,
            body: "Oi Ana".into(),
            variables: vec!["Ana".into()],
            department: Some(DepartmentId::parse("sales").unwrap()),
            webhook_url: Some("https://hooks.example.com/a".into()),
            metadata: BTreeMap::from([("crm".to_owned(), "x".to_owned())]),
            additional_information: "vip".into(),
            agent: "ana".into(),
            status: Status::Requested,
            provider_message_id: None,
            failure: None,
            history: vec![Change { status: Status::Requested, at, detail: String::new() }],
            requested_at: at,
        };
        let failure = Failure { code: "131026".into(), reason: "undeliverable".into(), terminal: true };
        let events = [
            E::Requested(Box::new(requested.clone())),
            E::Dispatched { provider_message_id: "wamid.1".into(), attempts: 2, at },
            E::Delivered { at },
            E::Read { at },
            E::Failed { failure, attempts: 1, at },
        ];
        for event in &events[1..] {
            let encoded = message_event(requested.message_id, event, None);
            assert_eq!(&decode_message(&recorded(encoded)).unwrap(), event);
        }
        assert_eq!(message_from_pb(message_to_pb(&requested)).unwrap(), requested);
        // A request recorded without the recipient's key (erased meanwhile) keeps nothing of them.
        let keyless = message_event(requested.message_id, &events[0], None);
        let stored = decode_message(&recorded(keyless)).unwrap();
        assert_eq!(stored, E::Requested(Box::new(requested.clone().erased())));
        // A later state (a failure, its history) survives the view too.
        let failed = events.iter().fold(requested.clone(), evolve);
        assert_eq!(message_from_pb(message_to_pb(&failed)).unwrap(), failed);
        // A message whose recipient was erased comes back without anything of them.
        let mut erased = message_to_pb(&requested);
        erased.recipient_phone.clear();
        erased.variables = vec![String::new()];
        let back = message_from_pb(erased).unwrap();
        assert_eq!(back, requested.clone().erased());
        assert!(back.phone.is_erased() && back.variables.is_empty() && back.header_text.is_none());
    }

    #[test]
    fn given_an_event_of_another_aggregate_when_decoded_as_a_template_event_then_it_is_refused() {
        let read = NewEvent::of("message.read", &pb::MessageRead { message_id: "m".into(), read_at: None });
        assert!(decode_template(&recorded(read)).is_err());
    }
}
