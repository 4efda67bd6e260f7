//! `NotificationService`: the log (paginated, filtered) and the agents' live streams.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use dw_auth::Role;
use dw_grpc_kit::command::command_context;
use dw_grpc_kit::errors::{self, to_status};
use dw_grpc_kit::{principal, require_role};
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::notification_service_server::NotificationService;
use dw_proto::time::timestamp;
use sqlx::postgres::{PgListener, PgPool, PgRow};
use sqlx::{QueryBuilder, Row};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::app;

use crate::projections::{CHANNEL, channel_name, status_from_name};

/// The most kept notifications a new `Subscribe` may ask to receive first (`backlog`).
const MAX_BACKLOG: u32 = 100;

use dw_grpc_kit::errors::db_status as db;

/// Wakes subscribers when their agent has something new (one listener per replica).
#[derive(Clone)]
pub struct Notifier {
    sender: broadcast::Sender<String>,
}

impl Notifier {
    pub fn start(pool: PgPool, tasks: &tokio_util::task::TaskTracker, cancel: CancellationToken) -> Self {
        let (sender, _) = broadcast::channel(1024);
        let notifier = Self { sender: sender.clone() };
        tasks.spawn(async move {
            while !cancel.is_cancelled() {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(%error, "notification listener unavailable");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if listener.listen(CHANNEL).await.is_err() {
                    continue;
                }
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        received = listener.recv() => match received {
                            Ok(notification) => { let _ = sender.send(notification.payload().to_owned()); }
                            Err(_) => break,
                        }
                    }
                }
            }
        });
        notifier
    }
}

pub struct NotificationGrpc {
    pool: PgPool,
    notifier: Notifier,
    cancel: CancellationToken,
    vapid_public_key: String,
    push_allowed_hosts: Vec<String>,
}

impl NotificationGrpc {
    pub fn new(pool: PgPool, notifier: Notifier, cancel: CancellationToken, push: &crate::push::PushConfig) -> Self {
        Self {
            pool,
            notifier,
            cancel,
            vapid_public_key: crate::push::public_key(&push.vapid),
            push_allowed_hosts: push.allowed_hosts.clone(),
        }
    }
}

