//! `dwctl events log`: a service's event store as its `ReadEvents` RPC pages it, for an SRE
//! chasing one aggregate (`--stream task:…`) or looking at the newest events (`--tail N`).
//!
//! Payloads are checked against the generated contracts (`dw_proto::<context>::v1::Event`, so an
//! event type the contract has is decoded with its prost type) and shown as proto3 JSON; a type
//! no contract has, or a payload that does not decode, is shown with its byte length, never
//! dropped and never fatal.

use anyhow::{Result, bail};
use dw_proto::eventlog::v1::event_log_service_client::EventLogServiceClient;
use dw_proto::eventlog::v1::{ReadEventsRequest, StoredEvent};
use prost_reflect::DescriptorPool;
use serde_json::{Value, json};

use crate::cli::{GlobalOpts, LogArgs, StoreOwner};
use crate::failure::UsageError;
use crate::output::{self as out, decode_to_json, descriptor_pool};
use crate::rpc::Rpc;

/// Events per page while reading one stream's history.
const HISTORY_PAGE_SIZE: i32 = 500;
/// The server's largest page.
const MAX_PAGE_SIZE: u32 = 1000;

/// The store that owns the aggregates named `aggregate` (the first part of a stream id).
pub fn owner_of(aggregate: &str) -> Option<StoreOwner> {
    match aggregate {
        "serviceday" | "agent" | "tenant" => Some(StoreOwner::AgentSessions),
        "task" | "distribution" => Some(StoreOwner::TaskDistribution),
        "template" | "contact" | "message" | "inbound" | "optout" | "providers" => Some(StoreOwner::MessagingTemplates),
        _ => None,
    }
}

/// The contract package of a store's events, to complete a short `--type`.
fn package_of(owner: StoreOwner) -> &'static str {
    match owner {
        StoreOwner::AgentSessions => "dw.agentsessions.v1",
        StoreOwner::TaskDistribution => "dw.distribution.v1",
        StoreOwner::MessagingTemplates => "dw.messaging.v1",
        StoreOwner::Notifications => "dw.notifications.v1",
    }
}

/// The address of `owner` among the global options.
pub fn address(global: &GlobalOpts, owner: StoreOwner) -> &str {
    match owner {
        StoreOwner::AgentSessions => &global.addr,
        StoreOwner::TaskDistribution => &global.distribution_addr,
        StoreOwner::MessagingTemplates => &global.messaging_addr,
        StoreOwner::Notifications => &global.notifications_addr,
    }
}

/// What to read, resolved from the arguments before connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub owner: StoreOwner,
    pub request: ReadEventsRequest,
    /// `Some(n)`: the newest n events; `None`: the whole (filtered) history, oldest first.
    pub tail: Option<u32>,
}

/// Resolves the store, the full stream id and event type, and the tenant filter.
pub fn plan(args: &LogArgs, tenant: Option<&str>) -> Result<Plan> {
    let stream_id = match &args.stream {
        Some(stream) => Some(full_stream_id(stream, tenant)?),
        None => None,
    };
    let aggregate = stream_id.as_deref().and_then(|id| id.split_once(':')).map(|(aggregate, _)| aggregate);
    let owner = match (args.service, aggregate) {
        (Some(owner), _) => owner,
        (None, Some(aggregate)) => match owner_of(aggregate) {
            Some(owner) => owner,
            None => {
                bail!(UsageError(format!("no service is known to own `{aggregate}` streams: say which with --service")))
            }
        },
        (None, None) => bail!(UsageError("--tail needs --service (the store to read)".into())),
    };
    let event_type = match args.event_type.as_deref() {
        Some(short) if !short.contains('.') => format!("{}.{short}", package_of(owner)),
        Some(full) => full.to_owned(),
        None => String::new(),
    };
    let tenant_filter = if args.all_tenants { String::new() } else { tenant.unwrap_or_default().to_owned() };
    let page_size = args.tail.map_or(HISTORY_PAGE_SIZE, |n| i32::try_from(n.min(MAX_PAGE_SIZE)).unwrap_or(1));
    let request = ReadEventsRequest {
        from_position: 0,
        tenant: tenant_filter,
        event_type,
        stream_id: stream_id.unwrap_or_default(),
        page_size,
        newest_first: args.tail.is_some(),
    };
    Ok(Plan { owner, request, tail: args.tail })
}

/// `task:<id>` completed to `task:<tenant>:<id>`; a stream id with more parts is kept as it is.
pub fn full_stream_id(stream: &str, tenant: Option<&str>) -> Result<String> {
    let parts = stream.split(':').count();
    match (parts, tenant) {
        (0 | 1, _) => bail!(UsageError(format!("--stream {stream:?} is not <aggregate>:<id> (e.g. task:<TASK_ID>)"))),
        (2, Some(tenant)) => {
            let (aggregate, id) = stream.split_once(':').unwrap_or((stream, ""));
            Ok(format!("{aggregate}:{tenant}:{id}"))
        }
        (2, None) => bail!(UsageError(format!(
            "--stream {stream:?} names no tenant: give --tenant or <aggregate>:<tenant>:<id>"
        ))),
        _ => Ok(stream.to_owned()),
    }
}

