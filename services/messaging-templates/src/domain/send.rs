//! The send rule: whether a template may be sent to a recipient, and the message it makes.
//! Pure: the template, the caller's permission, the recipient and its SMS consent are looked up
//! by the handler and come in as [`SendFacts`]; time and the new id come in as arguments.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::message::{Change, OutboundMessage, Status};
use super::preview::{Limits, render_send};
use super::send_webhook::{self, AllowedHosts};
use super::template::{Channel, Problem, Template, check_metadata};
use super::{DepartmentId, DomainError, PhoneNumber};

/// Who the message goes to, as the caller named them.
#[derive(Debug, Clone)]
pub enum Recipient {
    Phone(PhoneNumber),
    Contact(uuid::Uuid),
}

/// A send, parsed at the edge.
#[derive(Debug, Clone)]
pub struct SendInput {
    pub template_id: uuid::Uuid,
    pub recipient: Recipient,
    pub header_text: Option<String>,
    pub header_image_url: Option<String>,
    pub variables: Vec<String>,
    pub department: Option<DepartmentId>,
    pub webhook_url: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub additional_information: String,
}

/// The permission an agent needs to send on `channel`.
pub fn send_permission(channel: Channel) -> &'static str {
    match channel {
        Channel::Whatsapp => "templates.whatsapp.send",
        Channel::Sms => "templates.sms.send",
    }
}

/// May the caller send on the template's channel?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Managers and services send without the channel's permission.
    Privileged,
    /// An agent, who holds [`send_permission`] or not.
    Agent { granted: bool },
}

/// The recipient, resolved: a named contact may not exist (in the caller's tenant).
#[derive(Debug, Clone)]
pub enum Resolved {
    Phone(PhoneNumber),
    Contact { contact_id: uuid::Uuid, phone: PhoneNumber },
    UnknownContact(uuid::Uuid),
}

/// What the handler looked up for a send.
#[derive(Debug, Clone)]
pub struct SendFacts<'a> {
    pub template: &'a Template,
    pub permission: Permission,
    pub recipient: Resolved,
    /// The recipient's number sent STOP (SMS only).
    pub opted_out: bool,
    /// What the deployment lets a send render.
    pub limits: Limits,
    /// The tenant's hosts for a send's own webhook, and the hosts the deployment allows despite
    /// being local (`DW_WEBHOOK_ALLOWED_HOSTS`).
    pub webhook_hosts: AllowedHosts,
    pub local_webhook_hosts: &'a [String],
}

/// Why a send is refused: a broken rule, or bad input only the rendering could see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Rule(DomainError),
    Invalid(Vec<Problem>),
}

impl From<DomainError> for Refusal {
    fn from(rule: DomainError) -> Self {
        Self::Rule(rule)
    }
}

