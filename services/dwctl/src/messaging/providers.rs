//! `dwctl providers …`: the tenant's provider accounts (ProviderConfigService; role `manager`) —
//! the ids its webhooks must name and the secrets they are verified with. Secrets go to the
//! service and are never printed; the answers only say whether each is set.

use anyhow::Result;
use chrono::{DateTime, Utc};
use dw_proto::messaging::v1::provider_config_service_client::ProviderConfigServiceClient;
use dw_proto::messaging::v1::{
    GetProviderConfigRequest, ProviderConfig, SendWebhookPolicy, SetProviderConfigRequest, SmsProviderSettings,
    WhatsappProviderSettings,
};

use crate::cli::{ProvidersCommand, SetProvidersArgs};
use crate::failure::UsageError;
use crate::output::{self as out, Printer, names};
use crate::rpc::Rpc;

/// Usage errors caught before connecting.
pub fn validate(command: &ProvidersCommand) -> Result<()> {
    match command {
        ProvidersCommand::Set(args) => set_request(String::new(), args).map(drop),
        ProvidersCommand::Get => Ok(()),
    }
}

pub async fn run(command: ProvidersCommand, rpc: &Rpc, printer: &Printer) -> Result<()> {
    let mut client = ProviderConfigServiceClient::new(rpc.channel.clone());
    let now = Utc::now();
    let config = match command {
        ProvidersCommand::Set(args) => {
            let request = set_request(rpc.request_id(), &args)?;
            client.set_provider_config(rpc.request(request)).await?.into_inner()
        }
        ProvidersCommand::Get => {
            client.get_provider_config(rpc.request(GetProviderConfigRequest {})).await?.into_inner()
        }
    };
    printer.emit(names::PROVIDER_CONFIG, &config, |c| config_text(c, now))
}

fn missing(option: &str, with: &str) -> anyhow::Error {
    UsageError(format!("{with} needs {option} (or its environment variable)")).into()
}

/// The request of `providers set`: a channel's account is sent when its id is given, with its
/// secrets (which may come from the environment, and are ignored without the id).
pub fn set_request(request_id: String, args: &SetProvidersArgs) -> Result<SetProviderConfigRequest> {
    let whatsapp = match &args.whatsapp_phone_number_id {
        None => None,
        Some(phone_number_id) => {
            let with = "--whatsapp-phone-number-id";
            let app_secret = args.whatsapp_app_secret.clone().ok_or_else(|| missing("--whatsapp-app-secret", with))?;
            let verify_token =
                args.whatsapp_verify_token.clone().ok_or_else(|| missing("--whatsapp-verify-token", with))?;
            Some(WhatsappProviderSettings { phone_number_id: phone_number_id.clone(), app_secret, verify_token })
        }
    };
    let sms = match &args.sms_account_sid {
        None => None,
        Some(account_sid) => {
            let auth_token =
                args.sms_auth_token.clone().ok_or_else(|| missing("--sms-auth-token", "--sms-account-sid"))?;
            Some(SmsProviderSettings { account_sid: account_sid.clone(), auth_token })
        }
    };
    let send_webhooks = (!args.send_webhook_hosts.is_empty() || args.no_send_webhook_hosts)
        .then(|| SendWebhookPolicy { allowed_hosts: args.send_webhook_hosts.clone() });
    if whatsapp.is_none() && sms.is_none() && !args.remove_whatsapp && !args.remove_sms && send_webhooks.is_none() {
        return Err(UsageError(
            "nothing to set: give --whatsapp-phone-number-id, --sms-account-sid, --remove-whatsapp, --remove-sms, \
             --send-webhook-host or --no-send-webhook-hosts"
                .to_owned(),
        )
        .into());
    }
    Ok(SetProviderConfigRequest {
        request_id,
        whatsapp,
        sms,
        remove_whatsapp: args.remove_whatsapp,
        remove_sms: args.remove_sms,
        send_webhooks,
    })
}

fn set_or_not(set: bool) -> &'static str {
    if set { "set" } else { "not set" }
}

