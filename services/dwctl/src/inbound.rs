//! `dwctl demo inbound`: publishes a `dw.messaging.v1.InboundMessageReceived` event to JetStream
//! the way the messaging service will (a client wrote to the tenant), so that task-distribution's
//! reaction can be shown before that service exists.
//!
//! The event is a stream of its own (`inbound:<tenant>:<message_id>`, version 1) and carries the
//! same envelope as the events an outbox relay publishes: `Nats-Msg-Id` = `ce-id` (a UUIDv7),
//! `ce-type`, `ce-source`, `ce-time`, `ce-subject`, `ce-specversion`, `content-type`, `dw-tenant`,
//! `dw-stream-version`.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use async_nats::jetstream::{self, stream};
use chrono::{DateTime, SecondsFormat, Utc};
use dw_auth::TenantId;
use dw_proto::messaging::v1::InboundMessageReceived;
use prost::Message as _;
use uuid::Uuid;

use crate::cli::{GlobalOpts, InboundArgs};
use crate::events::Event;
use crate::failure::UsageError;
use crate::output::{self as out, descriptor_pool, names};

/// `ce-source` of the events dwctl publishes.
pub const SOURCE: &str = "dwctl";
/// JetStream de-duplication window of a stream dwctl creates (the services use the same).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A ready-to-publish event: subject, headers (in publishing order) and protobuf payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub subject: String,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Vec<u8>,
}

/// The event of `args` received now, with its message id.
pub fn event(args: &InboundArgs, message_id: &str, now: DateTime<Utc>) -> InboundMessageReceived {
    InboundMessageReceived {
        message_id: message_id.to_owned(),
        contact_id: args.contact_id.clone().unwrap_or_default(),
        contact_name: args.name.clone(),
        phone: args.phone.clone(),
        channel: args.channel as i32,
        text: args.text.clone(),
        provider_message_id: format!("dwctl-{message_id}"),
        received_at: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        department_id: args.department.clone().unwrap_or_default(),
    }
}

/// Subject `<prefix>.<tenant>.inbound.received` and the CloudEvents-style headers.
pub fn envelope(
    tenant: &TenantId,
    subject_prefix: &str,
    event_id: Uuid,
    event: &InboundMessageReceived,
    now: DateTime<Utc>,
) -> Outgoing {
    let event_id = event_id.to_string();
    let headers = vec![
        ("Nats-Msg-Id", event_id.clone()),
        ("ce-id", event_id),
        ("ce-specversion", "1.0".to_owned()),
        ("ce-type", names::INBOUND_MESSAGE_RECEIVED.to_owned()),
        ("ce-source", SOURCE.to_owned()),
        ("ce-time", now.to_rfc3339_opts(SecondsFormat::Micros, true)),
        ("ce-subject", format!("inbound:{tenant}:{}", event.message_id)),
        ("content-type", "application/protobuf".to_owned()),
        ("dw-tenant", tenant.as_str().to_owned()),
        ("dw-stream-version", "1".to_owned()),
    ];
    Outgoing { subject: format!("{subject_prefix}.{tenant}.inbound.received"), headers, payload: event.encode_to_vec() }
}

/// The stream dwctl creates when it is missing: like the services' own streams.
pub fn stream_config(name: &str, subject_prefix: &str) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{subject_prefix}.>")],
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: 1,
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        ..Default::default()
    }
}

