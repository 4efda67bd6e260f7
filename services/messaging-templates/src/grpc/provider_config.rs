//! `ProviderConfigService`: a manager sets and reads the provider accounts of their own tenant
//! (the tenant comes from the token). Secrets go in and never come out.

use dw_auth::Role;
use dw_grpc_kit::errors::{self, Violation};
use dw_grpc_kit::{principal, require_role};
use dw_proto::messaging::v1 as pb;
use dw_proto::messaging::v1::provider_config_service_server::ProviderConfigService;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{command_context, db_status, to_status};
use crate::app::provider_config::ProviderAccounts;
use crate::domain::provider_config::{
    AccountSid, Change, PhoneNumberId, ProviderChange, ProviderSecret, SmsAccount, WhatsappAccount,
};
use crate::domain::send_webhook::AllowedHosts;

pub struct ProviderConfigGrpc {
    accounts: ProviderAccounts,
    /// Hosts a tenant may allow for its sends' webhooks although they are local.
    local_webhook_hosts: Vec<String>,
}

impl ProviderConfigGrpc {
    pub fn new(accounts: ProviderAccounts, local_webhook_hosts: Vec<String>) -> Self {
        Self { accounts, local_webhook_hosts }
    }
}

/// Parses `value` into `violations` under `field` (the reason never repeats the value).
fn field<T>(
    violations: &mut Vec<Violation>,
    field: &str,
    value: &str,
    parse: impl Fn(&str) -> Result<T, &'static str>,
) -> Option<T> {
    parse(value).map_err(|reason| violations.push((field.to_owned(), reason.to_owned()))).ok()
}

fn whatsapp(violations: &mut Vec<Violation>, settings: &pb::WhatsappProviderSettings) -> Option<WhatsappAccount> {
    let phone_number_id =
        field(violations, "whatsapp.phone_number_id", &settings.phone_number_id, PhoneNumberId::parse);
    let app_secret = field(violations, "whatsapp.app_secret", &settings.app_secret, ProviderSecret::parse);
    let verify_token = field(violations, "whatsapp.verify_token", &settings.verify_token, ProviderSecret::parse);
    Some(WhatsappAccount { phone_number_id: phone_number_id?, app_secret: app_secret?, verify_token: verify_token? })
}

fn sms(violations: &mut Vec<Violation>, settings: &pb::SmsProviderSettings) -> Option<SmsAccount> {
    let account_sid = field(violations, "sms.account_sid", &settings.account_sid, AccountSid::parse);
    let auth_token = field(violations, "sms.auth_token", &settings.auth_token, ProviderSecret::parse);
    Some(SmsAccount { account_sid: account_sid?, auth_token: auth_token? })
}

/// One channel's change: its settings, its removal (not both), or nothing.
fn change<S, T>(
    violations: &mut Vec<Violation>,
    settings: Option<&S>,
    remove: bool,
    remove_field: &str,
    parse: impl Fn(&mut Vec<Violation>, &S) -> Option<T>,
) -> Option<Change<T>> {
    match (settings, remove) {
        (Some(_), true) => {
            violations.push((remove_field.to_owned(), "cannot remove the settings the request also sets".to_owned()));
            None
        }
        (Some(settings), false) => parse(violations, settings).map(Change::Set),
        (None, true) => Some(Change::Remove),
        (None, false) => Some(Change::Keep),
    }
}

/// The request's change; `local_webhook_hosts`: what the deployment lets a tenant allow for its
/// sends' webhooks although it is local.
pub fn parse_change(
    body: &pb::SetProviderConfigRequest,
    local_webhook_hosts: &[String],
) -> Result<ProviderChange, Status> {
    let mut violations = Vec::new();
    let whatsapp = change(&mut violations, body.whatsapp.as_ref(), body.remove_whatsapp, "remove_whatsapp", whatsapp);
    let sms = change(&mut violations, body.sms.as_ref(), body.remove_sms, "remove_sms", sms);
    let send_webhooks = match &body.send_webhooks {
        Some(policy) => AllowedHosts::parse(&policy.allowed_hosts, local_webhook_hosts)
            .map(Some)
            .map_err(|reason| violations.push(("send_webhooks.allowed_hosts".to_owned(), reason)))
            .ok(),
        None => Some(None),
    };
    match (whatsapp, sms, send_webhooks) {
        (Some(whatsapp), Some(sms), Some(send_webhooks)) if violations.is_empty() => {
            if whatsapp.is_keep() && sms.is_keep() && send_webhooks.is_none() {
                return Err(errors::invalid_argument(
                    "whatsapp",
                    "nothing to change: give whatsapp or sms settings, remove one, or give send_webhooks",
                ));
            }
            Ok(ProviderChange { whatsapp, sms, send_webhooks })
        }
        _ => Err(errors::invalid_arguments(violations)),
    }
}