/// Reads the planned events and prints them, oldest first.
pub async fn run(plan: Plan, rpc: &Rpc, json: bool) -> Result<()> {
    let pool = descriptor_pool()?;
    let mut client = EventLogServiceClient::new(rpc.channel.clone());
    let mut events = Vec::new();
    let mut request = plan.request.clone();
    loop {
        let page = client.read_events(rpc.request(request.clone())).await?.into_inner();
        events.extend(page.events);
        let enough = plan.tail.is_some_and(|n| events.len() >= usize::try_from(n).unwrap_or(usize::MAX));
        if page.end_of_log || enough || page.next_position == request.from_position {
            break;
        }
        request.from_position = page.next_position;
    }
    if let Some(n) = plan.tail {
        events.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        events.reverse();
    }
    if events.is_empty() && !json {
        eprintln!("no events");
    }
    for event in &events {
        if json {
            out::write_line(&serde_json::to_string(&to_json(&pool, event))?)?;
        } else {
            out::write_line(&to_text(&pool, event))?;
        }
    }
    Ok(())
}

/// A payload as shown: decoded, or why not with its size.
#[derive(Debug, PartialEq)]
pub enum Shown {
    Decoded(Value),
    Unknown { bytes: usize },
    Undecodable { why: String, bytes: usize },
}

/// Decodes a stored payload by its event type through the generated contracts.
pub fn show_payload(pool: &DescriptorPool, event_type: &str, payload: &[u8]) -> Shown {
    use dw_proto::Contract;
    fn check<C: Contract>(event_type: &str, payload: &[u8]) -> Option<Result<(), prost::DecodeError>> {
        C::decode(event_type, payload).map(|event| event.map(|_| ())).transpose()
    }
    let checked = check::<dw_proto::agentsessions::v1::Event>(event_type, payload)
        .or_else(|| check::<dw_proto::distribution::v1::Event>(event_type, payload))
        .or_else(|| check::<dw_proto::messaging::v1::Event>(event_type, payload));
    let bytes = payload.len();
    match checked {
        None => Shown::Unknown { bytes },
        Some(Err(error)) => Shown::Undecodable { why: error.to_string(), bytes },
        Some(Ok(())) => match decode_to_json(pool, event_type, payload) {
            Ok(value) => Shown::Decoded(value),
            Err(error) => Shown::Undecodable { why: format!("{error:#}"), bytes },
        },
    }
}

pub fn to_json(pool: &DescriptorPool, event: &StoredEvent) -> Value {
    let mut value = json!({
        "globalPosition": event.global_position,
        "eventId": event.event_id,
        "tenant": event.tenant,
        "streamId": event.stream_id,
        "version": event.version,
        "type": event.event_type,
        "subject": event.subject,
        "recordedAt": out::timestamp(event.recorded_at.as_ref()),
        "correlationId": event.correlation_id,
        "causationId": event.causation_id,
        "traceparent": event.traceparent,
        "payloadBytes": event.payload.len(),
    });
    match show_payload(pool, &event.event_type, &event.payload) {
        Shown::Decoded(payload) => value["payload"] = payload,
        Shown::Unknown { .. } => value["payloadError"] = json!("unknown event type"),
        Shown::Undecodable { why, .. } => value["payloadError"] = json!(why),
    }
    value
}

