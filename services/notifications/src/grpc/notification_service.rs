//! `NotificationService`: the single-notifications log (filtered, paged), the agents' live
//! streams, their browser subscriptions and the VAPID key browsers subscribe with.

use dw_auth::Role;
use dw_grpc_kit::errors::{self, db_status, to_status};
use dw_grpc_kit::{principal, require_role};
use dw_proto::messaging::v1::MessageStatus;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::notification_service_server::NotificationService;
use dw_tenant_time::{DateRange, InstantRange};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{agent_command, page_limit, sees_every_agent, time_field};
use crate::app::destination::DestinationPolicy;
use crate::app::notifier::{Notifier, follow};
use crate::app::push_delivery::PushConfig;
use crate::app::{self, DisableBrowser, EnableBrowser};
use crate::domain::notification::{MAX_BACKLOG, backlog_start, channel_name, status_name};
use crate::domain::paging::PageToken;
use crate::domain::push::{endpoint_allowed, parse_keys, public_key};
use crate::projections::queries::notifications::{LogFilter, get_log_entry, last_sequence, list_log, may_view_log};
use crate::projections::tenants;

pub struct NotificationGrpc {
    pool: PgPool,
    notifier: Notifier,
    cancel: CancellationToken,
    vapid_public_key: String,
    push_destinations: DestinationPolicy,
}

impl NotificationGrpc {
    /// Browsers register push endpoints where `push_destinations` admits.
    pub fn new(
        pool: PgPool,
        notifier: Notifier,
        cancel: CancellationToken,
        push: &PushConfig,
        push_destinations: DestinationPolicy,
    ) -> Self {
        Self { pool, notifier, cancel, vapid_public_key: public_key(&push.vapid), push_destinations }
    }
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
        let body = request.get_ref();
        let limit = page_limit(body.page_size)?;
        let own_agent = if sees_every_agent(&principal) {
            None
        } else {
            require_role(&principal, &[Role::Agent])?;
            if !may_view_log(&self.pool, principal.tenant(), principal.subject()).await.map_err(db_status)? {
                return Err(errors::permission_denied(
                    "PERMISSION_REQUIRED",
                    "the caller lacks permission notifications.view",
                ));
            }
            // An agent sees their own sends.
            Some(principal.subject().to_owned())
        };
        let channel = match body.channel {
            0 => None,
            channel => match channel_name(channel) {
                "unspecified" => return Err(errors::invalid_argument("channel", "WHATSAPP or SMS")),
                name => Some(name),
            },
        };
        let status = match body.status {
            0 => None,
            status => Some(status_name(
                MessageStatus::try_from(status).map_err(|_| errors::invalid_argument("status", "unknown status"))?,
            )),
        };
        let sent =
            InstantRange { from: time_field("from", body.from.as_ref())?, to: time_field("to", body.to.as_ref())? };
        let dates = DateRange::parse("from_date", &body.from_date, "to_date", &body.to_date)
            .map_err(|e| errors::invalid_argument(e.field, e.message))?;
        // Dates are the tenant's: its zone turns them into instants.
        let sent = if dates.is_open() {
            sent
        } else {
            let zone = tenants::time_zone(&self.pool, &tenant).await.map_err(db_status)?;
            sent.intersect(zone.instants_of(dates))
        };
        let after = match body.page_token.as_str() {
            "" => None,
            token => Some(PageToken::decode(token).map_err(|reason| errors::invalid_argument("page_token", reason))?),
        };
        let filter = LogFilter {
            tenant,
            own_agent,
            channel,
            status,
            agent_id: body.agent_id.clone(),
            template_id: body.template_id.clone(),
            department_id: body.department_id.clone(),
            recipient_phone: body.recipient_phone.clone(),
            from: sent.from,
            to: sent.to,
            after,
            limit,
        };
        let page = list_log(&self.pool, &filter).await.map_err(db_status)?;
        let next_page_token = page.next.map(|token| token.encode()).unwrap_or_default();
        Ok(Response::new(pb::ListNotificationsResponse { notifications: page.notifications, next_page_token }))
    }

    #[instrument(skip_all, fields(rpc = "GetNotification"))]
    async fn get_notification(
        &self,
        request: Request<pb::GetNotificationRequest>,
    ) -> Result<Response<pb::SingleNotification>, Status> {
        let principal = principal(&request)?;
        let id = uuid::Uuid::parse_str(&request.get_ref().message_id)
            .map_err(|_| errors::invalid_argument("message_id", "must be a message id (UUID)"))?;
        let found = get_log_entry(&self.pool, principal.tenant().as_str(), id).await.map_err(db_status)?;
        let visible = found.filter(|n| sees_every_agent(&principal) || n.agent_id == principal.subject());
        visible.map(Response::new).ok_or_else(|| {
            let resource = errors::Resource::of::<pb::SingleNotification>(id.to_string());
            errors::not_found("NOTIFICATION_NOT_FOUND", &resource, format!("notification {id} not found"))
        })
    }

    type SubscribeStream = crate::app::notifier::Subscription;

    #[instrument(skip_all, fields(rpc = "Subscribe"))]
    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Agent])?;
        let tenant = principal.tenant().as_str().to_owned();
        let agent = principal.subject().to_owned();
        let backlog = request.get_ref().backlog;
        if backlog > MAX_BACKLOG {
            return Err(errors::invalid_argument("backlog", format!("at most {MAX_BACKLOG}")));
        }
        let wake = self.notifier.wake_ups(principal.tenant(), &agent)?;
        let mut after = i64::try_from(request.get_ref().after_sequence).unwrap_or(i64::MAX);
        if after == 0 {
            let last = last_sequence(&self.pool, &tenant, &agent).await.map_err(db_status)?;
            after = backlog_start(last, backlog);
        }
        Ok(Response::new(follow(self.pool.clone(), wake, tenant, agent, after, self.cancel.clone())))
    }

    #[instrument(skip_all, fields(rpc = "EnableBrowserNotifications"))]
    async fn enable_browser_notifications(
        &self,
        request: Request<pb::EnableBrowserNotificationsRequest>,
    ) -> Result<Response<pb::BrowserSubscription>, Status> {
        let body = request.get_ref();
        let operation = "dw.notifications.v1.NotificationService/EnableBrowserNotifications";
        let ctx = agent_command(&request, &body.request_id, operation)?;
        let endpoint = body.endpoint.trim();
        let refused = |reason: String| errors::invalid_argument("endpoint", reason);
        if !endpoint_allowed(endpoint, self.push_destinations.allowed_hosts()) {
            return Err(refused("must be the https URL of a public push service".to_owned()));
        }
        self.push_destinations
            .admit(endpoint)
            .await
            .map_err(|reason| refused(format!("must be the https URL of a public push service: {reason}")))?;
        parse_keys(&body.p256dh, &body.auth).map_err(|(field, reason)| errors::invalid_argument(field, reason))?;
        let enable = EnableBrowser {
            tenant: &ctx.tenant,
            agent: &ctx.actor,
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
        let body = request.get_ref();
        let operation = "dw.notifications.v1.NotificationService/DisableBrowserNotifications";
        let ctx = agent_command(&request, &body.request_id, operation)?;
        let disable =
            DisableBrowser { tenant: &ctx.tenant, agent: &ctx.actor, endpoint: body.endpoint.trim().to_owned() };
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
