//! The `OutboundMessage` aggregate: a template sent to a client, from request to read (or
//! failure). Status updates may arrive late, twice or out of order: only progress counts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::template::Channel;
use super::{DepartmentId, PhoneNumber};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Requested,
    Dispatched,
    Delivered,
    Read,
    Failed,
}

impl Status {
    /// How far along the happy path; a failure ends it.
    fn rank(self) -> u8 {
        match self {
            Self::Requested => 0,
            Self::Dispatched => 1,
            Self::Delivered => 2,
            Self::Read => 3,
            Self::Failed => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Dispatched => "dispatched",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub reason: String,
    pub terminal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub status: Status,
    pub at: DateTime<Utc>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    pub message_id: uuid::Uuid,
    pub template_id: uuid::Uuid,
    pub template_name: String,
    pub language: String,
    pub channel: Channel,
    pub phone: PhoneNumber,
    pub contact_id: Option<uuid::Uuid>,
    pub header_text: Option<String>,
    pub header_image_url: Option<String>,
    pub body: String,
    pub variables: Vec<String>,
    pub department: Option<DepartmentId>,
    pub webhook_url: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub additional_information: String,
    pub agent: String,
    pub status: Status,
    pub provider_message_id: Option<String>,
    pub failure: Option<Failure>,
    pub history: Vec<Change>,
    pub requested_at: DateTime<Utc>,
}

impl OutboundMessage {
    /// The message without anything of its recipient (`EraseClientData`): their phone, what was
    /// rendered for them and the values it was rendered with. The erasure writes the same fields
    /// into stored states (`app::erasure`), a rebuild gets them from the sealed events.
    pub fn erased(self) -> Self {
        Self {
            phone: PhoneNumber::erased(),
            header_text: None,
            body: String::new(),
            variables: Vec::new(),
            additional_information: String::new(),
            ..self
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Requested(Box<OutboundMessage>),
    Dispatched { provider_message_id: String, attempts: u32, at: DateTime<Utc> },
    Delivered { at: DateTime<Utc> },
    Read { at: DateTime<Utc> },
    Failed { failure: Failure, attempts: u32, at: DateTime<Utc> },
}

/// The events a reported status adds: none when it is a duplicate or older than what we know.
pub fn report(state: &OutboundMessage, event: Event) -> Vec<Event> {
    let next = match &event {
        Event::Requested(_) => return Vec::new(),
        Event::Dispatched { .. } => Status::Dispatched,
        Event::Delivered { .. } => Status::Delivered,
        Event::Read { .. } => Status::Read,
        Event::Failed { .. } => Status::Failed,
    };
    if state.status == Status::Failed || next.rank() <= state.status.rank() {
        return Vec::new();
    }
    vec![event]
}

pub fn evolve(mut state: OutboundMessage, event: &Event) -> OutboundMessage {
    let (status, at, detail): (Status, DateTime<Utc>, String) = match event {
        Event::Requested(message) => return (**message).clone(),
        Event::Dispatched { provider_message_id, attempts, at } => {
            state.provider_message_id = Some(provider_message_id.clone());
            (Status::Dispatched, *at, format!("{attempts} attempt(s), provider id {provider_message_id}"))
        }
        Event::Delivered { at } => (Status::Delivered, *at, String::new()),
        Event::Read { at } => (Status::Read, *at, String::new()),
        Event::Failed { failure, attempts, at } => {
            state.failure = Some(failure.clone());
            (Status::Failed, *at, format!("{}: {} ({attempts} attempt(s))", failure.code, failure.reason))
        }
    };
    state.status = status;
    state.history.push(Change { status, at, detail });
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested() -> OutboundMessage {
        let now = Utc::now();
        OutboundMessage {
            message_id: uuid::Uuid::now_v7(),
            template_id: uuid::Uuid::now_v7(),
            template_name: "t".into(),
            language: "pt_BR".into(),
            channel: Channel::Whatsapp,
            phone: PhoneNumber::parse("+5511999990000").unwrap(),
            contact_id: None,
            header_text: None,
            header_image_url: None,
            body: "Oi".into(),
            variables: vec![],
            department: None,
            webhook_url: None,
            metadata: BTreeMap::new(),
            additional_information: String::new(),
            agent: "ana".into(),
            status: Status::Requested,
            provider_message_id: None,
            failure: None,
            history: vec![Change { status: Status::Requested, at: now, detail: String::new() }],
            requested_at: now,
        }
    }

    #[test]
    fn statuses_only_move_forward() {
        let now = Utc::now();
        let state = requested();
        let events = report(&state, Event::Dispatched { provider_message_id: "wamid.1".into(), attempts: 1, at: now });
        let state = events.iter().fold(state, evolve);
        let read = report(&state, Event::Read { at: now });
        let state = read.iter().fold(state, evolve);
        assert_eq!(state.status, Status::Read);
        assert!(report(&state, Event::Delivered { at: now }).is_empty(), "a late delivered changes nothing");
        assert!(report(&state, Event::Read { at: now }).is_empty(), "a duplicate changes nothing");
        assert_eq!(state.history.len(), 3);
        let failure = Failure { code: "131026".into(), reason: "undeliverable".into(), terminal: true };
        let failed = report(&state, Event::Failed { failure, attempts: 1, at: now }).iter().fold(state, evolve);
        assert!(report(&failed, Event::Delivered { at: now }).is_empty(), "nothing after a failure");
    }
}
