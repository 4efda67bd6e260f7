//! `dwctl webhooks …`: WebhookService (role `manager`) — outbound webhooks signed the Standard
//! Webhooks way: register, list, delete, rotate the signing secret, inspect deliveries and their
//! attempts, redeliver.

use anyhow::Result;
use dw_proto::notifications::v1::webhook_service_client::WebhookServiceClient;
use dw_proto::notifications::v1::{
    CreateWebhookRequest, DeleteWebhookRequest, Delivery, DeliveryAttempt, ListDeliveriesRequest,
    ListDeliveriesResponse, ListWebhooksRequest, ListWebhooksResponse, RedeliverWebhookRequest,
    RotateWebhookSecretRequest, Webhook, WebhookWithSecret,
};

use crate::cli::WebhooksCommand;
use crate::output::{self as out, Printer, names, one_line, or_dash};
use crate::paging;
use crate::rpc::Rpc;

pub async fn run(command: WebhooksCommand, rpc: &Rpc, printer: &Printer) -> Result<()> {
    let mut client = WebhookServiceClient::new(rpc.channel.clone());
    match command {
        WebhooksCommand::Create { url, description, events } => {
            let request = create_request(rpc.request_id(), url, description, events);
            let created = client.create_webhook(rpc.request(request)).await?.into_inner();
            printer.emit(names::WEBHOOK_WITH_SECRET, &created, |w| secret_text("webhook created", w))
        }
        WebhooksCommand::CreateForSends { description } => {
            let request = CreateWebhookRequest {
                request_id: rpc.request_id(),
                description: description.unwrap_or_default(),
                for_sends: true,
                ..Default::default()
            };
            let created = client.create_webhook(rpc.request(request)).await?.into_inner();
            printer.emit(names::WEBHOOK_WITH_SECRET, &created, |w| secret_text("sends endpoint created", w))
        }
        WebhooksCommand::List { paging: page } => {
            let request = ListWebhooksRequest {
                page_size: page.page_size.unwrap_or(0),
                page_token: page.page_token.unwrap_or_default(),
            };
            let list = paging::collect(request, page.all, |request| {
                let mut client = client.clone();
                let request = rpc.request(request);
                async move { client.list_webhooks(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
            printer.emit(names::LIST_WEBHOOKS, &list, |list| {
                list_text(list) + &paging::next_page_line(&list.next_page_token)
            })
        }
        WebhooksCommand::Delete { webhook_id } => {
            let request = DeleteWebhookRequest { request_id: rpc.request_id(), webhook_id };
            let webhook = client.delete_webhook(rpc.request(request)).await?.into_inner();
            printer.emit(names::WEBHOOK, &webhook, |w| format!("webhook deleted\n{}", webhook_text(w)))
        }
        WebhooksCommand::RotateSecret { webhook_id } => {
            let request = RotateWebhookSecretRequest { request_id: rpc.request_id(), webhook_id };
            let rotated = client.rotate_webhook_secret(rpc.request(request)).await?.into_inner();
            printer.emit(names::WEBHOOK_WITH_SECRET, &rotated, |w| secret_text("secret rotated", w))
        }
        WebhooksCommand::Deliveries { webhook_id, page_size, page_token, all } => {
            let request = ListDeliveriesRequest {
                webhook_id,
                page_size: page_size.unwrap_or(0),
                page_token: page_token.unwrap_or_default(),
            };
            let list = paging::collect(request, all, |request| {
                let mut client = client.clone();
                let request = rpc.request(request);
                async move { client.list_deliveries(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
            printer.emit(names::LIST_DELIVERIES, &list, |list| {
                deliveries_text(list) + &paging::next_page_line(&list.next_page_token)
            })
        }
        WebhooksCommand::Redeliver { delivery_id } => {
            // `delivery_id` is already the hyphenated UUID (see `parse::delivery_id`).
            let request = RedeliverWebhookRequest { request_id: rpc.request_id(), delivery_id };
            let delivery = client.redeliver_webhook(rpc.request(request)).await?.into_inner();
            printer.emit(names::DELIVERY, &delivery, |d| format!("redelivery scheduled\n{}", delivery_text(d)))
        }
    }
}

pub fn create_request(
    request_id: String,
    url: String,
    description: Option<String>,
    event_types: Vec<String>,
) -> CreateWebhookRequest {
    let mut event_types = event_types;
    // `--event a --event a` or `--event a,a` asks for `a` once.
    let mut seen = std::collections::HashSet::new();
    event_types.retain(|event| seen.insert(event.clone()));
    CreateWebhookRequest {
        request_id,
        url,
        description: description.unwrap_or_default(),
        event_types,
        for_sends: false,
    }
}

// ---------------------------------------------------------------------------------------------
// rendering

/// `yes`, or `no (why)` for a disabled webhook.
pub fn enabled(webhook: &Webhook) -> String {
    match (webhook.enabled, webhook.disabled_reason.is_empty()) {
        (true, _) => "yes".to_owned(),
        (false, true) => "no".to_owned(),
        (false, false) => format!("no ({})", webhook.disabled_reason),
    }
}

pub fn webhook_text(webhook: &Webhook) -> String {
    out::fields(&[
        ("webhook", webhook.webhook_id.clone()),
        ("url", webhook.url.clone()),
        ("description", or_dash(&one_line(&webhook.description))),
        ("events", out::list(&webhook.event_types)),
        ("enabled", enabled(webhook)),
        ("created", out::timestamp(webhook.created_at.as_ref())),
    ])
}

/// The webhook, then its signing secret and a reminder that it is not shown again.
pub fn secret_text(headline: &str, created: &WebhookWithSecret) -> String {
    let webhook = created.webhook.clone().unwrap_or_default();
    format!(
        "{headline}\n{}\nsecret  {}\n\nThe secret is shown only this once: store it now. It signs every delivery \
         (webhook-signature: v1,<base64 HMAC-SHA256>); `dwctl webhooks rotate-secret --webhook-id {}` replaces it.\n",
        webhook_text(&webhook),
        created.secret,
        or_dash(&webhook.webhook_id),
    )
}

pub fn list_text(list: &ListWebhooksResponse) -> String {
    out::table_of(&["WEBHOOK", "URL", "EVENTS", "ENABLED", "CREATED", "DESCRIPTION"], &list.webhooks, |w| {
        vec![
            w.webhook_id.clone(),
            w.url.clone(),
            out::list(&w.event_types),
            enabled(w),
            out::timestamp(w.created_at.as_ref()),
            or_dash(&one_line(&w.description)),
        ]
    })
}

/// `200 (85ms)`, or `no answer (5000ms)` when the endpoint did not answer.
pub fn attempt(attempt: &DeliveryAttempt) -> String {
    if attempt.status_code == 0 {
        format!("no answer ({}ms)", attempt.latency_ms)
    } else {
        format!("{} ({}ms)", attempt.status_code, attempt.latency_ms)
    }
}

/// Every attempt, oldest first: `500 (120ms), 200 (85ms)`; `-` when none yet.
pub fn attempts(delivery: &Delivery) -> String {
    if delivery.attempts.is_empty() {
        "-".to_owned()
    } else {
        delivery.attempts.iter().map(attempt).collect::<Vec<_>>().join(", ")
    }
}

/// The error of the latest attempt, on one line; `-` when it had none.
fn last_error(delivery: &Delivery) -> String {
    delivery.attempts.last().map_or_else(|| "-".to_owned(), |a| or_dash(&one_line(&a.error)))
}

pub fn deliveries_text(list: &ListDeliveriesResponse) -> String {
    out::table_of(&["DELIVERY", "EVENT", "STATUS", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"], &list.deliveries, |d| {
        vec![
            d.delivery_id.clone(),
            or_dash(&d.event_type),
            or_dash(&d.status),
            attempts(d),
            out::timestamp(d.next_attempt_at.as_ref()),
            last_error(d),
        ]
    })
}

pub fn delivery_text(delivery: &Delivery) -> String {
    let d = delivery;
    let mut text = out::fields(&[
        ("delivery", d.delivery_id.clone()),
        ("webhook", d.webhook_id.clone()),
        ("url", or_dash(&d.url)),
        ("event", or_dash(&d.event_type)),
        ("status", or_dash(&d.status)),
        ("next attempt", out::timestamp(d.next_attempt_at.as_ref())),
        ("created", out::timestamp(d.created_at.as_ref())),
    ]);
    let attempts = out::table_of(&["AT", "STATUS", "LATENCY", "ERROR"], &d.attempts, |a| {
        vec![
            out::timestamp(a.at.as_ref()),
            if a.status_code == 0 { "-".to_owned() } else { a.status_code.to_string() },
            format!("{}ms", a.latency_ms),
            or_dash(&one_line(&a.error)),
        ]
    });
    text.push('\n');
    text.push_str(&out::block("attempts", &attempts));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cli::{Cli, Command, PageArgs};
    use crate::testing::{T0, parse_in, ts};

    const WEBHOOK_ID: &str = "0196a3b2-0000-7000-8000-000000000001";

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_in("webhooks", args)
    }

    fn command(args: &[&str]) -> WebhooksCommand {
        match parse(args).unwrap().command {
            Command::Webhooks(command) => command,
            other => panic!("not a webhooks command: {other:?}"),
        }
    }

    fn webhook() -> Webhook {
        Webhook {
            webhook_id: WEBHOOK_ID.into(),
            url: "https://hooks.example.com/dw".into(),
            description: "CRM sync".into(),
            event_types: vec!["template.sent".into(), "message.failed".into()],
            enabled: true,
            disabled_reason: String::new(),
            created_at: ts(T0),
            for_sends: false,
        }
    }

    fn delivery() -> Delivery {
        Delivery {
            delivery_id: "msg_0196a3b27c4d7e8f9a0b1c2d3e4f5a6b".into(),
            webhook_id: WEBHOOK_ID.into(),
            url: "https://hooks.example.com/dw".into(),
            event_type: "message.failed".into(),
            status: "pending".into(),
            attempts: vec![
                DeliveryAttempt { at: ts(T0), status_code: 0, latency_ms: 5000, error: "timed out".into() },
                DeliveryAttempt { at: ts(T0 + 5), status_code: 503, latency_ms: 120, error: "HTTP 503\n".into() },
            ],
            next_attempt_at: ts(T0 + 305),
            created_at: ts(T0),
        }
    }

    #[test]
    fn create_parses_events_and_builds_the_request() {
        let WebhooksCommand::Create { url, description, events } = command(&[
            "create",
            "--url",
            "https://hooks.example.com/dw",
            "--description",
            "CRM sync",
            "--event",
            "template.sent",
            "--event",
            "message.delivered,Message.Read",
            "--event",
            "template.sent",
        ]) else {
            panic!("not create")
        };
        let request = create_request("r-1".into(), url, description, events);
        assert_eq!(request.request_id, "r-1");
        assert_eq!(request.url, "https://hooks.example.com/dw");
        assert_eq!(request.description, "CRM sync");
        assert_eq!(request.event_types, ["template.sent", "message.delivered", "message.read"]);

        let WebhooksCommand::Create { url, description, events } =
            command(&["create", "--url", "https://x.example", "--event", "message.failed"])
        else {
            panic!("not create")
        };
        let request = create_request("r-2".into(), url, description, events);
        assert_eq!((request.description.as_str(), request.event_types.len()), ("", 1));

        assert!(parse(&["create", "--url", "https://x.example"]).is_err(), "an event is required");
        assert!(parse(&["create", "--event", "template.sent"]).is_err(), "--url is required");
        assert!(parse(&["create", "--url", "https://x.example", "--event", "message.sent"]).is_err());
        assert!(parse(&["create", "--url", " ", "--event", "template.sent"]).is_err());
    }

    #[test]
    fn the_other_commands_parse() {
        assert!(matches!(command(&["list"]), WebhooksCommand::List { paging: PageArgs { all: false, .. } }));
        assert!(matches!(
            command(&["list", "--page-size", "3", "--page-token", "abc"]),
            WebhooksCommand::List { paging: PageArgs { page_size: Some(3), page_token: Some(_), all: false } }
        ));
        assert!(matches!(
            command(&["deliveries", "--webhook-id", "w-1", "--all"]),
            WebhooksCommand::Deliveries { all: true, page_token: None, .. }
        ));
        assert!(
            matches!(command(&["delete", "--webhook-id", "w-1"]), WebhooksCommand::Delete { webhook_id } if webhook_id == "w-1")
        );
        assert!(parse(&["delete"]).is_err());
        assert!(matches!(
            command(&["rotate-secret", "--webhook-id", "w-1"]),
            WebhooksCommand::RotateSecret { webhook_id } if webhook_id == "w-1"
        ));
        assert!(matches!(
            command(&["deliveries", "--webhook-id", "w-1"]),
            WebhooksCommand::Deliveries { page_size: None, .. }
        ));
        assert!(matches!(
            command(&["deliveries", "--webhook-id", "w-1", "--page-size", "200"]),
            WebhooksCommand::Deliveries { page_size: Some(200), .. }
        ));
        assert!(parse(&["deliveries", "--webhook-id", "w-1", "--page-size", "0"]).is_err());
        assert!(parse(&["deliveries", "--webhook-id", "w-1", "--page-size", "201"]).is_err());
        let cli = parse(&["list", "--json", "--notifications-addr", "http://10.0.0.5:50054"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.notifications_addr, "http://10.0.0.5:50054");
    }

    #[test]
    fn redeliver_turns_the_msg_id_into_a_uuid() {
        let uuid = "0196a3b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b";
        for given in ["msg_0196a3b27c4d7e8f9a0b1c2d3e4f5a6b", uuid, "0196a3b27c4d7e8f9a0b1c2d3e4f5a6b"] {
            assert!(
                matches!(command(&["redeliver", "--delivery-id", given]), WebhooksCommand::Redeliver { delivery_id } if delivery_id == uuid),
                "{given}"
            );
        }
        assert!(parse(&["redeliver", "--delivery-id", "msg_nope"]).is_err());
        assert!(parse(&["redeliver"]).is_err());
    }

    #[test]
    fn a_new_secret_is_printed_with_the_webhook_and_a_warning() {
        let created = WebhookWithSecret { webhook: Some(webhook()), secret: "whsec_c2VjcmV0".into() };
        let text = secret_text("webhook created", &created);
        assert!(
            text.starts_with(&format!(
                "webhook created\nwebhook      {WEBHOOK_ID}\nurl          https://hooks.example.com/dw\n\
                 description  CRM sync\nevents       template.sent, message.failed\nenabled      yes\n\
                 created      2024-05-01T08:00:00Z\n\nsecret  whsec_c2VjcmV0\n\n"
            )),
            "{text}"
        );
        assert!(text.contains("shown only this once"), "{text}");
        assert!(text.contains(&format!("dwctl webhooks rotate-secret --webhook-id {WEBHOOK_ID}")), "{text}");
    }

    #[test]
    fn webhooks_render_as_a_table() {
        let disabled = Webhook {
            webhook_id: "0196a3b2-0000-7000-8000-000000000002".into(),
            url: "https://old.example.com/hook".into(),
            description: String::new(),
            event_types: vec!["message.read".into()],
            enabled: false,
            disabled_reason: "endpoint answered 410 Gone".into(),
            created_at: ts(T0 - 60),
            for_sends: false,
        };
        let text = list_text(&ListWebhooksResponse { webhooks: vec![webhook(), disabled], ..Default::default() });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "WEBHOOK                               URL                           EVENTS                         \
             ENABLED                          CREATED               DESCRIPTION",
            "{text}"
        );
        assert_eq!(
            lines[1],
            "0196a3b2-0000-7000-8000-000000000001  https://hooks.example.com/dw  template.sent, message.failed  \
             yes                              2024-05-01T08:00:00Z  CRM sync",
            "{text}"
        );
        assert_eq!(
            lines[2],
            "0196a3b2-0000-7000-8000-000000000002  https://old.example.com/hook  message.read                   \
             no (endpoint answered 410 Gone)  2024-05-01T07:59:00Z  -",
            "{text}"
        );
        assert_eq!(list_text(&ListWebhooksResponse::default()), "(none)\n");
    }

    #[test]
    fn deliveries_render_with_attempts_and_next_retry() {
        let succeeded = Delivery {
            delivery_id: "msg_0196a3b27c4d7e8f9a0b1c2d3e4f0000".into(),
            event_type: "template.sent".into(),
            status: "succeeded".into(),
            attempts: vec![DeliveryAttempt { at: ts(T0), status_code: 200, latency_ms: 85, error: String::new() }],
            next_attempt_at: None,
            ..delivery()
        };
        let fresh = Delivery {
            delivery_id: "msg_0196a3b27c4d7e8f9a0b1c2d3e4f1111".into(),
            attempts: vec![],
            next_attempt_at: ts(T0),
            ..delivery()
        };
        let text = deliveries_text(&ListDeliveriesResponse {
            deliveries: vec![delivery(), succeeded, fresh],
            ..Default::default()
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "DELIVERY                              EVENT           STATUS     ATTEMPTS                         \
             NEXT ATTEMPT          LAST ERROR",
            "{text}"
        );
        assert_eq!(
            lines[1],
            "msg_0196a3b27c4d7e8f9a0b1c2d3e4f5a6b  message.failed  pending    no answer (5000ms), 503 (120ms)  \
             2024-05-01T08:05:05Z  HTTP 503",
            "{text}"
        );
        assert_eq!(
            lines[2],
            "msg_0196a3b27c4d7e8f9a0b1c2d3e4f0000  template.sent   succeeded  200 (85ms)                       \
             -                     -",
            "{text}"
        );
        assert_eq!(
            lines[3],
            "msg_0196a3b27c4d7e8f9a0b1c2d3e4f1111  message.failed  pending    -                                \
             2024-05-01T08:00:00Z  -",
            "{text}"
        );
        assert_eq!(deliveries_text(&ListDeliveriesResponse::default()), "(none)\n");
    }

    #[test]
    fn one_delivery_renders_with_its_attempts() {
        let text = delivery_text(&delivery());
        assert!(text.starts_with("delivery      msg_0196a3b27c4d7e8f9a0b1c2d3e4f5a6b\n"), "{text}");
        assert!(text.contains(&format!("webhook       {WEBHOOK_ID}\n")), "{text}");
        assert!(text.contains("status        pending\nnext attempt  2024-05-01T08:05:05Z\n"), "{text}");
        assert!(text.contains("\nattempts:\n  AT                    STATUS  LATENCY  ERROR\n"), "{text}");
        assert!(text.contains("  2024-05-01T08:00:00Z  -       5000ms   timed out\n"), "{text}");
        assert!(text.contains("  2024-05-01T08:00:05Z  503     120ms    HTTP 503\n"), "{text}");
        let none = delivery_text(&Delivery { attempts: vec![], ..delivery() });
        assert!(none.ends_with("attempts:\n  (none)\n"), "{none}");
    }

    #[test]
    fn webhooks_render_as_proto3_json() {
        let printer = Printer::new(true).unwrap();
        let created = WebhookWithSecret { webhook: Some(webhook()), secret: "whsec_c2VjcmV0".into() };
        let value = printer.to_json(names::WEBHOOK_WITH_SECRET, &created).unwrap();
        assert_eq!(value["secret"], "whsec_c2VjcmV0");
        assert_eq!(value["webhook"]["eventTypes"][1], "message.failed");
        assert_eq!(value["webhook"]["createdAt"], "2024-05-01T08:00:00Z");
        let value = printer.to_json(
            names::LIST_DELIVERIES,
            &ListDeliveriesResponse { deliveries: vec![delivery()], ..Default::default() },
        );
        let value = value.unwrap();
        assert_eq!(value["deliveries"][0]["deliveryId"], "msg_0196a3b27c4d7e8f9a0b1c2d3e4f5a6b");
        assert_eq!(value["deliveries"][0]["attempts"][1]["statusCode"], 503);
        assert_eq!(value["deliveries"][0]["attempts"][1]["latencyMs"], "120");
        assert_eq!(value["deliveries"][0]["nextAttemptAt"], "2024-05-01T08:05:05Z");
        let value = printer
            .to_json(names::LIST_WEBHOOKS, &ListWebhooksResponse { webhooks: vec![webhook()], ..Default::default() });
        assert_eq!(value.unwrap()["webhooks"][0]["enabled"], true);
        assert_eq!(printer.to_json(names::WEBHOOK, &webhook()).unwrap()["webhookId"], WEBHOOK_ID);
        assert_eq!(printer.to_json(names::DELIVERY, &delivery()).unwrap()["status"], "pending");
    }
}
