//! `dwctl events tail`: an ordered, ephemeral JetStream consumer that prints every event with its
//! headers and its payload decoded by `ce-type`.

use std::time::Duration;

use anyhow::{Context as _, Result};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt as _;
use prost_reflect::DescriptorPool;
use serde_json::{Map, Value, json};

use crate::cli::TailArgs;
use crate::output::{self as out, decode_to_json, descriptor_pool};

/// Headers printed first, in this order; any others follow alphabetically.
const HEADER_ORDER: [&str; 11] = [
    "ce-id",
    "ce-type",
    "ce-source",
    "ce-time",
    "ce-subject",
    "dw-tenant",
    "dw-stream-version",
    "dw-correlation-id",
    "dw-causation-id",
    "traceparent",
    "Nats-Msg-Id",
];

pub async fn tail(args: TailArgs, json: bool) -> Result<()> {
    let pool = descriptor_pool()?;
    let client = async_nats::connect(args.nats_url.as_str())
        .await
        .with_context(|| format!("cannot connect to {}", args.nats_url))?;
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream
        .get_stream(&args.stream)
        .await
        .with_context(|| format!("cannot open stream {} on {}", args.stream, args.nats_url))?;
    let deliver_policy = match (args.from_start, args.from_seq) {
        (true, _) => DeliverPolicy::All,
        (false, Some(start_sequence)) => DeliverPolicy::ByStartSequence { start_sequence },
        (false, None) => DeliverPolicy::New,
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: args.subject.clone().unwrap_or_default(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .context("creating an ordered consumer")?;
    let mut messages = consumer.messages().await.context("subscribing to the ordered consumer")?;
    if !json {
        let filter = args.subject.as_deref().unwrap_or("(all subjects)");
        let start = match deliver_policy {
            DeliverPolicy::All => "from the start".to_owned(),
            DeliverPolicy::ByStartSequence { start_sequence } => format!("from sequence {start_sequence}"),
            _ => "new events only".to_owned(),
        };
        eprintln!("tailing stream {} {filter}, {start} (Ctrl-C to stop)", args.stream);
    }

    let idle = args.idle_timeout_seconds.map(Duration::from_secs);
    let mut seen = 0_u64;
    loop {
        if args.limit.is_some_and(|limit| seen >= limit) {
            return Ok(());
        }
        let next = async {
            match idle {
                Some(idle) => tokio::time::timeout(idle, messages.next()).await.ok(),
                None => Some(messages.next().await),
            }
        };
        let next = tokio::select! {
            next = next => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let message = match next {
            None => {
                if !json {
                    eprintln!("no event for {}s; stopping", args.idle_timeout_seconds.unwrap_or_default());
                }
                return Ok(());
            }
            Some(None) => return Ok(()),
            Some(Some(message)) => message.context("receiving from the ordered consumer")?,
        };
        let sequence = message.info().ok().map(|info| info.stream_sequence);
        let published = message.reply.as_deref().and_then(published_from_reply);
        let mut headers = Vec::new();
        if let Some(map) = &message.headers {
            for (name, values) in map.iter() {
                for value in values {
                    headers.push((name.to_string(), value.to_string()));
                }
            }
        }
        let event = Event::new(&pool, sequence, published, message.subject.to_string(), headers, &message.payload);
        if json {
            out::write_line(&serde_json::to_string(&event.to_json())?)?;
        } else {
            out::write_line(&event.to_text())?;
        }
        seen += 1;
    }
}

/// One received event, ready to print.
#[derive(Debug)]
pub struct Event {
    sequence: Option<u64>,
    published: Option<DateTime<Utc>>,
    subject: String,
    headers: Vec<(String, String)>,
    payload: Payload,
}

#[derive(Debug, PartialEq)]
pub enum Payload {
    /// Decoded as the message named by `ce-type`.
    Decoded { type_name: String, json: Value },
    /// Not decodable: why, and the raw bytes as hex.
    Raw { why: String, hex: String },
}

impl Event {
    pub fn new(
        pool: &DescriptorPool,
        sequence: Option<u64>,
        published: Option<DateTime<Utc>>,
        subject: String,
        headers: Vec<(String, String)>,
        payload: &[u8],
    ) -> Self {
        let headers = order_headers(headers);
        let ce_type = headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("ce-type")).map(|(_, v)| v.as_str());
        let payload = decode_payload(pool, ce_type, payload);
        Self { sequence, published, subject, headers, payload }
    }

    pub fn to_json(&self) -> Value {
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            match headers.get_mut(name) {
                Some(Value::Array(values)) => values.push(Value::String(value.clone())),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, Value::String(value.clone())]);
                }
                None => {
                    headers.insert(name.clone(), Value::String(value.clone()));
                }
            }
        }
        let mut event = json!({
            "streamSequence": self.sequence,
            "subject": self.subject,
            "published": self.published.map(|at| at.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            "headers": headers,
        });
        match &self.payload {
            Payload::Decoded { type_name, json } => {
                event["type"] = Value::String(type_name.clone());
                event["payload"] = json.clone();
            }
            Payload::Raw { why, hex } => {
                event["payloadError"] = Value::String(why.clone());
                event["payloadHex"] = Value::String(hex.clone());
            }
        }
        event
    }

    pub fn to_text(&self) -> String {
        let sequence = self.sequence.map_or_else(|| "?".to_owned(), |s| s.to_string());
        let mut text = format!("#{sequence}  {}", self.subject);
        if let Some(published) = self.published {
            text.push_str(&format!("  (published {})", published.to_rfc3339_opts(SecondsFormat::Millis, true)));
        }
        text.push('\n');
        let rows: Vec<(&str, String)> =
            self.headers.iter().map(|(name, value)| (name.as_str(), value.clone())).collect();
        text.push_str(&out::indent(&out::fields(&rows), 2));
        text.push('\n');
        match &self.payload {
            Payload::Decoded { type_name, json } => {
                text.push_str(&format!("  payload {type_name}:\n"));
                let pretty = serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string());
                text.push_str(&out::indent(&pretty, 4));
            }
            Payload::Raw { why, hex } => {
                text.push_str(&format!("  payload ({why}), hex:\n"));
                text.push_str(&out::indent(if hex.is_empty() { "(empty)" } else { hex }, 4));
            }
        }
        text.push_str("\n\n");
        text
    }
}