pub fn to_text(pool: &DescriptorPool, event: &StoredEvent) -> String {
    let mut text =
        format!("#{}  {}  v{}  {}\n", event.global_position, event.stream_id, event.version, event.event_type);
    let metadata = [
        ("recorded", out::timestamp(event.recorded_at.as_ref())),
        ("tenant", event.tenant.clone()),
        ("event id", event.event_id.clone()),
        ("correlation", out::or_dash(&event.correlation_id)),
        ("causation", out::or_dash(&event.causation_id)),
        ("traceparent", out::or_dash(&event.traceparent)),
    ];
    text.push_str(&out::indent(&out::fields(&metadata), 2));
    text.push('\n');
    match show_payload(pool, &event.event_type, &event.payload) {
        Shown::Decoded(payload) => {
            let pretty = serde_json::to_string_pretty(&payload).unwrap_or_else(|_| payload.to_string());
            text.push_str(&out::indent(&pretty, 2));
        }
        Shown::Unknown { bytes } => text.push_str(&format!("  ({bytes} bytes of a type no contract of dwctl has)")),
        Shown::Undecodable { why, bytes } => text.push_str(&format!("  ({bytes} bytes that do not decode: {why})")),
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, EventsCommand};
    use crate::testing::{T0, parse, ts};
    use dw_proto::distribution::v1::TaskAssigned;
    use prost::Message as _;

    fn log_args(args: &[&str]) -> (LogArgs, Option<String>) {
        let cli = parse(args).unwrap();
        let Command::Events(EventsCommand::Log(log)) = cli.command else { panic!("not events log") };
        (log, cli.global.tenant)
    }

    fn planned(args: &[&str]) -> Result<Plan> {
        let (log, tenant) = log_args(args);
        plan(&log, tenant.as_deref())
    }

    #[test]
    fn a_short_stream_id_is_completed_with_the_tenant_and_finds_its_service() {
        let plan = planned(&["--tenant", "acme", "events", "log", "--stream", "task:0190-a"]).unwrap();
        assert_eq!(plan.owner, StoreOwner::TaskDistribution);
        assert_eq!(plan.request.stream_id, "task:acme:0190-a");
        assert_eq!(plan.request.tenant, "acme");
        assert!(!plan.request.newest_first && plan.tail.is_none());
        let full = planned(&["events", "log", "--stream", "serviceday:acme:ana"]).unwrap();
        assert_eq!((full.owner, full.request.stream_id.as_str()), (StoreOwner::AgentSessions, "serviceday:acme:ana"));
        let optout = planned(&["events", "log", "--stream", "optout:acme:+5511912345678"]).unwrap();
        assert_eq!(optout.owner, StoreOwner::MessagingTemplates);
    }

    #[test]
    fn the_tail_reads_newest_first_with_a_short_type_completed_by_the_service() {
        let plan = planned(&[
            "--tenant",
            "acme",
            "events",
            "log",
            "--service",
            "task-distribution",
            "--tail",
            "5000",
            "--type",
            "TaskAssigned",
            "--all-tenants",
        ])
        .unwrap();
        assert_eq!(plan.tail, Some(5000));
        assert!(plan.request.newest_first);
        assert_eq!(plan.request.page_size, 1000);
        assert_eq!(plan.request.event_type, "dw.distribution.v1.TaskAssigned");
        assert_eq!(plan.request.tenant, "", "--all-tenants drops the tenant filter");
    }

    #[test]
    fn what_cannot_be_read_is_a_usage_error_before_any_call() {
        assert!(parse(&["events", "log"]).is_err(), "--stream or --tail");
        assert!(parse(&["events", "log", "--tail", "0", "--service", "notifications"]).is_err());
        assert!(planned(&["events", "log", "--tail", "3"]).unwrap_err().to_string().contains("--service"));
        assert!(planned(&["events", "log", "--stream", "task:1"]).unwrap_err().to_string().contains("--tenant"));
        let short = planned(&["events", "log", "--stream", "task"]).unwrap_err();
        assert!(short.downcast_ref::<UsageError>().is_some(), "exit status 2: {short}");
        let unknown = planned(&["--tenant", "acme", "events", "log", "--stream", "gadget:1"]).unwrap_err();
        assert!(unknown.to_string().contains("--service"), "{unknown}");
    }

    fn stored(event_type: &str, payload: Vec<u8>) -> StoredEvent {
        StoredEvent {
            global_position: 42,
            event_id: "0190-e".into(),
            tenant: "acme".into(),
            stream_id: "task:acme:t-1".into(),
            version: 2,
            event_type: event_type.into(),
            subject: "task.assigned".into(),
            recorded_at: ts(T0),
            payload,
            correlation_id: "corr-1".into(),
            causation_id: String::new(),
            traceparent: String::new(),
        }
    }

    #[test]
    fn known_events_decode_and_unknown_or_broken_ones_show_their_size() {
        let pool = descriptor_pool().unwrap();
        let assigned = TaskAssigned { task_id: "t-1".into(), agent_id: "ana".into(), ..Default::default() };
        let event = stored("dw.distribution.v1.TaskAssigned", assigned.encode_to_vec());
        let text = to_text(&pool, &event);
        assert!(text.starts_with("#42  task:acme:t-1  v2  dw.distribution.v1.TaskAssigned\n"), "{text}");
        assert!(text.contains("  recorded     2024-05-01T08:00:00Z\n"), "{text}");
        assert!(text.contains("\"agentId\": \"ana\""), "{text}");
        let json = to_json(&pool, &event);
        assert_eq!(json["payload"]["agentId"], "ana");
        assert_eq!(json["correlationId"], "corr-1");

        let unknown = stored("dw.future.v9.Gadget", vec![1, 2, 3]);
        assert_eq!(show_payload(&pool, &unknown.event_type, &unknown.payload), Shown::Unknown { bytes: 3 });
        assert!(to_text(&pool, &unknown).contains("(3 bytes of a type no contract of dwctl has)"));
        assert_eq!(to_json(&pool, &unknown)["payloadBytes"], 3);

        let broken = stored("dw.distribution.v1.TaskAssigned", vec![0x0a, 0x05, 0x61]);
        assert!(matches!(
            show_payload(&pool, &broken.event_type, &broken.payload),
            Shown::Undecodable { bytes: 3, .. }
        ));
        assert!(to_json(&pool, &broken)["payloadError"].is_string());
    }
}