fn single_from_row(row: &PgRow) -> Result<pb::SingleNotification, sqlx::Error> {
    let id: uuid::Uuid = row.try_get("message_id")?;
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    let requested_at: DateTime<Utc> = row.try_get("requested_at")?;
    let updated_at: DateTime<Utc> = row.try_get("updated_at")?;
    let timeline: serde_json::Value = row.try_get("timeline")?;
    let timeline = timeline
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| pb::StatusChange {
            status: status_from_name(entry["status"].as_str().unwrap_or_default()) as i32,
            at: entry["at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| timestamp(t.with_timezone(&Utc))),
            detail: entry["detail"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    let channel = match channel.as_str() {
        "whatsapp" => dw_proto::messaging::v1::Channel::Whatsapp,
        "sms" => dw_proto::messaging::v1::Channel::Sms,
        _ => dw_proto::messaging::v1::Channel::Unspecified,
    };
    Ok(pb::SingleNotification {
        message_id: id.to_string(),
        channel: channel as i32,
        status: status_from_name(&status) as i32,
        template_id: row.try_get("template_id")?,
        template_name: row.try_get("template_name")?,
        agent_id: row.try_get("agent_id")?,
        department_id: row.try_get::<Option<String>, _>("department_id")?.unwrap_or_default(),
        recipient_phone: row.try_get("recipient_phone")?,
        rendered_body: row.try_get("rendered_body")?,
        requested_at: Some(timestamp(requested_at)),
        updated_at: Some(timestamp(updated_at)),
        failure_code: row.try_get::<Option<String>, _>("failure_code")?.unwrap_or_default(),
        failure_reason: row.try_get::<Option<String>, _>("failure_reason")?.unwrap_or_default(),
        timeline,
    })
}

fn notification_from_row(row: &PgRow) -> Result<pb::AgentNotification, sqlx::Error> {
    let seq: i64 = row.try_get("seq")?;
    let kind: String = row.try_get("kind")?;
    let created_at: DateTime<Utc> = row.try_get("created_at")?;
    let kind = match kind.as_str() {
        "client_message" => pb::agent_notification::Kind::ClientMessage,
        "task_assigned" => pb::agent_notification::Kind::TaskAssigned,
        "send_failed" => pb::agent_notification::Kind::SendFailed,
        _ => pb::agent_notification::Kind::Unspecified,
    };
    Ok(pb::AgentNotification {
        sequence: seq.max(0) as u64,
        kind: kind as i32,
        at: Some(timestamp(created_at)),
        task_id: row.try_get::<Option<uuid::Uuid>, _>("task_id")?.map(|t| t.to_string()).unwrap_or_default(),
        message_id: row.try_get::<Option<uuid::Uuid>, _>("message_id")?.map(|m| m.to_string()).unwrap_or_default(),
        title: row.try_get("title")?,
        body: row.try_get("body")?,
    })
}

const COLUMNS: &str = "message_id, channel, status, template_id, template_name, agent_id, department_id, recipient_phone, \
     rendered_body, failure_code, failure_reason, timeline, requested_at, updated_at";

fn time_field(field: &str, ts: Option<&prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, Status> {
    ts.map(|t| dw_proto::time::datetime(t).ok_or_else(|| errors::invalid_argument(field, "not a valid timestamp")))
        .transpose()
}

#[tonic::async_trait]
impl NotificationService for NotificationGrpc {
    #[instrument(skip_all, fields(rpc = "ListNotifications"))]
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let principal = principal(&request)?;
        let tenant = principal.tenant().as_str().to_owned();
        let privileged = principal.has_role(Role::Manager) || principal.has_role(Role::Service);
        let body = request.get_ref();
        let limit = match body.page_size {
            0 => 50,
            size @ 1..=200 => i64::from(size),
            _ => return Err(errors::invalid_argument("page_size", "must be between 1 and 200")),
        };
        let mut query = QueryBuilder::new(format!("SELECT {COLUMNS} FROM single_notifications WHERE tenant_id = "));
        query.push_bind(tenant.clone());
        if !privileged {
            require_role(&principal, &[Role::Agent])?;
            let allowed: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM agent_permissions WHERE tenant_id = $1 AND agent_id = $2 AND permission = 'notifications.view'",
            )
            .bind(&tenant)
            .bind(principal.subject())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            if allowed.is_none() {
                return Err(errors::permission_denied(
                    "PERMISSION_REQUIRED",
                    "the caller lacks permission notifications.view",
                ));
            }
            // An agent sees their own sends.
            query.push(" AND agent_id = ").push_bind(principal.subject().to_owned());
        }
        if body.channel != 0 {
            let name = channel_name(body.channel);
            if name == "unspecified" {
                return Err(errors::invalid_argument("channel", "WHATSAPP or SMS"));
            }
            query.push(" AND channel = ").push_bind(name);
        }
        if body.status != 0 {
            let status = dw_proto::messaging::v1::MessageStatus::try_from(body.status)
                .map_err(|_| errors::invalid_argument("status", "unknown status"))?;
            query
                .push(" AND status = ")
                .push_bind(status.as_str_name().trim_start_matches("MESSAGE_STATUS_").to_lowercase());
        }
        for (column, value) in [
            ("agent_id", &body.agent_id),
            ("template_id", &body.template_id),
            ("department_id", &body.department_id),
            ("recipient_phone", &body.recipient_phone),
        ] {
            if !value.is_empty() {
                query.push(format!(" AND {column} = ")).push_bind(value.clone());
            }
        }
        if let Some(from) = time_field("from", body.from.as_ref())? {
            query.push(" AND requested_at >= ").push_bind(from);
        }
        if let Some(to) = time_field("to", body.to.as_ref())? {
            query.push(" AND requested_at < ").push_bind(to);
        }
        if !body.page_token.is_empty() {
            let (at, id) = URL_SAFE_NO_PAD
                .decode(&body.page_token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|t| {
                    let (micros, id) = t.split_once('|')?;
                    Some((DateTime::from_timestamp_micros(micros.parse().ok()?)?, uuid::Uuid::parse_str(id).ok()?))
                })
                .ok_or_else(|| errors::invalid_argument("page_token", "not a token returned by this call"))?;
            query.push(" AND (requested_at, message_id) < (").push_bind(at).push(", ").push_bind(id).push(")");
        }
        query.push(" ORDER BY requested_at DESC, message_id DESC LIMIT ").push_bind(limit + 1);
        let rows = query.build().fetch_all(&self.pool).await.map_err(db)?;
        let mut notifications = rows.iter().map(single_from_row).collect::<Result<Vec<_>, _>>().map_err(db)?;
        let next_page_token = if notifications.len() as i64 > limit {
            notifications.truncate(limit as usize);
            notifications
                .last()
                .and_then(|n| {
                    let at = n.requested_at.as_ref().and_then(dw_proto::time::datetime)?;
                    Some(URL_SAFE_NO_PAD.encode(format!("{}|{}", at.timestamp_micros(), n.message_id)))
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListNotificationsResponse { notifications, next_page_token }))
    }

    #[instrument(skip_all, fields(rpc = "GetNotification"))]
    async fn get_notification(
        &self,
        request: Request<pb::GetNotificationRequest>,
    ) -> Result<Response<pb::SingleNotification>, Status> {
        let principal = principal(&request)?;
        let id = uuid::Uuid::parse_str(&request.get_ref().message_id)
            .map_err(|_| errors::invalid_argument("message_id", "must be a message id (UUID)"))?;
        let sql = format!("SELECT {COLUMNS} FROM single_notifications WHERE tenant_id = $1 AND message_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(principal.tenant().as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let privileged = principal.has_role(Role::Manager) || principal.has_role(Role::Service);
        let found = row.as_ref().map(single_from_row).transpose().map_err(db)?;
        let found = found.filter(|n| privileged || n.agent_id == principal.subject());
        found
            .map(Response::new)
            .ok_or_else(|| errors::not_found("NOTIFICATION_NOT_FOUND", format!("notification {id} not found")))
    }

    type SubscribeStream = tokio_stream::wrappers::ReceiverStream<Result<pb::AgentNotification, Status>>;

    #[instrument(skip_all, fields(rpc = "Subscribe"))]
    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Agent])?;
        let tenant = principal.tenant().as_str().to_owned();
        let agent = principal.subject().to_owned();
        let mut wake = self.notifier.sender.subscribe();
        let backlog = request.get_ref().backlog;
        if backlog > MAX_BACKLOG {
            return Err(errors::invalid_argument("backlog", format!("at most {MAX_BACKLOG}")));
        }
        let mut after = i64::try_from(request.get_ref().after_sequence).unwrap_or(i64::MAX);
        if after == 0 {
            let last: i64 =
                sqlx::query_scalar("SELECT last_seq FROM agent_cursors WHERE tenant_id = $1 AND agent_id = $2")
                    .bind(&tenant)
                    .bind(&agent)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?
                    .unwrap_or(0);
            after = (last - i64::from(backlog)).max(0);
        }
        let (sender, receiver) = mpsc::channel(256);
        let pool = self.pool.clone();
        let cancel = self.cancel.clone();
        let key = format!("{tenant}\t{agent}");
        tokio::spawn(async move {
            loop {
                let rows = sqlx::query(
                    "SELECT seq, kind, task_id, message_id, title, body, created_at FROM agent_notifications \
                     WHERE tenant_id = $1 AND agent_id = $2 AND seq > $3 ORDER BY seq LIMIT 500",
                )
                .bind(&tenant)
                .bind(&agent)
                .bind(after)
                .fetch_all(&pool)
                .await;
                match rows {
                    Ok(rows) => {
                        for row in &rows {
                            let Ok(notification) = notification_from_row(row) else { continue };
                            after = after.max(i64::try_from(notification.sequence).unwrap_or(after));
                            if sender.send(Ok(notification)).await.is_err() {
                                return;
                            }
                        }
                        if rows.len() == 500 {
                            continue;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "subscription read failed"),
                }
                // Until our agent has news (or a slow poll, in case a wake-up was missed).
                let deadline = tokio::time::sleep(Duration::from_secs(2));
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = sender.closed() => return,
                        () = &mut deadline => break,
                        received = wake.recv() => match received {
                            Ok(payload) if payload == key => break,
                            Ok(_) => {}
                            Err(broadcast::error::RecvError::Lagged(_)) => break,
                            Err(broadcast::error::RecvError::Closed) => return,
                        }
                    }
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(receiver)))
    }

    #[instrument(skip_all, fields(rpc = "EnableBrowserNotifications"))]
    async fn enable_browser_notifications(
        &self,
        request: Request<pb::EnableBrowserNotificationsRequest>,
    ) -> Result<Response<pb::BrowserSubscription>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Agent])?;
        let body = request.get_ref();
        let operation = "dw.notifications.v1.NotificationService/EnableBrowserNotifications";
        let ctx = command_context(&request, &principal, &body.request_id, operation)?;
        let endpoint = body.endpoint.trim();
        let https = endpoint.starts_with("https://");
        let destination_ok = crate::webhooks::check_destination(endpoint, &self.push_allowed_hosts).await.is_ok();
        let host_allowed = reqwest::Url::parse(endpoint)
            .ok()
            .and_then(|url| {
                url.host_str().map(|h| self.push_allowed_hosts.iter().any(|a| a == h.trim_matches(['[', ']'])))
            })
            .unwrap_or(false);
        if endpoint.len() > 2048 || !destination_ok || !(https || host_allowed) {
            return Err(errors::invalid_argument("endpoint", "must be the https URL of a public push service"));
        }
        crate::push::parse_keys(&body.p256dh, &body.auth)
            .map_err(|(field, reason)| errors::invalid_argument(field, reason))?;
        let enable = app::EnableBrowser {
            tenant: &ctx.tenant,
            agent: principal.subject(),
            endpoint: endpoint.to_owned(),
            p256dh: body.p256dh.trim().to_owned(),
            auth: body.auth.trim().to_owned(),
        };
        Ok(Response::new(app::execute(&self.pool, &ctx, &enable).await.map_err(to_status)?))
    }

    #[instrument(skip_all, fields(rpc = "DisableBrowserNotifications"))]
    async fn disable_browser_notifications(
        &self,
        request: Request<pb::DisableBrowserNotificationsRequest>,
    ) -> Result<Response<pb::DisableBrowserNotificationsResponse>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Agent])?;
        let body = request.get_ref();
        let operation = "dw.notifications.v1.NotificationService/DisableBrowserNotifications";
        let ctx = command_context(&request, &principal, &body.request_id, operation)?;
        let disable = app::DisableBrowser {
            tenant: &ctx.tenant,
            agent: principal.subject(),
            endpoint: body.endpoint.trim().to_owned(),
        };
        Ok(Response::new(app::execute(&self.pool, &ctx, &disable).await.map_err(to_status)?))
    }

    async fn get_vapid_public_key(
        &self,
        request: Request<pb::GetVapidPublicKeyRequest>,
    ) -> Result<Response<pb::GetVapidPublicKeyResponse>, Status> {
        principal(&request)?;
        Ok(Response::new(pb::GetVapidPublicKeyResponse { public_key: self.vapid_public_key.clone() }))
    }
}