#[tonic::async_trait]
impl ProviderConfigService for ProviderConfigGrpc {
    #[instrument(skip_all, fields(rpc = "SetProviderConfig"))]
    async fn set_provider_config(
        &self,
        request: Request<pb::SetProviderConfigRequest>,
    ) -> Result<Response<pb::ProviderConfig>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let body = request.get_ref();
        let change = parse_change(body, &self.local_webhook_hosts)?;
        let mut ctx = command_context(
            &request,
            &principal,
            &body.request_id,
            "dw.messaging.v1.ProviderConfigService/SetProviderConfig",
        )?;
        // The kernel's plain SHA-256 of a body holding secrets would let a reader of the
        // idempotency table test guesses of them: this request's hash is keyed.
        ctx.request_hash = self.accounts.request_hash(body);
        let config = self.accounts.set(&ctx, &change).await.map_err(to_status)?;
        tracing::info!(
            tenant = %ctx.tenant,
            version = config.version,
            whatsapp = change.whatsapp.kind(),
            sms = change.sms.kind(),
            send_webhooks = if change.send_webhooks.is_some() { "set" } else { "kept" },
            "provider accounts changed"
        );
        Ok(Response::new(config))
    }

    #[instrument(skip_all, fields(rpc = "GetProviderConfig"))]
    async fn get_provider_config(
        &self,
        request: Request<pb::GetProviderConfigRequest>,
    ) -> Result<Response<pb::ProviderConfig>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let config = self.accounts.view(principal.tenant()).await.map_err(db_status)?;
        Ok(Response::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn whatsapp_settings() -> pb::WhatsappProviderSettings {
        pb::WhatsappProviderSettings {
            phone_number_id: "1055".into(),
            app_secret: "app-secret-1".into(),
            verify_token: "verify-token-1".into(),
        }
    }

    #[test]
    fn a_request_sets_removes_or_keeps_each_channel() {
        let both = pb::SetProviderConfigRequest {
            whatsapp: Some(whatsapp_settings()),
            sms: Some(pb::SmsProviderSettings { account_sid: SID.into(), auth_token: "auth-token-1".into() }),
            ..Default::default()
        };
        let change = parse_change(&both, &[]).unwrap();
        assert!(matches!(change.whatsapp, Change::Set(ref a) if a.phone_number_id.as_str() == "1055"));
        assert!(matches!(change.sms, Change::Set(ref a) if a.account_sid.as_str() == SID));
        let remove = pb::SetProviderConfigRequest { remove_sms: true, ..Default::default() };
        let change = parse_change(&remove, &[]).unwrap();
        assert!(matches!((change.whatsapp, change.sms), (Change::Keep, Change::Remove)));
    }

    #[test]
    fn bad_settings_name_every_field_without_repeating_secrets() {
        let request = pb::SetProviderConfigRequest {
            whatsapp: Some(pb::WhatsappProviderSettings {
                phone_number_id: "+55 11".into(),
                app_secret: "short".into(),
                verify_token: "ok-verify-token".into(),
            }),
            sms: Some(pb::SmsProviderSettings { account_sid: "AC123".into(), auth_token: "tok\u{7}en-value".into() }),
            ..Default::default()
        };
        let status = parse_change(&request, &[]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let fields = errors::violated_fields(&status);
        assert_eq!(fields, ["whatsapp.phone_number_id", "whatsapp.app_secret", "sms.account_sid", "sms.auth_token"]);
        let printed = format!("{status:?}");
        assert!(!printed.contains("short") && !printed.contains("en-value"), "{printed}");

        let nothing = parse_change(&pb::SetProviderConfigRequest::default(), &[]).unwrap_err();
        assert_eq!(errors::violated_fields(&nothing), ["whatsapp"]);
        let contradictory = pb::SetProviderConfigRequest {
            whatsapp: Some(whatsapp_settings()),
            remove_whatsapp: true,
            ..Default::default()
        };
        assert_eq!(errors::violated_fields(&parse_change(&contradictory, &[]).unwrap_err()), ["remove_whatsapp"]);
        let missing = pb::SetProviderConfigRequest { sms: Some(Default::default()), ..Default::default() };
        assert_eq!(
            errors::violated_fields(&parse_change(&missing, &[]).unwrap_err()),
            ["sms.account_sid", "sms.auth_token"]
        );
    }
}
