//! `dwctl notifications …`: NotificationService — the single-notifications log (every template
//! sent in the tenant, with its status timeline), the calling agent's live notifications and their
//! browser push subscriptions.

use anyhow::{Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use dw_proto::notifications::v1::agent_notification::Kind;
use dw_proto::notifications::v1::notification_service_client::NotificationServiceClient;
use dw_proto::notifications::v1::{
    AgentNotification, BrowserSubscription, DisableBrowserNotificationsRequest, DisableBrowserNotificationsResponse,
    EnableBrowserNotificationsRequest, GetNotificationRequest, GetVapidPublicKeyRequest, GetVapidPublicKeyResponse,
    ListNotificationsRequest, ListNotificationsResponse, SingleNotification, SubscribeRequest,
};
use futures::StreamExt as _;

use crate::UsageError;
use crate::cli::{ListNotificationsArgs, NotificationsCommand};
use crate::messaging::{channel, message_status};
use crate::output::{self as out, Printer, names};
use crate::rpc::Rpc;

/// Local checks done before connecting (exit status 2 on failure).
pub fn validate(command: &NotificationsCommand) -> Result<()> {
    match command {
        NotificationsCommand::List(ListNotificationsArgs { from: Some(from), to: Some(to), .. })
            if (to.seconds, to.nanos) <= (from.seconds, from.nanos) =>
        {
            bail!(UsageError("--to must be after --from".into()))
        }
        _ => Ok(()),
    }
}

pub async fn run(command: NotificationsCommand, rpc: &Rpc, printer: &Printer) -> Result<()> {
    validate(&command)?;
    let mut client = NotificationServiceClient::new(rpc.channel.clone());
    match command {
        NotificationsCommand::List(args) => {
            let follow = args.all;
            let result = list_pages(list_request(args), follow, |request| {
                let mut client = client.clone();
                let request = rpc.request(request);
                async move { client.list_notifications(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
            printer.emit(names::LIST_NOTIFICATIONS, &result, list_text)
        }
        NotificationsCommand::Get { message_id } => {
            let request = GetNotificationRequest { message_id };
            let notification = client.get_notification(rpc.request(request)).await?.into_inner();
            printer.emit(names::SINGLE_NOTIFICATION, &notification, |n| notification_text(n, Utc::now()))
        }
        NotificationsCommand::Subscribe { after, backlog, limit } => {
            let request = SubscribeRequest { after_sequence: after, backlog };
            let mut stream = client.subscribe(rpc.stream_request(request)).await?.into_inner();
            if !printer.json() {
                if after == 0 && backlog > 0 {
                    eprintln!("subscribed: the latest {backlog} kept notifications, then new ones (Ctrl-C to stop)");
                } else if after == 0 {
                    eprintln!("subscribed: new notifications as they happen (Ctrl-C to stop)");
                } else {
                    eprintln!("subscribed: every notification after #{after}, then new ones (Ctrl-C to stop)");
                }
            }
            let mut last = after;
            let mut seen = 0_u64;
            let outcome = loop {
                if limit.is_some_and(|limit| seen >= limit) {
                    break Ok(());
                }
                let next = tokio::select! {
                    next = stream.next() => next,
                    _ = tokio::signal::ctrl_c() => break Ok(()),
                };
                let notification = match next {
                    None => break Ok(()),
                    Some(Err(status)) => break Err(anyhow::Error::new(status)),
                    Some(Ok(notification)) => notification,
                };
                last = last.max(notification.sequence);
                if let Err(err) = printer.emit_line(names::AGENT_NOTIFICATION, &notification, subscribe_line) {
                    break Err(err);
                }
                seen += 1;
            };
            if !printer.json() && last > 0 {
                eprintln!("{}", resume_hint(last));
            }
            outcome
        }
        NotificationsCommand::VapidKey => {
            let key = client.get_vapid_public_key(rpc.request(GetVapidPublicKeyRequest {})).await?.into_inner();
            printer.emit(names::VAPID_PUBLIC_KEY, &key, vapid_key_text)
        }
        NotificationsCommand::EnablePush { endpoint, p256dh, auth } => {
            let request = EnableBrowserNotificationsRequest { request_id: rpc.request_id(), endpoint, p256dh, auth };
            let subscription = client.enable_browser_notifications(rpc.request(request)).await?.into_inner();
            printer.emit(names::BROWSER_SUBSCRIPTION, &subscription, subscription_text)
        }
        NotificationsCommand::DisablePush { endpoint } => {
            let request =
                DisableBrowserNotificationsRequest { request_id: rpc.request_id(), endpoint: endpoint.clone() };
            let response = client.disable_browser_notifications(rpc.request(request)).await?.into_inner();
            printer.emit(names::DISABLE_BROWSER_NOTIFICATIONS, &response, |r| disabled_text(r, &endpoint))
        }
    }
}

pub fn list_request(args: ListNotificationsArgs) -> ListNotificationsRequest {
    ListNotificationsRequest {
        channel: args.channel.map_or(0, |c| c as i32),
        status: args.status.map_or(0, |s| s as i32),
        agent_id: args.agent.unwrap_or_default(),
        template_id: args.template_id.unwrap_or_default(),
        department_id: args.department.unwrap_or_default(),
        recipient_phone: args.recipient.unwrap_or_default(),
        from: args.from,
        to: args.to,
        page_size: args.page_size.unwrap_or(0),
        page_token: args.page_token.unwrap_or_default(),
    }
}

/// One page, or with `follow` every page (the sends concatenated, no next token).
pub async fn list_pages<F, Fut>(
    mut request: ListNotificationsRequest,
    follow: bool,
    mut fetch: F,
) -> Result<ListNotificationsResponse>
where
    F: FnMut(ListNotificationsRequest) -> Fut,
    Fut: std::future::Future<Output = Result<ListNotificationsResponse, tonic::Status>>,
{
    let mut result = ListNotificationsResponse::default();
    loop {
        let page = fetch(request.clone()).await?;
        result.notifications.extend(page.notifications);
        result.next_page_token = page.next_page_token;
        if !follow || result.next_page_token.is_empty() {
            return Ok(result);
        }
        if result.next_page_token == request.page_token {
            bail!("the server returned the same page token twice ({}); stopping", request.page_token);
        }
        request.page_token = std::mem::take(&mut result.next_page_token);
    }
}

// ---------------------------------------------------------------------------------------------
// rendering

fn or_dash(value: &str) -> String {
    if value.is_empty() { "-".to_owned() } else { value.to_owned() }
}

/// `client_message`, `task_assigned`, `send_failed`.
pub fn kind(value: i32) -> String {
    match Kind::try_from(value) {
        Ok(Kind::Unspecified) => "-".to_owned(),
        Ok(kind) => out::enum_suffix(kind.as_str_name(), "KIND_"),
        Err(_) => format!("unknown({value})"),
    }
}

/// `text` on one line: line breaks and tabs become spaces, runs of spaces are kept.
pub fn one_line(text: &str) -> String {
    text.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The template's name, or its id when the name is unknown.
fn template(notification: &SingleNotification) -> String {
    if notification.template_name.is_empty() {
        or_dash(&notification.template_id)
    } else {
        notification.template_name.clone()
    }
}

pub fn list_text(list: &ListNotificationsResponse) -> String {
    let rows: Vec<Vec<String>> = list
        .notifications
        .iter()
        .map(|n| {
            vec![
                out::timestamp(n.requested_at.as_ref()),
                channel(n.channel),
                message_status(n.status),
                template(n),
                or_dash(&n.agent_id),
                or_dash(&n.recipient_phone),
                n.message_id.clone(),
            ]
        })
        .collect();
    let mut text = out::table(&["TIME", "CHANNEL", "STATUS", "TEMPLATE", "AGENT", "RECIPIENT", "MESSAGE"], &rows);
    if !list.next_page_token.is_empty() {
        text.push_str(&format!("next page: --page-token {}  (or --all for every page)\n", list.next_page_token));
    }
    text
}

pub fn notification_text(notification: &SingleNotification, now: DateTime<Utc>) -> String {
    let n = notification;
    let mut rows = vec![
        ("message", n.message_id.clone()),
        ("channel", channel(n.channel)),
        ("status", message_status(n.status)),
        ("template", format!("{} ({})", or_dash(&n.template_name), or_dash(&n.template_id))),
        ("agent", or_dash(&n.agent_id)),
        ("department", or_dash(&n.department_id)),
        ("to", or_dash(&n.recipient_phone)),
        ("text", or_dash(&n.rendered_body)),
    ];
    if !n.failure_code.is_empty() || !n.failure_reason.is_empty() {
        rows.push(("failure", format!("{}: {}", or_dash(&n.failure_code), or_dash(&n.failure_reason))));
    }
    rows.push(("requested", out::timestamp_ago(n.requested_at.as_ref(), now)));
    rows.push(("updated", out::timestamp_ago(n.updated_at.as_ref(), now)));
    let mut text = out::fields(&rows);
    let timeline: Vec<Vec<String>> = n
        .timeline
        .iter()
        .map(|change| vec![out::timestamp(change.at.as_ref()), message_status(change.status), or_dash(&change.detail)])
        .collect();
    text.push_str("\ntimeline:\n");
    text.push_str(&out::indent(&out::table(&["AT", "STATUS", "DETAIL"], &timeline), 2));
    text.push('\n');
    text
}

/// One line per notification received: sequence, kind, time, title, body; then the task and the
/// message it is about, when it names them.
pub fn subscribe_line(notification: &AgentNotification) -> String {
    let at = notification
        .at
        .as_ref()
        .and_then(out::to_datetime)
        .map_or_else(|| "-".to_owned(), |at| at.to_rfc3339_opts(SecondsFormat::Secs, true));
    let mut line = format!(
        "#{:<5} {:<14} {}  {}",
        notification.sequence,
        kind(notification.kind),
        at,
        or_dash(&one_line(&notification.title))
    );
    let body = one_line(&notification.body);
    if !body.is_empty() {
        line.push_str(&format!(": {body}"));
    }
    if !notification.task_id.is_empty() {
        line.push_str(&format!("  task {}", notification.task_id));
    }
    if !notification.message_id.is_empty() {
        line.push_str(&format!("  message {}", notification.message_id));
    }
    line
}

/// The bare key, so `$(dwctl notifications vapid-key)` works in scripts.
pub fn vapid_key_text(key: &GetVapidPublicKeyResponse) -> String {
    key.public_key.clone()
}

pub fn subscription_text(subscription: &BrowserSubscription) -> String {
    format!(
        "browser notifications enabled\n{}",
        out::fields(&[
            ("endpoint", subscription.endpoint.clone()),
            ("created", out::timestamp(subscription.created_at.as_ref())),
        ])
    )
}

pub fn disabled_text(response: &DisableBrowserNotificationsResponse, endpoint: &str) -> String {
    if response.removed {
        format!("browser notifications disabled for {endpoint}")
    } else {
        format!("no browser subscription for {endpoint} (nothing to disable)")
    }
}

/// How to pick up where a subscription stopped (stderr, on exit).
pub fn resume_hint(last: u64) -> String {
    format!("last notification #{last}; resume with: dwctl notifications subscribe --after {last}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use dw_proto::messaging::v1::{Channel, MessageStatus};
    use dw_proto::notifications::v1::StatusChange;

    use crate::cli::{Cli, Command};

    const T0: i64 = 1_714_550_400; // 2024-05-01T08:00:00Z

    fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["dwctl", "notifications"].into_iter().chain(args.iter().copied()))
    }

    fn command(args: &[&str]) -> NotificationsCommand {
        match parse(args).unwrap().command {
            Command::Notifications(command) => command,
            other => panic!("not a notifications command: {other:?}"),
        }
    }

    fn sent() -> SingleNotification {
        SingleNotification {
            message_id: "0196-msg".into(),
            channel: Channel::Whatsapp as i32,
            status: MessageStatus::Read as i32,
            template_id: "0196-tpl".into(),
            template_name: "order_shipped".into(),
            agent_id: "ana".into(),
            department_id: "sales".into(),
            recipient_phone: "+5511987654321".into(),
            rendered_body: "Olá José, seu pedido A-1234 saiu para entrega.".into(),
            requested_at: ts(T0),
            updated_at: ts(T0 + 2),
            timeline: vec![
                StatusChange { status: MessageStatus::Requested as i32, at: ts(T0), detail: String::new() },
                StatusChange { status: MessageStatus::Dispatched as i32, at: ts(T0 + 1), detail: "wamid.1".into() },
                StatusChange { status: MessageStatus::Read as i32, at: ts(T0 + 2), detail: String::new() },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn list_builds_the_request_from_every_filter() {
        let NotificationsCommand::List(args) = command(&[
            "list",
            "--channel",
            "WhatsApp",
            "--status",
            "delivered",
            "--agent",
            "ana",
            "--template-id",
            "T-1",
            "--department",
            "sales",
            "--recipient",
            "+55 (11) 98765-4321",
            "--from",
            "2024-05-01",
            "--to",
            "2024-05-02T00:00:00Z",
            "--page-size",
            "20",
            "--page-token",
            "abc",
        ]) else {
            panic!("not list")
        };
        let request = list_request(args);
        assert_eq!(request.channel, Channel::Whatsapp as i32);
        assert_eq!(request.status, MessageStatus::Delivered as i32);
        assert_eq!(request.agent_id, "ana");
        assert_eq!(request.template_id, "T-1");
        assert_eq!(request.department_id, "sales");
        assert_eq!(request.recipient_phone, "+5511987654321");
        assert_eq!(request.from.unwrap().seconds, 1_714_521_600);
        assert_eq!(request.to.unwrap().seconds, 1_714_608_000);
        assert_eq!((request.page_size, request.page_token.as_str()), (20, "abc"));

        let NotificationsCommand::List(args) = command(&["list"]) else { panic!("not list") };
        assert_eq!(list_request(args), ListNotificationsRequest::default());
        let NotificationsCommand::List(args) = command(&["list", "--channel", "sms", "--all"]) else {
            panic!("not list")
        };
        assert!(args.all);
        assert_eq!(list_request(args).channel, Channel::Sms as i32);
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
    fn push_responses_render() {
        let key = GetVapidPublicKeyResponse { public_key: "BEl62iUYgUivxIkv69yViEuiBIa".into() };
        assert_eq!(vapid_key_text(&key), "BEl62iUYgUivxIkv69yViEuiBIa");
        let subscription = BrowserSubscription { endpoint: "https://push.example/x".into(), created_at: ts(T0) };
        assert_eq!(
            subscription_text(&subscription),
            "browser notifications enabled\nendpoint  https://push.example/x\ncreated   2024-05-01T08:00:00Z\n"
        );
        let removed = DisableBrowserNotificationsResponse { removed: true };
        assert_eq!(
            disabled_text(&removed, "https://push.example/x"),
            "browser notifications disabled for https://push.example/x"
        );
        let absent = DisableBrowserNotificationsResponse { removed: false };
        assert_eq!(
            disabled_text(&absent, "https://push.example/x"),
            "no browser subscription for https://push.example/x (nothing to disable)"
        );
        let printer = Printer::new(true).unwrap();
        assert_eq!(printer.to_json(names::VAPID_PUBLIC_KEY, &key).unwrap()["publicKey"], key.public_key);
        assert_eq!(printer.to_json(names::DISABLE_BROWSER_NOTIFICATIONS, &absent).unwrap()["removed"], false);
        let value = printer.to_json(names::BROWSER_SUBSCRIPTION, &subscription).unwrap();
        assert_eq!(value["createdAt"], "2024-05-01T08:00:00Z");
    }

    #[test]
    fn the_notifications_address_is_a_global_option_with_a_default() {
        let cli = parse(&["subscribe"]).unwrap();
        assert_eq!(cli.global.notifications_addr, "http://127.0.0.1:50054");
        let cli = parse(&["list", "--notifications-addr", "http://10.0.0.5:50054"]).unwrap();
        assert_eq!(cli.global.notifications_addr, "http://10.0.0.5:50054");
    }

    #[tokio::test]
    async fn list_follows_pages_only_with_all() {
        let page = |id: &str, next: &str| ListNotificationsResponse {
            notifications: vec![SingleNotification { message_id: id.into(), ..Default::default() }],
            next_page_token: next.into(),
        };
        let pages = std::collections::HashMap::from([
            (String::new(), page("m3", "t2")),
            ("t2".to_owned(), page("m2", "t3")),
            ("t3".to_owned(), page("m1", "")),
        ]);
        let seen = std::sync::Mutex::new(Vec::new());
        let fetch = |request: ListNotificationsRequest| {
            seen.lock().unwrap().push(request.page_token.clone());
            let page = pages.get(&request.page_token).cloned();
            async move { page.ok_or_else(|| tonic::Status::invalid_argument("bad token")) }
        };
        let one = list_pages(ListNotificationsRequest::default(), false, fetch).await.unwrap();
        assert_eq!((one.notifications.len(), one.next_page_token.as_str()), (1, "t2"));
        let all = list_pages(ListNotificationsRequest::default(), true, fetch).await.unwrap();
        let ids: Vec<&str> = all.notifications.iter().map(|n| n.message_id.as_str()).collect();
        assert_eq!(ids, ["m3", "m2", "m1"]);
        assert_eq!(all.next_page_token, "");
        assert_eq!(*seen.lock().unwrap(), ["", "", "t2", "t3"]);
        let stuck = |_| async { Ok(page("m", "same")) };
        let looping = ListNotificationsRequest { page_token: "same".into(), ..Default::default() };
        assert!(list_pages(looping, true, stuck).await.is_err());
        let denied = |_| async { Err(tonic::Status::permission_denied("notifications.view")) };
        assert!(list_pages(ListNotificationsRequest::default(), true, denied).await.is_err());
    }

    #[test]
    fn the_log_renders_as_a_table_with_a_page_hint() {
        let failed = SingleNotification {
            message_id: "0196-sms".into(),
            channel: Channel::Sms as i32,
            status: MessageStatus::Failed as i32,
            template_id: "0196-code".into(),
            agent_id: "bruno".into(),
            recipient_phone: "+5511955554444".into(),
            requested_at: ts(T0 - 60),
            ..Default::default()
        };
        let list = ListNotificationsResponse { notifications: vec![sent(), failed], next_page_token: "abc".into() };
        let text = list_text(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "TIME                  CHANNEL   STATUS  TEMPLATE       AGENT  RECIPIENT       MESSAGE",
            "{text}"
        );
        assert_eq!(
            lines[1], "2024-05-01T08:00:00Z  whatsapp  read    order_shipped  ana    +5511987654321  0196-msg",
            "{text}"
        );
        assert_eq!(
            lines[2], "2024-05-01T07:59:00Z  sms       failed  0196-code      bruno  +5511955554444  0196-sms",
            "the template id stands in for a missing name: {text}"
        );
        assert_eq!(lines[3], "next page: --page-token abc  (or --all for every page)");
        assert_eq!(list_text(&ListNotificationsResponse::default()), "(none)\n");
    }

    #[test]
    fn one_send_renders_with_its_timeline_and_failure() {
        let now = DateTime::from_timestamp(T0 + 62, 0).unwrap();
        let text = notification_text(&sent(), now);
        assert!(text.starts_with("message     0196-msg\nchannel     whatsapp\nstatus      read\n"), "{text}");
        assert!(text.contains("template    order_shipped (0196-tpl)\n"), "{text}");
        assert!(text.contains("to          +5511987654321\n"), "{text}");
        assert!(text.contains("text        Olá José, seu pedido A-1234 saiu para entrega.\n"), "{text}");
        assert!(text.contains("requested   2024-05-01T08:00:00Z (1m 02s ago)\n"), "{text}");
        assert!(!text.contains("failure"), "{text}");
        assert!(text.contains("\ntimeline:\n  AT                    STATUS      DETAIL\n"), "{text}");
        assert!(text.contains("  2024-05-01T08:00:00Z  requested   -\n"), "{text}");
        assert!(text.contains("  2024-05-01T08:00:01Z  dispatched  wamid.1\n"), "{text}");
        assert!(text.contains("  2024-05-01T08:00:02Z  read        -\n"), "{text}");

        let failed = SingleNotification {
            status: MessageStatus::Failed as i32,
            failure_code: "131026".into(),
            failure_reason: "Message undeliverable".into(),
            timeline: vec![],
            ..sent()
        };
        let text = notification_text(&failed, now);
        assert!(text.contains("status      failed\n"), "{text}");
        assert!(text.contains("failure     131026: Message undeliverable\n"), "{text}");
        assert!(text.contains("timeline:\n  (none)\n"), "{text}");
    }

    #[test]
    fn subscribe_lines_carry_sequence_kind_time_title_and_body() {
        let message = AgentNotification {
            sequence: 42,
            kind: Kind::ClientMessage as i32,
            at: ts(T0 + 5),
            task_id: "0196-task".into(),
            message_id: "0196-in".into(),
            title: "New client message".into(),
            body: "Olá,\npreciso de ajuda\r\n".into(),
        };
        assert_eq!(
            subscribe_line(&message),
            "#42    client_message 2024-05-01T08:00:05Z  New client message: Olá, preciso de ajuda  task 0196-task  \
             message 0196-in"
        );
        let assigned = AgentNotification {
            sequence: 7,
            kind: Kind::TaskAssigned as i32,
            at: ts(T0),
            task_id: "0196-task".into(),
            title: "Task assigned".into(),
            body: "A task of support is yours".into(),
            ..Default::default()
        };
        assert_eq!(
            subscribe_line(&assigned),
            "#7     task_assigned  2024-05-01T08:00:00Z  Task assigned: A task of support is yours  task 0196-task"
        );
        let bare = AgentNotification { sequence: 1, kind: Kind::SendFailed as i32, ..Default::default() };
        assert_eq!(subscribe_line(&bare), "#1     send_failed    -  -");
        assert_eq!(kind(99), "unknown(99)");
        assert_eq!(kind(0), "-");
        assert_eq!(resume_hint(42), "last notification #42; resume with: dwctl notifications subscribe --after 42");
    }

    #[test]
    fn notifications_render_as_proto3_json() {
        let printer = Printer::new(true).unwrap();
        let value = printer.to_json(names::SINGLE_NOTIFICATION, &sent()).unwrap();
        assert_eq!(value["channel"], "CHANNEL_WHATSAPP");
        assert_eq!(value["status"], "MESSAGE_STATUS_READ");
        assert_eq!(value["timeline"][1]["detail"], "wamid.1");
        assert_eq!(value["requestedAt"], "2024-05-01T08:00:00Z");
        let list = ListNotificationsResponse { notifications: vec![sent()], next_page_token: String::new() };
        let value = printer.to_json(names::LIST_NOTIFICATIONS, &list).unwrap();
        assert_eq!(value["notifications"][0]["messageId"], "0196-msg");
        let notification =
            AgentNotification { sequence: 3, kind: Kind::SendFailed as i32, at: ts(T0), ..Default::default() };
        let value = printer.to_json(names::AGENT_NOTIFICATION, &notification).unwrap();
        assert_eq!(value["sequence"], "3");
        assert_eq!(value["kind"], "KIND_SEND_FAILED");
        // One object per line for streams.
        assert!(!serde_json::to_string(&value).unwrap().contains('\n'));
    }
}
