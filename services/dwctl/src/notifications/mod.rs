//! `dwctl notifications …`: NotificationService — the single-notifications log (every template
//! sent in the tenant, with its status timeline), the calling agent's live notifications and their
//! browser push subscriptions.

mod live;
mod log;
mod push;

use anyhow::Result;
use chrono::Utc;
use dw_proto::notifications::v1::notification_service_client::NotificationServiceClient;
use dw_proto::notifications::v1::{
    DisableBrowserNotificationsRequest, EnableBrowserNotificationsRequest, GetNotificationRequest,
    GetVapidPublicKeyRequest, SubscribeRequest,
};

use crate::cli::NotificationsCommand;
use crate::output::{Printer, names};
use crate::rpc::Rpc;
use crate::{paging, parse};

/// Local checks done before connecting (exit status 2 on failure).
pub fn validate(command: &NotificationsCommand) -> Result<()> {
    match command {
        NotificationsCommand::List(args) => Ok(parse::ordered_range(args.from.as_ref(), args.to.as_ref())?),
        _ => Ok(()),
    }
}

pub async fn run(command: NotificationsCommand, rpc: &Rpc, printer: &Printer) -> Result<()> {
    validate(&command)?;
    let mut client = NotificationServiceClient::new(rpc.channel.clone());
    match command {
        NotificationsCommand::List(args) => {
            let follow = args.paging.all;
            let result = paging::collect(log::list_request(args), follow, |request| {
                let mut client = client.clone();
                let request = rpc.request(request);
                async move { client.list_notifications(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
            printer.emit(names::LIST_NOTIFICATIONS, &result, log::list_text)
        }
        NotificationsCommand::Get { message_id } => {
            let request = GetNotificationRequest { message_id };
            let notification = client.get_notification(rpc.request(request)).await?.into_inner();
            printer.emit(names::SINGLE_NOTIFICATION, &notification, |n| log::notification_text(n, Utc::now()))
        }
        NotificationsCommand::Subscribe { after, backlog, limit } => {
            let request = SubscribeRequest { after_sequence: after, backlog };
            let stream = client.subscribe(rpc.stream_request(request)).await?.into_inner();
            live::print(stream, printer, after, backlog, limit).await
        }
        NotificationsCommand::VapidKey => {
            let key = client.get_vapid_public_key(rpc.request(GetVapidPublicKeyRequest {})).await?.into_inner();
            printer.emit(names::VAPID_PUBLIC_KEY, &key, push::vapid_key_text)
        }
        NotificationsCommand::EnablePush { endpoint, p256dh, auth } => {
            let request = EnableBrowserNotificationsRequest { request_id: rpc.request_id(), endpoint, p256dh, auth };
            let subscription = client.enable_browser_notifications(rpc.request(request)).await?.into_inner();
            printer.emit(names::BROWSER_SUBSCRIPTION, &subscription, push::subscription_text)
        }
        NotificationsCommand::DisablePush { endpoint } => {
            let request =
                DisableBrowserNotificationsRequest { request_id: rpc.request_id(), endpoint: endpoint.clone() };
            let response = client.disable_browser_notifications(rpc.request(request)).await?.into_inner();
            printer.emit(names::DISABLE_BROWSER_NOTIFICATIONS, &response, |r| push::disabled_text(r, &endpoint))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cli::{Cli, Command};
    use crate::failure::UsageError;
    use crate::testing::parse_in;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_in("notifications", args)
    }

    /// `dwctl notifications <args…>`, parsed.
    pub(super) fn command(args: &[&str]) -> NotificationsCommand {
        match parse(args).unwrap().command {
            Command::Notifications(command) => command,
            other => panic!("not a notifications command: {other:?}"),
        }
    }

    #[test]
    fn list_options_are_checked() {
        assert!(parse(&["list", "--channel", "voice"]).is_err());
        assert!(parse(&["list", "--status", "sent"]).is_err());
        assert!(parse(&["list", "--recipient", "11987654321"]).is_err());
        assert!(parse(&["list", "--from", "yesterday"]).is_err());
        assert!(parse(&["list", "--page-size", "0"]).is_err());
        assert!(parse(&["list", "--page-size", "201"]).is_err());
        assert!(parse(&["list", "--all", "--page-token", "x"]).is_err());
        assert!(parse(&["list", "--agent", " "]).is_err());
        for status in ["requested", "dispatched", "delivered", "read", "failed"] {
            assert!(parse(&["list", "--status", status]).is_ok(), "{status}");
        }
        let backwards = command(&["list", "--from", "2024-05-02", "--to", "2024-05-01"]);
        let error = validate(&backwards).unwrap_err();
        assert!(error.downcast_ref::<UsageError>().is_some(), "{error}");
        assert!(validate(&command(&["list", "--from", "2024-05-01", "--to", "2024-05-01"])).is_err());
        assert!(validate(&command(&["list", "--from", "2024-05-01", "--to", "2024-05-02"])).is_ok());
        assert!(validate(&command(&["list", "--to", "2024-05-01"])).is_ok());
    }

    #[test]
    fn get_and_subscribe_parse() {
        assert!(
            matches!(command(&["get", "--message-id", "m-1"]), NotificationsCommand::Get { message_id } if message_id == "m-1")
        );
        assert!(parse(&["get"]).is_err());
        assert!(matches!(
            command(&["subscribe"]),
            NotificationsCommand::Subscribe { after: 0, backlog: 0, limit: None }
        ));
        assert!(matches!(
            command(&["subscribe", "--after", "41", "--limit", "3"]),
            NotificationsCommand::Subscribe { after: 41, backlog: 0, limit: Some(3) }
        ));
        assert!(matches!(
            command(&["subscribe", "--backlog", "20"]),
            NotificationsCommand::Subscribe { backlog: 20, .. }
        ));
        assert!(parse(&["subscribe", "--after", "-1"]).is_err());
        assert!(parse(&["subscribe", "--backlog", "101"]).is_err());
        assert!(parse(&["subscribe", "--backlog", "5", "--after", "3"]).is_err());
        let cli = parse(&["subscribe", "--json"]).unwrap();
        assert!(cli.global.json);
    }

    #[test]
    fn push_commands_parse() {
        assert!(matches!(command(&["vapid-key"]), NotificationsCommand::VapidKey));
        let enable = command(&[
            "enable-push",
            "--endpoint",
            "https://fcm.googleapis.com/fcm/send/abc",
            "--p256dh",
            "BNc-key",
            "--auth",
            "tBHI",
        ]);
        assert!(matches!(
            enable,
            NotificationsCommand::EnablePush { ref endpoint, ref p256dh, ref auth }
                if endpoint == "https://fcm.googleapis.com/fcm/send/abc" && p256dh == "BNc-key" && auth == "tBHI"
        ));
        assert!(parse(&["enable-push", "--endpoint", "https://push.example/x", "--p256dh", "k"]).is_err());
        assert!(parse(&["enable-push", "--endpoint", " ", "--p256dh", "k", "--auth", "a"]).is_err());
        assert!(matches!(
            command(&["disable-push", "--endpoint", "https://push.example/x"]),
            NotificationsCommand::DisablePush { ref endpoint } if endpoint == "https://push.example/x"
        ));
        assert!(parse(&["disable-push"]).is_err());
        assert!(validate(&command(&["vapid-key"])).is_ok());
    }

    #[test]
    fn the_notifications_address_is_a_global_option_with_a_default() {
        let cli = parse(&["subscribe"]).unwrap();
        assert_eq!(cli.global.notifications_addr, "http://127.0.0.1:50054");
        let cli = parse(&["list", "--notifications-addr", "http://10.0.0.5:50054"]).unwrap();
        assert_eq!(cli.global.notifications_addr, "http://10.0.0.5:50054");
    }
}