/// Whether the NATS subject filter `filter` (with `*` and `>` wildcards) matches `subject`.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut filter = filter.split('.');
    let mut subject = subject.split('.');
    loop {
        match (filter.next(), subject.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(f), Some(s)) if f == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

pub async fn publish(opts: &GlobalOpts, args: InboundArgs) -> Result<()> {
    let tenant = opts.tenant.as_deref().ok_or_else(|| UsageError("demo inbound needs --tenant (DW_TENANT)".into()))?;
    let tenant =
        TenantId::parse(tenant).map_err(|reason| UsageError(format!("invalid tenant {tenant:?}: {reason}")))?;
    let now = Utc::now();
    let message_id = args.message_id.clone().unwrap_or_else(|| Uuid::now_v7().to_string());
    let event = event(&args, &message_id, now);
    let outgoing = envelope(&tenant, &args.subject_prefix, Uuid::now_v7(), &event, now);

    let client = async_nats::connect(args.nats_url.as_str())
        .await
        .with_context(|| format!("cannot connect to {}", args.nats_url))?;
    let jetstream = jetstream::new(client);
    let stream = jetstream
        .get_or_create_stream(stream_config(&args.stream, &args.subject_prefix))
        .await
        .map_err(|err| anyhow!("cannot open or create stream {} on {}: {err}", args.stream, args.nats_url))?;
    let subjects = &stream.cached_info().config.subjects;
    if !subjects.iter().any(|filter| subject_matches(filter, &outgoing.subject)) {
        bail!(
            "stream {} (subjects {}) does not capture {}: pass the --stream and --subject-prefix that go together",
            args.stream,
            out::list(subjects),
            outgoing.subject
        );
    }

    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in &outgoing.headers {
        headers.insert(*name, value.as_str());
    }
    let ack = jetstream
        .publish_with_headers(outgoing.subject.clone(), headers, outgoing.payload.clone().into())
        .await
        .with_context(|| format!("publishing to {}", outgoing.subject))?
        .await
        .with_context(|| format!("waiting for JetStream's ack of {}", outgoing.subject))?;

    let pool = descriptor_pool()?;
    let headers = outgoing.headers.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect();
    let printed = Event::new(&pool, Some(ack.sequence), None, outgoing.subject.clone(), headers, &outgoing.payload);
    if opts.json {
        let mut value = printed.to_json();
        if let Some(object) = value.as_object_mut() {
            object.remove("published");
        }
        value["stream"] = serde_json::Value::String(ack.stream.clone());
        value["duplicate"] = serde_json::Value::Bool(ack.duplicate);
        out::write_line(&serde_json::to_string_pretty(&value)?)
    } else {
        let duplicate = if ack.duplicate { " (a duplicate: JetStream kept the first copy)" } else { "" };
        out::write_line(&format!(
            "published {} to stream {}, sequence {}{duplicate}\n{}",
            names::INBOUND_MESSAGE_RECEIVED,
            ack.stream,
            ack.sequence,
            printed.to_text().trim_end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use dw_proto::messaging::v1::Channel;

    use crate::cli::{Cli, Command, DemoCommand};

    fn parse(args: &[&str]) -> (GlobalOpts, InboundArgs) {
        let cli = Cli::try_parse_from(["dwctl", "demo", "inbound"].into_iter().chain(args.iter().copied())).unwrap();
        let Command::Demo(DemoCommand::Inbound(inbound)) = cli.command else { panic!("not demo inbound") };
        (cli.global, *inbound)
    }

    #[test]
    fn the_event_and_its_envelope_follow_the_contract() {
        let (global, args) = parse(&[
            "--tenant",
            "demo",
            "--phone",
            "+55 11 91234-5678",
            "--name",
            "Maria Souza",
            "--text",
            "Hello?",
            "--department",
            "support",
        ]);
        assert_eq!(global.tenant.as_deref(), Some("demo"));
        assert_eq!(args.stream, "DW_MESSAGING");
        assert_eq!(args.subject_prefix, "dw.messaging");
        assert_eq!(args.channel, Channel::Whatsapp);
        let now = DateTime::from_timestamp(1_714_550_400, 123_456_000).unwrap();
        let event = event(&args, "m-1", now);
        assert_eq!(event.phone, "+5511912345678");
        assert_eq!(event.contact_name, "Maria Souza");
        assert_eq!(event.channel, Channel::Whatsapp as i32);
        assert_eq!(event.department_id, "support");
        assert_eq!(event.provider_message_id, "dwctl-m-1");
        assert_eq!(event.received_at.unwrap().nanos, 123_456_000);

        let tenant = TenantId::parse("demo").unwrap();
        let id = Uuid::now_v7();
        let outgoing = envelope(&tenant, &args.subject_prefix, id, &event, now);
        assert_eq!(outgoing.subject, "dw.messaging.demo.inbound.received");
        let header = |name: &str| outgoing.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(header("Nats-Msg-Id"), Some(id.to_string().as_str()));
        assert_eq!(header("ce-id"), Some(id.to_string().as_str()));
        assert_eq!(header("ce-type"), Some("dw.messaging.v1.InboundMessageReceived"));
        assert_eq!(header("ce-source"), Some("dwctl"));
        assert_eq!(header("ce-time"), Some("2024-05-01T08:00:00.123456Z"));
        assert_eq!(header("ce-subject"), Some("inbound:demo:m-1"));
        assert_eq!(header("ce-specversion"), Some("1.0"));
        assert_eq!(header("content-type"), Some("application/protobuf"));
        assert_eq!(header("dw-tenant"), Some("demo"));
        assert_eq!(header("dw-stream-version"), Some("1"));
        assert_eq!(InboundMessageReceived::decode(outgoing.payload.as_slice()).unwrap(), event);
    }

    #[test]
    fn options_choose_the_channel_stream_and_prefix() {
        let (_, args) = parse(&[
            "--phone",
            "+14155550100",
            "--name",
            "Joe",
            "--text",
            "hi",
            "--channel",
            "sms",
            "--stream",
            "TEST_MSG",
            "--subject-prefix",
            "test_ab.messaging",
        ]);
        assert_eq!(args.channel, Channel::Sms);
        let config = stream_config(&args.stream, &args.subject_prefix);
        assert_eq!(config.name, "TEST_MSG");
        assert_eq!(config.subjects, ["test_ab.messaging.>"]);
        assert_eq!(config.duplicate_window, Duration::from_secs(120));
        let cli = Cli::try_parse_from(["dwctl", "demo", "inbound", "--phone", "+1415", "--name", "J", "--text", "x"]);
        assert!(cli.is_ok(), "the tenant is checked when publishing, not by clap");
        for bad in [["--channel", "voice"], ["--phone", "14155550100"], ["--subject-prefix", "dw.>"]] {
            let mut args = vec!["dwctl", "demo", "inbound", "--phone", "+14155550100", "--name", "J", "--text", "x"];
            args.extend(bad);
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn subject_filters_match_like_nats() {
        assert!(subject_matches("dw.messaging.>", "dw.messaging.demo.inbound.received"));
        assert!(subject_matches("dw.*.demo.>", "dw.messaging.demo.inbound.received"));
        assert!(subject_matches("dw.messaging.demo.inbound.received", "dw.messaging.demo.inbound.received"));
        assert!(!subject_matches("dw.messaging.>", "dw.messaging"));
        assert!(!subject_matches("dw.agentsessions.>", "dw.messaging.demo.inbound.received"));
        assert!(!subject_matches("dw.messaging.*", "dw.messaging.demo.inbound.received"));
    }

    #[test]
    fn the_published_event_prints_like_events_tail() {
        let (_, args) = parse(&["--phone", "+14155550100", "--name", "Joe", "--text", "hi"]);
        let now = DateTime::from_timestamp(1_714_550_400, 0).unwrap();
        let event = event(&args, "m-2", now);
        let outgoing = envelope(&TenantId::parse("acme").unwrap(), "dw.messaging", Uuid::now_v7(), &event, now);
        let pool = descriptor_pool().unwrap();
        let headers = outgoing.headers.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect();
        let printed = Event::new(&pool, Some(3), None, outgoing.subject.clone(), headers, &outgoing.payload);
        let json = printed.to_json();
        assert_eq!(json["type"], "dw.messaging.v1.InboundMessageReceived");
        assert_eq!(json["payload"]["contactName"], "Joe");
        assert_eq!(json["payload"]["channel"], "CHANNEL_WHATSAPP");
        assert_eq!(json["headers"]["ce-subject"], "inbound:acme:m-2");
        assert!(printed.to_text().starts_with("#3  dw.messaging.acme.inbound.received\n  ce-id "));
    }
}