pub fn config_text(config: &ProviderConfig, now: DateTime<Utc>) -> String {
    let whatsapp = match &config.whatsapp {
        Some(w) => format!(
            "phone number id {}, app secret {}, verify token {}",
            w.phone_number_id,
            set_or_not(w.has_app_secret),
            set_or_not(w.has_verify_token)
        ),
        None => "- (its webhooks are refused)".to_owned(),
    };
    let sms = match &config.sms {
        Some(s) => format!("account {}, auth token {}", s.account_sid, set_or_not(s.has_auth_token)),
        None => "- (its callbacks are refused)".to_owned(),
    };
    let updated = match config.version {
        0 => "never".to_owned(),
        _ => format!("{} by {}", out::timestamp_ago(config.updated_at.as_ref(), now), out::or_dash(&config.updated_by)),
    };
    let hosts = config.send_webhooks.as_ref().map(|p| p.allowed_hosts.join(", ")).unwrap_or_default();
    let send_webhooks = if hosts.is_empty() { "- (a send with a webhook is refused)".to_owned() } else { hosts };
    out::fields(&[
        ("whatsapp", whatsapp),
        ("sms", sms),
        ("send webhooks", send_webhooks),
        ("version", config.version.to_string()),
        ("updated", updated),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::testing::{parse, ts};
    use dw_proto::messaging::v1::WhatsappProviderStatus;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn set_args(args: &[&str]) -> Result<SetProvidersArgs, clap::Error> {
        let argv: Vec<&str> = ["providers", "set"].into_iter().chain(args.iter().copied()).collect();
        match parse(&argv)?.command {
            Command::Providers(ProvidersCommand::Set(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn set_sends_each_channel_given_with_its_secrets() {
        let args = set_args(&[
            "--whatsapp-phone-number-id",
            "1055",
            "--whatsapp-app-secret",
            "app-secret-1",
            "--whatsapp-verify-token",
            "verify-1",
            "--sms-account-sid",
            SID,
            "--sms-auth-token",
            "auth-token-1",
        ])
        .unwrap();
        let request = set_request("r-1".into(), &args).unwrap();
        let whatsapp = request.whatsapp.unwrap();
        assert_eq!((whatsapp.phone_number_id.as_str(), whatsapp.app_secret.as_str()), ("1055", "app-secret-1"));
        assert_eq!(whatsapp.verify_token, "verify-1");
        assert_eq!(request.sms.unwrap().auth_token, "auth-token-1");
        assert!(!request.remove_whatsapp && !request.remove_sms);

        let removal = set_request("r-2".into(), &set_args(&["--remove-sms"]).unwrap()).unwrap();
        assert!(removal.remove_sms && removal.whatsapp.is_none() && removal.sms.is_none());
    }

    #[test]
    fn set_refuses_an_account_without_its_secrets_or_nothing_at_all() {
        let no_secret = set_args(&["--sms-account-sid", SID]).unwrap();
        let error = set_request(String::new(), &no_secret).unwrap_err();
        assert!(error.downcast_ref::<UsageError>().is_some(), "{error}");
        assert!(error.to_string().contains("--sms-auth-token"), "{error}");
        let nothing = set_request(String::new(), &set_args(&[]).unwrap()).unwrap_err();
        assert!(nothing.to_string().contains("nothing to set"), "{nothing}");
        assert!(set_args(&["--whatsapp-phone-number-id", "1", "--remove-whatsapp"]).is_err());
        assert!(set_args(&["--sms-account-sid", SID, "--remove-sms"]).is_err());
    }

    #[test]
    fn set_replaces_or_empties_the_send_webhook_hosts() {
        let args = set_args(&["--send-webhook-host", "hooks.example.com,crm.example.com"]).unwrap();
        let request = set_request("r1".into(), &args).unwrap();
        let policy = request.send_webhooks.unwrap();
        assert_eq!(policy.allowed_hosts, ["hooks.example.com", "crm.example.com"]);
        assert!(request.whatsapp.is_none() && request.sms.is_none());
        let cleared = set_request("r2".into(), &set_args(&["--no-send-webhook-hosts"]).unwrap()).unwrap();
        assert_eq!(cleared.send_webhooks.unwrap().allowed_hosts, Vec::<String>::new());
        let untouched = set_request("r3".into(), &set_args(&["--remove-sms"]).unwrap()).unwrap();
        assert!(untouched.send_webhooks.is_none(), "absent: unchanged");
        assert!(set_args(&["--send-webhook-host", "a.example", "--no-send-webhook-hosts"]).is_err());
    }

    #[test]
    fn the_accounts_print_without_secrets() {
        let config = ProviderConfig {
            whatsapp: Some(WhatsappProviderStatus {
                phone_number_id: "1055".into(),
                has_app_secret: true,
                has_verify_token: true,
            }),
            sms: None,
            version: 2,
            updated_at: ts(1_714_550_400),
            updated_by: "manager-1".into(),
            send_webhooks: None,
        };
        let now = DateTime::from_timestamp(1_714_550_400 + 120, 0).unwrap();
        let text = config_text(&config, now);
        assert!(text.contains("phone number id 1055, app secret set, verify token set"), "{text}");
        assert!(text.contains("its callbacks are refused"), "{text}");
        assert!(text.contains("by manager-1"), "{text}");
        let never = config_text(&ProviderConfig::default(), now);
        assert!(never.contains("never") && never.contains("its webhooks are refused"), "{never}");
    }
}
