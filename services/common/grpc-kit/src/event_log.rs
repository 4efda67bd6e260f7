//! `dw.eventlog.v1.EventLogService`: the paged read of a service's own event store that every
//! service offers (`ReadEvents`), implemented once here. A service registers it with
//! [`crate::bootstrap::Bootstrap::event_log`], lists [`SERVICE_NAME`] among what it serves and
//! puts [`READ_EVENTS`] in its access table.
//!
//! Who reads what: role `service` (internal callers, e.g. a consumer catching up from the owner)
//! reads every tenant, or the one it names; role `manager` (an SRE or a tenant's manager chasing
//! one task) reads only its own tenant's events, and naming another tenant is refused. The
//! access table admits nobody else.

use dw_auth::{Principal, Role};
use std::sync::Arc;

use dw_eventstore::RecordedEvent;
use dw_eventstore::log::{self, Direction, LogQuery};
use dw_eventstore::personal::{self, PersonalFields};
use dw_ids::TenantId;
use dw_proto::eventlog::v1::event_log_service_server::{EventLogService, EventLogServiceServer};
use dw_proto::eventlog::v1::{ReadEventsRequest, ReadEventsResponse, StoredEvent};
use sqlx::PgPool;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::access::{MANAGER_OR_SERVICE, Rule};
use crate::auth::AuthInterceptor;
use crate::{errors, paging};

/// The gRPC service name, for a service's `SERVICE_NAMES`.
pub const SERVICE_NAME: &str = dw_proto::eventlog::v1::event_log_service_server::SERVICE_NAME;

/// The access rule of `ReadEvents`, for every service's access table.
pub const READ_EVENTS: Rule = ("dw.eventlog.v1.EventLogService/ReadEvents", MANAGER_OR_SERVICE);

/// Every service serves its event log: a service whose `service_names` (what its port serves,
/// and what its access table must cover) leave it out does not start.
pub fn check_served(service_names: &[&str]) -> Result<(), String> {
    if service_names.contains(&SERVICE_NAME) {
        return Ok(());
    }
    Err(format!(
        "every service serves {SERVICE_NAME}: add it to the service names, READ_EVENTS to the access table and \
         Bootstrap::event_log to the routes"
    ))
}

/// A page holds this many events unless the request says otherwise.
pub const DEFAULT_PAGE_SIZE: i64 = 100;

/// The longest event type name accepted as a filter.
const MAX_EVENT_TYPE_CHARS: usize = 200;
/// The longest stream id accepted as a filter.
const MAX_STREAM_ID_CHARS: usize = 300;

/// The served service, behind the service's interceptor (auth, access table, budgets).
pub type EventLogServer = InterceptedService<EventLogServiceServer<EventLogGrpc>, AuthInterceptor>;

/// `ReadEvents` over a service's own store. Events with personal fields
/// ([`dw_eventstore::personal`]) are answered opened: in the clear while their subject's key
/// exists, empty once it was erased; never sealed.
#[derive(Clone)]
pub struct EventLogGrpc {
    pool: PgPool,
    personal: Option<Arc<dyn PersonalFields>>,
}

impl std::fmt::Debug for EventLogGrpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLogGrpc").field("personal_fields", &self.personal.is_some()).finish_non_exhaustive()
    }
}

impl EventLogGrpc {
    pub fn new(pool: PgPool, personal: Option<Arc<dyn PersonalFields>>) -> Self {
        Self { pool, personal }
    }

    /// The service with `auth` in front of it.
    pub fn server(pool: PgPool, personal: Option<Arc<dyn PersonalFields>>, auth: AuthInterceptor) -> EventLogServer {
        EventLogServiceServer::with_interceptor(Self::new(pool, personal), auth)
    }
}

