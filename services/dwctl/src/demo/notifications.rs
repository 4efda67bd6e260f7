//! notifications' part of the seed: it needs no data of its own (ana's `notifications.view` comes
//! with every permission of the catalog), so the seed only asks whether it answers; and the
//! notification examples.

use std::time::Duration;

use anyhow::Result;
use dw_proto::notifications::v1::ListNotificationsRequest;
use dw_proto::notifications::v1::notification_service_client::NotificationServiceClient;

use super::{Seeding, Tokens, answered, connect_or_skip, export_addr};
use crate::rpc::ClientTls;

/// Where dwctl finds notifications unless told otherwise.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:50054";

/// Whether notifications answers: `Seeded(())` when it does.
pub type Notifications = Seeding<()>;

/// Asks notifications for one page of the log as the manager (no permission needed), which tells
/// whether it runs and accepts this cluster's tokens.
pub async fn probe(addr: &str, tls: &ClientTls, manager_token: &str, timeout: Duration) -> Result<Notifications> {
    let rpc = match connect_or_skip(addr, tls, manager_token, timeout).await {
        Ok(rpc) => rpc,
        Err(why) => return Ok(Seeding::Skipped(why)),
    };
    let mut client = NotificationServiceClient::new(rpc.channel.clone());
    let request = ListNotificationsRequest { page_size: 1, ..Default::default() };
    let answer = answered(client.list_notifications(rpc.request(request)).await, "listing the notifications")?;
    Ok(match answer {
        Seeding::Seeded(_) => Seeding::Seeded(()),
        Seeding::Skipped(why) => Seeding::Skipped(why),
    })
}

/// The notification examples printed after seeding; the live example with a client writing only
/// when task-distribution was seeded (`with_tasks`: the message lands on a task assigned to ana).
pub fn instructions(tenant: &str, addr: &str, with_tasks: bool, tokens: &Tokens) -> String {
    let exports = export_addr("DW_NOTIFICATIONS_ADDR", addr, DEFAULT_ADDR);
    let Tokens { manager, ana, .. } = tokens;
    let mut text = format!(
        "
Notifications (notifications): the single-notifications log (every template sent, with its status
timeline) and each agent's live notifications (a client writes on one of their tasks, a task is
assigned to them, a send of theirs failed).

As ana (permission notifications.view): the WhatsApp templates you sent, then one with its timeline:

{exports}export DW_TOKEN={ana}
dwctl notifications list --channel whatsapp
dwctl notifications list --channel sms --status failed
dwctl notifications get --message-id <MESSAGE_ID>

As ana, in a terminal of its own: your notifications as they happen (stopping prints the last
sequence; resume with --after <SEQUENCE> to get exactly what you missed):

{exports}export DW_TOKEN={ana}
"
    );
    if with_tasks {
        text.push_str("dwctl day start\n");
    }
    text.push_str("dwctl notifications subscribe\n");
    if with_tasks {
        text.push_str(&format!(
            "
A client writes: ana's subscription shows the task assigned to her, then the message:

dwctl demo inbound --tenant {tenant} --phone +5511987654321 --name 'José Silva' --text 'Olá, preciso de ajuda'
"
        ));
    }
    text.push_str(&format!(
        "
As the manager, the whole tenant's log:

{exports}export DW_TOKEN={manager}
dwctl notifications list --agent ana --all
dwctl notifications list --channel whatsapp --status read --from $(date -u +%F)
"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::tests::{tokens, unused_addr};

    #[test]
    fn notification_examples_list_and_subscribe_as_ana() {
        let text = instructions("demo", DEFAULT_ADDR, true, &tokens());
        assert!(text.contains("export DW_TOKEN=ANA\ndwctl notifications list --channel whatsapp\n"), "{text}");
        assert!(text.contains("dwctl notifications get --message-id <MESSAGE_ID>\n"), "{text}");
        assert!(text.contains("export DW_TOKEN=ANA\ndwctl day start\ndwctl notifications subscribe\n"), "{text}");
        assert!(text.contains("dwctl demo inbound --tenant demo --phone +5511987654321"), "{text}");
        assert!(text.contains("export DW_TOKEN=MGR\ndwctl notifications list --agent ana --all\n"), "{text}");
        assert!(!text.contains("DW_NOTIFICATIONS_ADDR"), "{text}");
        let text = instructions("acme", "http://10.0.0.5:50054", false, &tokens());
        assert!(text.contains("export DW_NOTIFICATIONS_ADDR=http://10.0.0.5:50054\nexport DW_TOKEN=ANA\n"), "{text}");
        assert!(text.contains("export DW_TOKEN=ANA\ndwctl notifications subscribe\n"), "{text}");
        assert!(!text.contains("demo inbound") && !text.contains("day start"), "no tasks, no client: {text}");
    }

    #[tokio::test]
    async fn seeding_skips_notifications_when_nothing_listens() {
        let outcome = probe(&unused_addr(), &ClientTls::default(), "token", Duration::from_secs(2)).await.unwrap();
        assert!(matches!(outcome, Notifications::Skipped(_)), "{outcome:?}");
    }
}
