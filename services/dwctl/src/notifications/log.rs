//! The single-notifications log: every template sent in the tenant, newest first, each with what
//! the send carried and its status history.

use chrono::{DateTime, Utc};
use dw_proto::notifications::v1::{ListNotificationsRequest, ListNotificationsResponse, SingleNotification};

use crate::cli::ListNotificationsArgs;
use crate::messaging::{channel, message_status, metadata, status_history};
use crate::output::{self as out, or_dash};
use crate::paging;

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
        page_size: args.paging.page_size.unwrap_or(0),
        page_token: args.paging.page_token.unwrap_or_default(),
        ..Default::default()
    }
}

/// The template's name, or its id when the name is unknown.
fn template(notification: &SingleNotification) -> String {
    if notification.template_name.is_empty() {
        or_dash(&notification.template_id)
    } else {
        notification.template_name.clone()
    }
}

const LOG_HEADER: [&str; 7] = ["TIME", "CHANNEL", "STATUS", "TEMPLATE", "AGENT", "RECIPIENT", "MESSAGE"];

pub fn list_text(list: &ListNotificationsResponse) -> String {
    let table = out::table_of(&LOG_HEADER, &list.notifications, |n| {
        vec![
            out::timestamp(n.requested_at.as_ref()),
            channel(n.channel),
            message_status(n.status),
            template(n),
            or_dash(&n.agent_id),
            or_dash(&n.recipient_phone),
            n.message_id.clone(),
        ]
    });
    table + &paging::next_page_line(&list.next_page_token)
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
    ];
    let optional = [("contact", &n.contact_id), ("header", &n.rendered_header), ("header image", &n.header_image_url)];
    rows.extend(
        optional.into_iter().filter(|(_, value)| !value.is_empty()).map(|(label, value)| (label, value.clone())),
    );
    rows.push(("text", or_dash(&n.rendered_body)));
    rows.push(("webhook", or_dash(&n.webhook_url)));
    rows.push(("metadata", metadata(&n.metadata)));
    if !n.additional_information.is_empty() {
        rows.push(("info", n.additional_information.clone()));
    }
    rows.push(("provider id", or_dash(&n.provider_message_id)));
    if !n.failure_code.is_empty() || !n.failure_reason.is_empty() {
        rows.push(("failure", format!("{}: {}", or_dash(&n.failure_code), or_dash(&n.failure_reason))));
    }
    rows.push(("requested", out::timestamp_ago(n.requested_at.as_ref(), now)));
    rows.push(("updated", out::timestamp_ago(n.updated_at.as_ref(), now)));
    let mut text = out::fields(&rows);
    text.push('\n');
    // A server older than `history` fills only the deprecated `timeline` (the same list).
    let history = if n.history.is_empty() { &n.timeline } else { &n.history };
    let history = history.iter().map(|change| (change.at.as_ref(), change.status, change.detail.as_str()));
    text.push_str(&out::block("history", &status_history(history)));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use dw_proto::messaging::v1::{Channel, MessageStatus};
    use dw_proto::notifications::v1::agent_notification::Kind;
    use dw_proto::notifications::v1::{AgentNotification, StatusChange};

    use crate::cli::NotificationsCommand;
    use crate::notifications::tests::command;
    use crate::output::{Printer, names};
    use crate::testing::{T0, ts};

    fn history() -> Vec<StatusChange> {
        vec![
            StatusChange { status: MessageStatus::Requested as i32, at: ts(T0), detail: String::new() },
            StatusChange { status: MessageStatus::Dispatched as i32, at: ts(T0 + 1), detail: "wamid.1".into() },
            StatusChange { status: MessageStatus::Read as i32, at: ts(T0 + 2), detail: String::new() },
        ]
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
            timeline: history(),
            history: history(),
            contact_id: "0196-jose".into(),
            rendered_header: "Seu pedido".into(),
            webhook_url: "https://automation.example.com/sent".into(),
            metadata: [("order".to_owned(), "A-1234".to_owned())].into(),
            additional_information: "entregar à tarde".into(),
            provider_message_id: "wamid.1".into(),
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
        assert!(args.paging.all);
        assert_eq!(list_request(args).channel, Channel::Sms as i32);
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
    fn one_send_renders_with_what_it_carried_its_history_and_failure() {
        let now = DateTime::from_timestamp(T0 + 62, 0).unwrap();
        let text = notification_text(&sent(), now);
        assert!(text.starts_with("message      0196-msg\nchannel      whatsapp\nstatus       read\n"), "{text}");
        assert!(text.contains("template     order_shipped (0196-tpl)\n"), "{text}");
        assert!(text.contains("to           +5511987654321\n"), "{text}");
        assert!(text.contains("text         Olá José, seu pedido A-1234 saiu para entrega.\n"), "{text}");
        assert!(text.contains("requested    2024-05-01T08:00:00Z (1m 02s ago)\n"), "{text}");
        assert!(text.contains("contact      0196-jose\nheader       Seu pedido\ntext "), "{text}");
        assert!(!text.contains("header image"), "no image, no row: {text}");
        assert!(text.contains("webhook      https://automation.example.com/sent\n"), "{text}");
        assert!(text.contains("metadata     order=A-1234\n"), "{text}");
        assert!(text.contains("info         entregar à tarde\n"), "{text}");
        assert!(text.contains("provider id  wamid.1\n"), "{text}");
        assert!(!text.contains("failure"), "{text}");
        assert!(text.contains("\nhistory:\n  AT                    STATUS      DETAIL\n"), "{text}");
        assert!(text.contains("  2024-05-01T08:00:00Z  requested   -\n"), "{text}");
        assert!(text.contains("  2024-05-01T08:00:01Z  dispatched  wamid.1\n"), "{text}");
        assert!(text.contains("  2024-05-01T08:00:02Z  read        -\n"), "{text}");

        // A server older than `history` sends only `timeline`: the same list is shown.
        let older_server = SingleNotification { history: vec![], ..sent() };
        assert_eq!(notification_text(&older_server, now), text);

        let failed = SingleNotification {
            status: MessageStatus::Failed as i32,
            failure_code: "131026".into(),
            failure_reason: "Message undeliverable".into(),
            timeline: vec![],
            history: vec![],
            ..sent()
        };
        let text = notification_text(&failed, now);
        assert!(text.contains("status       failed\n"), "{text}");
        assert!(text.contains("failure      131026: Message undeliverable\n"), "{text}");
        assert!(text.contains("history:\n  (none)\n"), "{text}");
    }

    #[test]
    fn notifications_render_as_proto3_json() {
        let printer = Printer::new(true).unwrap();
        let value = printer.to_json(names::SINGLE_NOTIFICATION, &sent()).unwrap();
        assert_eq!(value["channel"], "CHANNEL_WHATSAPP");
        assert_eq!(value["status"], "MESSAGE_STATUS_READ");
        assert_eq!(value["timeline"][1]["detail"], "wamid.1");
        assert_eq!(value["history"], value["timeline"]);
        assert_eq!(value["providerMessageId"], "wamid.1");
        assert_eq!(value["metadata"]["order"], "A-1234");
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