#[tonic::async_trait]
impl EventLogService for EventLogGrpc {
    #[instrument(skip_all, fields(tenant, from_position, page_size))]
    async fn read_events(&self, request: Request<ReadEventsRequest>) -> Result<Response<ReadEventsResponse>, Status> {
        let principal = crate::auth::principal(&request)?;
        let query = parse_query(request.get_ref(), &principal)?;
        let span = tracing::Span::current();
        span.record("tenant", query.tenant.as_ref().map_or("*", TenantId::as_str));
        span.record("from_position", query.from_position);
        span.record("page_size", query.limit);
        let mut page = log::read_log(&self.pool, &query).await.map_err(|error| match error {
            dw_eventstore::StoreError::Database(db) => errors::db_status(db),
            other => errors::internal(&other),
        })?;
        if let Some(fields) = &self.personal {
            let mut conn = self.pool.acquire().await.map_err(errors::db_status)?;
            personal::open_events(&mut conn, fields.as_ref(), &mut page.events).await.map_err(errors::db_status)?;
        }
        let next_position = page.next_position(query.from_position);
        Ok(Response::new(ReadEventsResponse {
            events: page.events.into_iter().map(stored_event).collect(),
            next_position,
            end_of_log: page.end_of_log,
        }))
    }
}

/// The page a caller asked for and may read: the request's fields parsed, and the tenant scoped
/// by the caller's role.
pub fn parse_query(request: &ReadEventsRequest, principal: &Principal) -> Result<LogQuery, Status> {
    if request.from_position < 0 {
        return Err(errors::invalid_argument("from_position", "must be 0 or a global position"));
    }
    let limit =
        paging::page_size(request.page_size, DEFAULT_PAGE_SIZE, i32::try_from(log::MAX_PAGE_SIZE).unwrap_or(i32::MAX))?;
    let requested_tenant = match request.tenant.as_str() {
        "" => None,
        tenant => Some(errors::parse_field("tenant", tenant, TenantId::parse)?),
    };
    let event_type = match request.event_type.as_str() {
        "" => None,
        event_type => Some(errors::parse_field("event_type", event_type, parse_event_type)?),
    };
    let stream_id = match request.stream_id.as_str() {
        "" => None,
        stream_id => Some(errors::parse_field("stream_id", stream_id, parse_stream_id)?),
    };
    let tenant = scope_tenant(principal, requested_tenant)?;
    let direction = if request.newest_first { Direction::Backward } else { Direction::Forward };
    Ok(LogQuery { from_position: request.from_position, direction, limit, tenant, event_type, stream_id })
}

/// The tenant filter the caller gets: a service the one it asked for (or all); anyone else only
/// their own tenant.
fn scope_tenant(principal: &Principal, requested: Option<TenantId>) -> Result<Option<TenantId>, Status> {
    if principal.has_role(Role::Service) {
        return Ok(requested);
    }
    crate::auth::require_role(principal, &[Role::Manager])?;
    let own = principal.tenant();
    match requested {
        Some(other) if &other != own => Err(errors::permission_denied(
            "OTHER_TENANT",
            format!("a {} token reads only its own tenant's events, not {other}'s", Role::Manager.as_str()),
        )),
        _ => Ok(Some(own.clone())),
    }
}

/// A full protobuf message name: dot-separated identifiers (`dw.distribution.v1.TaskAssigned`).
fn parse_event_type(value: &str) -> Result<String, String> {
    let well_formed = value.chars().count() <= MAX_EVENT_TYPE_CHARS
        && value.split('.').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if !well_formed {
        return Err(format!("must be a full protobuf message name of at most {MAX_EVENT_TYPE_CHARS} characters"));
    }
    Ok(value.to_owned())
}

/// A stream id as the services write them: `<aggregate>:<rest>` (`task:acme:0190…`), the
/// aggregate in lowercase letters, the whole printable ASCII without spaces.
fn parse_stream_id(value: &str) -> Result<String, String> {
    let shape = format!(
        "must be <aggregate>:<id> (e.g. task:<tenant>:<uuid>), printable ASCII without spaces, at most \
         {MAX_STREAM_ID_CHARS} characters"
    );
    if value.len() > MAX_STREAM_ID_CHARS || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(shape);
    }
    let Some((aggregate, rest)) = value.split_once(':') else {
        return Err(shape);
    };
    if aggregate.is_empty() || !aggregate.chars().all(|c| c.is_ascii_lowercase() || c == '_') || rest.is_empty() {
        return Err(shape);
    }
    Ok(value.to_owned())
}