/// Decodes a payload by its `ce-type`; falls back to hex.
pub fn decode_payload(pool: &DescriptorPool, ce_type: Option<&str>, payload: &[u8]) -> Payload {
    let raw = |why: String| Payload::Raw { why, hex: out::hex(payload) };
    let Some(type_name) = ce_type.map(str::trim).filter(|t| !t.is_empty()) else {
        return raw("no ce-type header".to_owned());
    };
    if pool.get_message_by_name(type_name).is_none() {
        return raw(format!("unknown type {type_name}"));
    }
    match decode_to_json(pool, type_name, payload) {
        Ok(json) => Payload::Decoded { type_name: type_name.to_owned(), json },
        Err(err) => raw(format!("{err:#}")),
    }
}

/// The headers this crate knows first, in [`HEADER_ORDER`]; the rest alphabetically.
pub fn order_headers(mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
    let rank = |name: &str| {
        HEADER_ORDER.iter().position(|known| known.eq_ignore_ascii_case(name)).unwrap_or(HEADER_ORDER.len())
    };
    headers.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    headers
}

/// The time the server stored a message, from its `$JS.ACK` reply subject (ADR-15: 9 tokens, or
/// 11+ with domain and account hash).
pub fn published_from_reply(reply: &str) -> Option<DateTime<Utc>> {
    let tokens: Vec<&str> = reply.split('.').collect();
    if tokens.first().copied() != Some("$JS") || tokens.get(1).copied() != Some("ACK") {
        return None;
    }
    let nanos: i64 = match tokens.len() {
        9 => tokens.get(7)?.parse().ok()?,
        n if n >= 11 => tokens.get(9)?.parse().ok()?,
        _ => return None,
    };
    Some(DateTime::from_timestamp_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dw_proto::agentsessions::v1::AgentRegistered;
    use prost::Message as _;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn known_event_types_decode_to_json() {
        let pool = descriptor_pool().unwrap();
        let event = AgentRegistered {
            agent_id: "ana".into(),
            display_name: "Ana Lima".into(),
            registered_by: "manager-1".into(),
        };
        let decoded = decode_payload(&pool, Some("dw.agentsessions.v1.AgentRegistered"), &event.encode_to_vec());
        let Payload::Decoded { type_name, json } = decoded else { panic!("not decoded: {decoded:?}") };
        assert_eq!(type_name, "dw.agentsessions.v1.AgentRegistered");
        assert_eq!(json["displayName"], "Ana Lima");
        assert_eq!(json["registeredBy"], "manager-1");
    }

    #[test]
    fn distribution_and_messaging_events_decode_too() {
        use dw_proto::distribution::v1::{RequeueCause, TaskAssigned, TaskRequeued};
        use dw_proto::messaging::v1::{Channel, InboundMessageReceived};
        let pool = descriptor_pool().unwrap();
        let assigned = TaskAssigned {
            task_id: "t-1".into(),
            agent_id: "ana".into(),
            candidates_considered: 2,
            trigger: "task_created".into(),
            ..Default::default()
        };
        let decoded = decode_payload(&pool, Some("dw.distribution.v1.TaskAssigned"), &assigned.encode_to_vec());
        let Payload::Decoded { json, .. } = decoded else { panic!("not decoded: {decoded:?}") };
        assert_eq!(json["agentId"], "ana");
        assert_eq!(json["candidatesConsidered"], 2);
        let requeued = TaskRequeued { cause: RequeueCause::AgentDayEnded as i32, ..Default::default() };
        let decoded = decode_payload(&pool, Some("dw.distribution.v1.TaskRequeued"), &requeued.encode_to_vec());
        let Payload::Decoded { json, .. } = decoded else { panic!("not decoded: {decoded:?}") };
        assert_eq!(json["cause"], "REQUEUE_CAUSE_AGENT_DAY_ENDED");
        let inbound = InboundMessageReceived {
            phone: "+5511912345678".into(),
            channel: Channel::Sms as i32,
            ..Default::default()
        };
        let decoded = decode_payload(&pool, Some("dw.messaging.v1.InboundMessageReceived"), &inbound.encode_to_vec());
        let Payload::Decoded { json, .. } = decoded else { panic!("not decoded: {decoded:?}") };
        assert_eq!(json["phone"], "+5511912345678");
        assert_eq!(json["channel"], "CHANNEL_SMS");
    }

    #[test]
    fn unknown_or_missing_types_and_garbage_fall_back_to_hex() {
        let pool = descriptor_pool().unwrap();
        assert_eq!(
            decode_payload(&pool, Some("dw.nope.v1.Missing"), &[1, 2]),
            Payload::Raw { why: "unknown type dw.nope.v1.Missing".into(), hex: "0102".into() }
        );
        assert!(matches!(decode_payload(&pool, None, &[0xff]), Payload::Raw { hex, .. } if hex == "ff"));
        let garbage = decode_payload(&pool, Some("dw.agentsessions.v1.AgentRegistered"), &[0x0a, 0x05, 0x61]);
        assert!(matches!(garbage, Payload::Raw { hex, .. } if hex == "0a0561"));
    }

    #[test]
    fn headers_are_ordered_known_first_then_alphabetically() {
        let ordered = order_headers(headers(&[
            ("zzz", "1"),
            ("Nats-Msg-Id", "m"),
            ("ce-type", "t"),
            ("aaa", "2"),
            ("ce-id", "i"),
        ]));
        let names: Vec<&str> = ordered.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ce-id", "ce-type", "Nats-Msg-Id", "aaa", "zzz"]);
    }

    #[test]
    fn events_render_as_text_and_json() {
        let pool = descriptor_pool().unwrap();
        let payload = AgentRegistered { agent_id: "ana".into(), ..Default::default() }.encode_to_vec();
        let event = Event::new(
            &pool,
            Some(42),
            DateTime::from_timestamp(1_714_550_400, 0),
            "dw.agentsessions.demo.agent.registered".into(),
            headers(&[("ce-type", "dw.agentsessions.v1.AgentRegistered"), ("dw-tenant", "demo")]),
            &payload,
        );
        let text = event.to_text();
        assert!(
            text.starts_with("#42  dw.agentsessions.demo.agent.registered  (published 2024-05-01T08:00:00.000Z)\n")
        );
        assert!(text.contains("  ce-type    dw.agentsessions.v1.AgentRegistered\n  dw-tenant  demo\n"), "{text}");
        assert!(text.contains("  payload dw.agentsessions.v1.AgentRegistered:\n    {\n"), "{text}");
        let json = event.to_json();
        assert_eq!(json["streamSequence"], 42);
        assert_eq!(json["headers"]["dw-tenant"], "demo");
        assert_eq!(json["payload"]["agentId"], "ana");
        assert_eq!(json["type"], "dw.agentsessions.v1.AgentRegistered");
    }

    #[test]
    fn stored_time_comes_from_the_ack_subject() {
        let v1 = published_from_reply("$JS.ACK.DW_AGENT_SESSIONS.c.1.42.7.1714550400000000000.0").unwrap();
        assert_eq!(v1.timestamp(), 1_714_550_400);
        let v2 = published_from_reply("$JS.ACK.dom.hash.DW_AGENT_SESSIONS.c.1.42.7.1714550400000000000.0.tok").unwrap();
        assert_eq!(v2.timestamp(), 1_714_550_400);
        assert!(published_from_reply("_INBOX.abc").is_none());
    }
}