/// Decides a send by `agent` at `now`: the requested message (id `message_id`), or why not.
/// Rules are checked in the order a caller can act on them: permission, archived template,
/// unknown contact, SMS consent, then the input (variables, header, metadata, and the webhook
/// under the tenant's destination policy, see [`send_webhook`]).
pub fn decide(
    facts: SendFacts<'_>,
    input: &SendInput,
    agent: &str,
    message_id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<OutboundMessage, Refusal> {
    let template = facts.template;
    if facts.permission == (Permission::Agent { granted: false }) {
        return Err(DomainError::MissingPermission(send_permission(template.channel)).into());
    }
    if template.archived {
        return Err(DomainError::TemplateArchived.into());
    }
    let (phone, contact_id) = match facts.recipient {
        Resolved::Phone(phone) => (phone, None),
        Resolved::Contact { contact_id, phone } => (phone, Some(contact_id)),
        Resolved::UnknownContact(id) => return Err(DomainError::ContactNotFound(id.to_string()).into()),
    };
    if template.channel == Channel::Sms && facts.opted_out {
        return Err(DomainError::SmsOptedOut.into());
    }
    let rendered = render_send(
        template,
        &input.variables,
        input.header_text.as_deref(),
        input.header_image_url.as_deref(),
        &facts.limits,
    );
    let mut problems = rendered.problems;
    let mut metadata = template.content.default_metadata.clone();
    metadata.extend(input.metadata.clone());
    check_metadata("metadata", &metadata, &mut problems);
    let webhook_url = input.webhook_url.clone().or(template.content.default_webhook_url.clone());
    if let Some(url) = &webhook_url
        && let Err(reason) = send_webhook::admit(url, &facts.webhook_hosts, facts.local_webhook_hosts)
    {
        // The field the caller can act on either way: give a webhook_url, or fix the default.
        let reason = match input.webhook_url {
            Some(_) => reason,
            None => format!("the template's default webhook {url:?}: {reason}"),
        };
        problems.push(("webhook_url".to_owned(), reason));
    }
    if !problems.is_empty() {
        return Err(Refusal::Invalid(problems));
    }
    Ok(OutboundMessage {
        message_id,
        template_id: template.template_id,
        template_name: template.name.clone(),
        language: template.content.language.clone().unwrap_or_default(),
        channel: template.channel,
        phone,
        contact_id,
        header_text: rendered.header_text,
        header_image_url: rendered.header_image_url,
        body: rendered.body,
        variables: input.variables.clone(),
        department: input.department.clone().or(template.content.department.clone()),
        webhook_url,
        metadata,
        additional_information: input.additional_information.clone(),
        agent: agent.to_owned(),
        status: Status::Requested,
        provider_message_id: None,
        failure: None,
        history: vec![Change { status: Status::Requested, at: now, detail: String::new() }],
        requested_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::template::{Category, Content, ContentInput};

    fn template(channel: Channel, body: &str) -> Template {
        let now = Utc::now();
        let mut input = ContentInput {
            language: "pt_BR".into(),
            category: Some(Category::Utility),
            body: body.into(),
            department: "sales".into(),
            default_webhook_url: "https://crm.example.com/hook".into(),
            ..Default::default()
        };
        input.default_metadata.insert("source".into(), "template".into());
        Template {
            template_id: uuid::Uuid::now_v7(),
            channel,
            name: "order_shipped".into(),
            content: Content::parse(channel, input, "").unwrap(),
            archived: false,
            created_at: now,
            updated_at: now,
        }
    }

    fn phone() -> PhoneNumber {
        PhoneNumber::parse("+5511987654321").unwrap()
    }

    fn input(template: &Template, variables: &[&str]) -> SendInput {
        SendInput {
            template_id: template.template_id,
            recipient: Recipient::Phone(phone()),
            header_text: None,
            header_image_url: None,
            variables: variables.iter().map(|v| (*v).to_owned()).collect(),
            department: None,
            webhook_url: None,
            metadata: BTreeMap::from([("crm_ticket".to_owned(), "T-9".to_owned())]),
            additional_information: "priority client".into(),
        }
    }

    fn facts(template: &Template) -> SendFacts<'_> {
        SendFacts {
            template,
            permission: Permission::Agent { granted: true },
            recipient: Resolved::Phone(phone()),
            opted_out: false,
            limits: Limits::default(),
            webhook_hosts: AllowedHosts::from_stored(vec!["crm.example.com".into(), "hooks.example.com".into()]),
            local_webhook_hosts: &[],
        }
    }

    fn refused(result: Result<OutboundMessage, Refusal>) -> Refusal {
        result.expect_err("the send is refused")
    }

    #[test]
    fn given_a_permitted_agent_when_sending_then_the_message_is_requested_with_the_templates_defaults() {
        let t = template(Channel::Whatsapp, "Olá {{1}}");
        let id = uuid::Uuid::now_v7();
        let now = Utc::now();
        let message = decide(facts(&t), &input(&t, &["Ana"]), "ana", id, now).unwrap();
        assert_eq!(message.message_id, id);
        assert_eq!(message.body, "Olá Ana");
        assert_eq!(message.status, Status::Requested);
        assert_eq!(message.history, vec![Change { status: Status::Requested, at: now, detail: String::new() }]);
        assert_eq!(message.department.as_ref().map(DepartmentId::as_str), Some("sales"), "the template's department");
        assert_eq!(message.webhook_url.as_deref(), Some("https://crm.example.com/hook"));
        let keys: Vec<&str> = message.metadata.keys().map(String::as_str).collect();
        assert_eq!(keys, ["crm_ticket", "source"], "the send's metadata over the template's defaults");
        assert_eq!(message.agent, "ana");
        assert_eq!(message.contact_id, None);
    }

    #[test]
    fn given_an_agent_without_the_channels_permission_then_the_send_is_refused() {
        let t = template(Channel::Sms, "Oi");
        let denied = SendFacts { permission: Permission::Agent { granted: false }, ..facts(&t) };
        assert_eq!(
            refused(decide(denied, &input(&t, &[]), "ana", uuid::Uuid::now_v7(), Utc::now())),
            Refusal::Rule(DomainError::MissingPermission("templates.sms.send"))
        );
        let manager = SendFacts { permission: Permission::Privileged, ..facts(&t) };
        assert!(decide(manager, &input(&t, &[]), "boss", uuid::Uuid::now_v7(), Utc::now()).is_ok());
    }

    #[test]
    fn given_an_archived_template_then_the_send_is_refused_before_the_contact_is_looked_at() {
        let mut t = template(Channel::Whatsapp, "Oi");
        t.archived = true;
        let unknown = SendFacts { recipient: Resolved::UnknownContact(uuid::Uuid::now_v7()), ..facts(&t) };
        assert_eq!(
            refused(decide(unknown, &input(&t, &[]), "ana", uuid::Uuid::now_v7(), Utc::now())),
            Refusal::Rule(DomainError::TemplateArchived)
        );
    }

    #[test]
    fn given_a_contact_then_its_phone_is_used_and_an_unknown_one_is_not_found() {
        let t = template(Channel::Whatsapp, "Oi");
        let contact_id = uuid::Uuid::now_v7();
        let known = SendFacts { recipient: Resolved::Contact { contact_id, phone: phone() }, ..facts(&t) };
        let message = decide(known, &input(&t, &[]), "ana", uuid::Uuid::now_v7(), Utc::now()).unwrap();
        assert_eq!((message.contact_id, message.phone), (Some(contact_id), phone()));
        let unknown = SendFacts { recipient: Resolved::UnknownContact(contact_id), ..facts(&t) };
        assert_eq!(
            refused(decide(unknown, &input(&t, &[]), "ana", uuid::Uuid::now_v7(), Utc::now())),
            Refusal::Rule(DomainError::ContactNotFound(contact_id.to_string()))
        );
    }

    #[test]
    fn given_a_number_that_sent_stop_then_sms_is_refused_but_whatsapp_is_not() {
        let sms = template(Channel::Sms, "Oi");
        let stopped = SendFacts { opted_out: true, ..facts(&sms) };
        assert_eq!(
            refused(decide(stopped, &input(&sms, &[]), "ana", uuid::Uuid::now_v7(), Utc::now())),
            Refusal::Rule(DomainError::SmsOptedOut)
        );
        let whatsapp = template(Channel::Whatsapp, "Oi");
        let stopped = SendFacts { opted_out: true, ..facts(&whatsapp) };
        assert!(decide(stopped, &input(&whatsapp, &[]), "ana", uuid::Uuid::now_v7(), Utc::now()).is_ok());
    }

    #[test]
    fn given_wrong_variables_or_metadata_then_every_problem_is_reported_with_its_field() {
        let t = template(Channel::Whatsapp, "Olá {{1}}");
        let mut bad = input(&t, &[]);
        bad.metadata.insert(String::new(), "x".into());
        let Refusal::Invalid(problems) = refused(decide(facts(&t), &bad, "ana", uuid::Uuid::now_v7(), Utc::now()))
        else {
            panic!("bad input is invalid, not a rule");
        };
        let fields: Vec<&str> = problems.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(fields, ["variables", "metadata"]);
    }

    #[test]
    fn given_a_webhook_on_an_allowed_host_then_the_message_carries_it() {
        let t = template(Channel::Whatsapp, "Oi");
        let mut send = input(&t, &[]);
        send.webhook_url = Some("https://hooks.example.com/sends".into());
        let message = decide(facts(&t), &send, "ana", uuid::Uuid::now_v7(), Utc::now()).unwrap();
        assert_eq!(message.webhook_url.as_deref(), Some("https://hooks.example.com/sends"));
    }

    #[test]
    fn given_a_webhook_the_tenant_does_not_allow_then_the_send_is_invalid_on_webhook_url() {
        let t = template(Channel::Whatsapp, "Oi");
        for url in ["https://elsewhere.example.com/h", "https://10.0.0.1/h", "http://hooks.example.com/h"] {
            let mut send = input(&t, &[]);
            send.webhook_url = Some(url.into());
            let Refusal::Invalid(problems) = refused(decide(facts(&t), &send, "ana", uuid::Uuid::now_v7(), Utc::now()))
            else {
                panic!("{url}: a refused webhook is bad input");
            };
            let fields: Vec<&str> = problems.iter().map(|(field, _)| field.as_str()).collect();
            assert_eq!(fields, ["webhook_url"], "{url}");
        }
        // Another tenant's list is not this one's: with none, the template's default is refused too.
        let unlisted = SendFacts { webhook_hosts: AllowedHosts::default(), ..facts(&t) };
        let Refusal::Invalid(problems) =
            refused(decide(unlisted, &input(&t, &[]), "ana", uuid::Uuid::now_v7(), Utc::now()))
        else {
            panic!("bad input is invalid, not a rule");
        };
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "webhook_url");
        assert!(problems[0].1.starts_with("the template's default webhook"), "{}", problems[0].1);
    }
}
