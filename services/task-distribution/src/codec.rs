//! Task events to and from their protobuf contract (`dw.distribution.v1`), and stream ids.

use chrono::{DateTime, Utc};
use dw_eventstore::codec::decode_contract;
use dw_eventstore::personal::{Keys, PersonalFields, SubjectKey};
use dw_eventstore::{NewEvent, RecordedEvent};
use dw_ids::TenantId;
use dw_proto::distribution::v1 as pb;
use prost::{Message, Name};

use crate::domain::task::{AssignmentSummary, Event, NewTask, RequeueCause};
use crate::domain::{AgentId, Channel, ClientContact, DepartmentId, PhoneNumber, Priority, Protocol, TaskId};

pub use dw_eventstore::CodecError;

pub fn task_stream(tenant: &TenantId, task_id: TaskId) -> String {
    format!("task:{tenant}:{task_id}")
}

/// The stream of one erasure (`ClientDataErased`).
pub fn erasure_stream(tenant: &TenantId, erasure_id: uuid::Uuid) -> String {
    format!("erasure:{tenant}:{erasure_id}")
}

/// The data subject a client's personal fields are sealed for: their phone number.
pub fn client_subject(phone: &PhoneNumber) -> String {
    format!("phone:{phone}")
}

/// A personal field as stored: sealed with the client's key, or dropped when the client has no
/// key (erased before this event was written).
fn seal_field(seal: Option<&SubjectKey>, value: &mut String) {
    match seal {
        Some(key) => *value = key.seal(value),
        None => value.clear(),
    }
}

/// The personal fields of this service's events: the client's name and phone and the task's
/// subject (an inbound task's is the client's first words) in `TaskCreated`, and the client's
/// text in `TaskMessageRecorded`.
pub struct ClientFields;

impl PersonalFields for ClientFields {
    fn map_fields(&self, event_type: &str, payload: &[u8], field: &mut dyn FnMut(&mut String)) -> Option<Vec<u8>> {
        if event_type == pb::TaskCreated::full_name() {
            let mut event = pb::TaskCreated::decode(payload).ok()?;
            let contact = event.contact.as_mut()?;
            field(&mut contact.name);
            field(&mut contact.phone);
            field(&mut event.subject);
            Some(event.encode_to_vec())
        } else if event_type == pb::TaskMessageRecorded::full_name() {
            let mut event = pb::TaskMessageRecorded::decode(payload).ok()?;
            field(&mut event.text);
            Some(event.encode_to_vec())
        } else {
            None
        }
    }
}

/// The keys a stored event's personal fields were sealed with.
pub fn key_ids(recorded: &RecordedEvent) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    ClientFields.map_fields(&recorded.event_type, &recorded.payload, &mut |value| {
        ids.extend(dw_eventstore::personal::key_id(value));
    });
    ids
}

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }
}

fn from_timestamp(field: &'static str, ts: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>, CodecError> {
    let ts = ts.ok_or(CodecError::Invalid(field, "missing".into()))?;
    DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)
        .ok_or(CodecError::Invalid(field, "out of range".into()))
}

pub fn contact_to_pb(contact: &crate::domain::ClientContact) -> pb::ClientContact {
    pb::ClientContact {
        name: contact.name.clone(),
        phone: contact.phone.as_str().to_owned(),
        contact_id: contact.contact_id.clone().unwrap_or_default(),
    }
}

pub fn channel_to_pb(channel: Channel) -> pb::Channel {
    match channel {
        Channel::Whatsapp => pb::Channel::Whatsapp,
        Channel::Sms => pb::Channel::Sms,
        Channel::Voice => pb::Channel::Voice,
        Channel::Email => pb::Channel::Email,
        Channel::Chat => pb::Channel::Chat,
    }
}

pub fn channel_from_pb(value: i32) -> Option<Channel> {
    match pb::Channel::try_from(value).ok()? {
        pb::Channel::Whatsapp => Some(Channel::Whatsapp),
        pb::Channel::Sms => Some(Channel::Sms),
        pb::Channel::Voice => Some(Channel::Voice),
        pb::Channel::Email => Some(Channel::Email),
        pb::Channel::Chat => Some(Channel::Chat),
        pb::Channel::Unspecified => None,
    }
}

fn cause_to_pb(cause: RequeueCause) -> pb::RequeueCause {
    match cause {
        RequeueCause::AgentDayEnded => pb::RequeueCause::AgentDayEnded,
        RequeueCause::Transferred => pb::RequeueCause::Transferred,
    }
}