fn stored_event(event: RecordedEvent) -> StoredEvent {
    StoredEvent {
        global_position: event.global_position,
        event_id: event.event_id.to_string(),
        tenant: event.tenant_id.as_str().to_owned(),
        stream_id: event.stream_id,
        version: event.version,
        event_type: event.event_type,
        subject: event.subject,
        recorded_at: Some(dw_proto::time::timestamp(event.recorded_at)),
        payload: event.payload,
        correlation_id: event.metadata.correlation_id.unwrap_or_default(),
        causation_id: event.metadata.causation_id.unwrap_or_default(),
        traceparent: event.metadata.traceparent.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(tenant: &str, roles: &[Role]) -> Principal {
        Principal::new("someone".into(), TenantId::parse(tenant).unwrap(), roles.to_vec())
    }

    fn request(tenant: &str) -> ReadEventsRequest {
        ReadEventsRequest { tenant: tenant.into(), ..Default::default() }
    }

    #[test]
    fn a_service_reads_every_tenant_or_the_one_it_names() {
        let service = caller("platform", &[Role::Service]);
        assert_eq!(parse_query(&request(""), &service).unwrap().tenant, None);
        assert_eq!(parse_query(&request("globex"), &service).unwrap().tenant, Some(TenantId::parse("globex").unwrap()));
    }

    #[test]
    fn a_manager_reads_only_its_own_tenant() {
        let manager = caller("acme", &[Role::Manager]);
        let own = Some(TenantId::parse("acme").unwrap());
        assert_eq!(parse_query(&request(""), &manager).unwrap().tenant, own);
        assert_eq!(parse_query(&request("acme"), &manager).unwrap().tenant, own);
        let denied = parse_query(&request("globex"), &manager).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(errors::reason_of(&denied).as_deref(), Some("OTHER_TENANT"));
    }

    #[test]
    fn agents_and_callers_without_roles_are_denied_even_past_the_table() {
        for roles in [&[Role::Agent][..], &[]] {
            let denied = parse_query(&request(""), &caller("acme", roles)).unwrap_err();
            assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        }
    }

    #[test]
    fn bad_input_names_its_field() {
        let service = caller("acme", &[Role::Service]);
        let cases = [
            (ReadEventsRequest { from_position: -1, ..Default::default() }, "from_position"),
            (ReadEventsRequest { page_size: -5, ..Default::default() }, "page_size"),
            (ReadEventsRequest { page_size: 1001, ..Default::default() }, "page_size"),
            (request("Not A Tenant"), "tenant"),
            (ReadEventsRequest { event_type: "dw..v1".into(), ..Default::default() }, "event_type"),
            (ReadEventsRequest { event_type: "a".repeat(201), ..Default::default() }, "event_type"),
            (ReadEventsRequest { event_type: "dw.v1.Task\u{7}".into(), ..Default::default() }, "event_type"),
            (ReadEventsRequest { stream_id: "task".into(), ..Default::default() }, "stream_id"),
            (ReadEventsRequest { stream_id: "task:".into(), ..Default::default() }, "stream_id"),
            (ReadEventsRequest { stream_id: "Task:acme:1".into(), ..Default::default() }, "stream_id"),
            (ReadEventsRequest { stream_id: "task:acme 1".into(), ..Default::default() }, "stream_id"),
            (ReadEventsRequest { stream_id: format!("task:{}", "x".repeat(300)), ..Default::default() }, "stream_id"),
        ];
        for (request, field) in cases {
            let refused = parse_query(&request, &service).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{request:?}");
            assert_eq!(errors::violated_fields(&refused), [field], "{request:?}");
        }
    }

    #[test]
    fn a_service_that_leaves_the_event_log_out_does_not_start() {
        assert!(check_served(&["dw.notifications.v1.WebhookService", SERVICE_NAME]).is_ok());
        let refused = check_served(&["dw.notifications.v1.WebhookService"]).unwrap_err();
        assert!(refused.contains("READ_EVENTS"), "{refused}");
    }

    #[test]
    fn a_well_formed_request_becomes_a_query() {
        let request = ReadEventsRequest {
            from_position: 42,
            tenant: String::new(),
            event_type: "dw.distribution.v1.TaskAssigned".into(),
            stream_id: "optout:acme:+5511912345678".into(),
            page_size: 0,
            newest_first: true,
        };
        let query = parse_query(&request, &caller("acme", &[Role::Service])).unwrap();
        assert_eq!(query.limit, DEFAULT_PAGE_SIZE);
        assert_eq!(query.direction, Direction::Backward);
        assert_eq!(query.event_type.as_deref(), Some("dw.distribution.v1.TaskAssigned"));
        assert_eq!(query.stream_id.as_deref(), Some("optout:acme:+5511912345678"));
    }
}