fn opt_agent(agent: &Option<AgentId>) -> String {
    agent.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// A task event as stored, its personal fields sealed with `seal` (the client's key).
pub fn encode(task_id: TaskId, event: &Event, seal: Option<&SubjectKey>) -> NewEvent {
    let id = task_id.to_string();
    match event {
        Event::Created { task, at } => NewEvent::sealed(
            "task.created",
            &pb::TaskCreated {
                task_id: id,
                protocol: task.protocol.to_string(),
                department_id: task.department.to_string(),
                channel: channel_to_pb(task.channel) as i32,
                contact: Some(contact_to_pb(&task.contact)),
                priority: task.priority.value(),
                subject: task.subject.clone(),
                created_by: task.created_by.clone(),
                created_at: Some(timestamp(*at)),
                inbound_message_id: task.inbound_message_id.clone().unwrap_or_default(),
            },
            |stored| {
                if let Some(contact) = stored.contact.as_mut() {
                    seal_field(seal, &mut contact.name);
                    seal_field(seal, &mut contact.phone);
                }
                seal_field(seal, &mut stored.subject);
            },
        ),
        Event::Assigned { agent, department, summary, at } => NewEvent::of(
            "task.assigned",
            &pb::TaskAssigned {
                task_id: id,
                agent_id: agent.to_string(),
                department_id: department.to_string(),
                assigned_at: Some(timestamp(*at)),
                decision_id: summary.decision_id.to_string(),
                candidates_considered: summary.candidates,
                eligible_candidates: summary.eligible,
                trigger: summary.trigger.clone(),
            },
        ),
        Event::Requeued { previous_agent, department, cause, at } => NewEvent::of(
            "task.requeued",
            &pb::TaskRequeued {
                task_id: id,
                previous_agent_id: previous_agent.to_string(),
                department_id: department.to_string(),
                cause: cause_to_pb(*cause) as i32,
                requeued_at: Some(timestamp(*at)),
            },
        ),
        Event::Claimed { agent, at } => NewEvent::of(
            "task.claimed",
            &pb::TaskClaimed { task_id: id, agent_id: agent.to_string(), claimed_at: Some(timestamp(*at)) },
        ),
        Event::Transferred { from_department, to_department, from_agent, to_agent, by, at } => NewEvent::of(
            "task.transferred",
            &pb::TaskTransferred {
                task_id: id,
                from_department_id: from_department.to_string(),
                to_department_id: to_department.to_string(),
                from_agent_id: opt_agent(from_agent),
                to_agent_id: opt_agent(to_agent),
                transferred_by: by.clone(),
                transferred_at: Some(timestamp(*at)),
            },
        ),
        Event::Completed { agent, by, at } => NewEvent::of(
            "task.completed",
            &pb::TaskCompleted {
                task_id: id,
                agent_id: agent.to_string(),
                completed_by: by.clone(),
                completed_at: Some(timestamp(*at)),
            },
        ),
        Event::Cancelled { by, reason, at } => NewEvent::of(
            "task.cancelled",
            &pb::TaskCancelled {
                task_id: id,
                cancelled_by: by.clone(),
                reason: reason.clone(),
                cancelled_at: Some(timestamp(*at)),
            },
        ),
        Event::MessageRecorded { message_id, text, received_at, agent } => NewEvent::sealed(
            "task.message_recorded",
            &pb::TaskMessageRecorded {
                task_id: id,
                message_id: message_id.clone(),
                text: text.clone(),
                received_at: Some(timestamp(*received_at)),
                agent_id: opt_agent(agent),
            },
            |stored| seal_field(seal, &mut stored.text),
        ),
    }
}

fn agent(field: &'static str, value: &str) -> Result<AgentId, CodecError> {
    AgentId::parse(value).map_err(|e| CodecError::Invalid(field, e))
}

fn opt_agent_from(field: &'static str, value: &str) -> Result<Option<AgentId>, CodecError> {
    if value.is_empty() { Ok(None) } else { agent(field, value).map(Some) }
}

fn department(field: &'static str, value: &str) -> Result<DepartmentId, CodecError> {
    DepartmentId::parse(value).map_err(|e| CodecError::Invalid(field, e))
}

/// Decodes a stored task event, its personal fields opened with `keys` (empty where erased;
/// the write side replays with [`Keys::none`]: it never reads them).
pub fn decode(recorded: &RecordedEvent, keys: &Keys) -> Result<Event, CodecError> {
    let tenant = &recorded.tenant_id;
    Ok(match decode_contract::<pb::Event>(recorded)? {
        pb::Event::TaskCreated(m) => {
            let contact = m.contact.unwrap_or_default();
            let phone = keys.open(tenant, &contact.phone);
            let phone = if phone.is_empty() {
                PhoneNumber::erased()
            } else {
                PhoneNumber::parse(&phone).map_err(|e| CodecError::Invalid("phone", e))?
            };
            Event::Created {
                task: NewTask {
                    task_id: TaskId::parse(&m.task_id).map_err(|e| CodecError::Invalid("task_id", e))?,
                    protocol: Protocol::parse(&m.protocol).map_err(|e| CodecError::Invalid("protocol", e))?,
                    department: department("department_id", &m.department_id)?,
                    channel: channel_from_pb(m.channel).ok_or(CodecError::Invalid("channel", m.channel.to_string()))?,
                    contact: ClientContact {
                        name: keys.open(tenant, &contact.name),
                        phone,
                        contact_id: Some(contact.contact_id).filter(|c| !c.is_empty()),
                    },
                    priority: Priority::parse(m.priority).map_err(|e| CodecError::Invalid("priority", e))?,
                    subject: keys.open(tenant, &m.subject),
                    created_by: m.created_by,
                    inbound_message_id: Some(m.inbound_message_id).filter(|i| !i.is_empty()),
                },
                at: from_timestamp("created_at", m.created_at.as_ref())?,
            }
        }
        pb::Event::TaskAssigned(m) => Event::Assigned {
            agent: agent("agent_id", &m.agent_id)?,
            department: department("department_id", &m.department_id)?,
            summary: AssignmentSummary {
                decision_id: uuid::Uuid::parse_str(&m.decision_id).unwrap_or_default(),
                candidates: m.candidates_considered,
                eligible: m.eligible_candidates,
                trigger: m.trigger,
            },
            at: from_timestamp("assigned_at", m.assigned_at.as_ref())?,
        },
        pb::Event::TaskRequeued(m) => {
            let cause = match pb::RequeueCause::try_from(m.cause) {
                Ok(pb::RequeueCause::Transferred) => RequeueCause::Transferred,
                _ => RequeueCause::AgentDayEnded,
            };
            Event::Requeued {
                previous_agent: agent("previous_agent_id", &m.previous_agent_id)?,
                department: department("department_id", &m.department_id)?,
                cause,
                at: from_timestamp("requeued_at", m.requeued_at.as_ref())?,
            }
        }
        pb::Event::TaskClaimed(m) => Event::Claimed {
            agent: agent("agent_id", &m.agent_id)?,
            at: from_timestamp("claimed_at", m.claimed_at.as_ref())?,
        },
        pb::Event::TaskTransferred(m) => Event::Transferred {
            from_department: department("from_department_id", &m.from_department_id)?,
            to_department: department("to_department_id", &m.to_department_id)?,
            from_agent: opt_agent_from("from_agent_id", &m.from_agent_id)?,
            to_agent: opt_agent_from("to_agent_id", &m.to_agent_id)?,
            by: m.transferred_by,
            at: from_timestamp("transferred_at", m.transferred_at.as_ref())?,
        },
        pb::Event::TaskCompleted(m) => Event::Completed {
            agent: agent("agent_id", &m.agent_id)?,
            by: m.completed_by,
            at: from_timestamp("completed_at", m.completed_at.as_ref())?,
        },
        pb::Event::TaskCancelled(m) => Event::Cancelled {
            by: m.cancelled_by,
            reason: m.reason,
            at: from_timestamp("cancelled_at", m.cancelled_at.as_ref())?,
        },
        pb::Event::TaskMessageRecorded(m) => Event::MessageRecorded {
            message_id: m.message_id,
            text: keys.open(tenant, &m.text),
            received_at: from_timestamp("received_at", m.received_at.as_ref())?,
            agent: opt_agent_from("agent_id", &m.agent_id)?,
        },
        // Not a task's event: an erasure has its own stream.
        pb::Event::ClientDataErased(_) => {
            return Err(CodecError::UnknownType(recorded.event_type.clone()));
        }
    })
}
