//! task-distribution's part of the seed: the tenant's default capacity and inbound department;
//! and the task examples.

use std::time::Duration;

use anyhow::Result;
use dw_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dw_proto::distribution::v1::{DistributionSettings, UpdateDistributionSettingsRequest};

use super::{CRM_BOT, Seeding, Tokens, answered, connect_or_skip, request_id};
use crate::rpc::ClientTls;

/// Where dwctl finds task-distribution unless told otherwise.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:50052";
/// The demo tenant's default agent capacity in task-distribution.
pub const DEFAULT_CAPACITY: i32 = 3;
/// Where the demo tenant's inbound client messages open tasks when they name no department.
pub const INBOUND_DEPARTMENT: &str = "support";

/// What seeding task-distribution came to.
pub type Distribution = Seeding<DistributionSettings>;

/// Sets the tenant's default capacity and inbound department (fixed request id), unless the
/// service does not answer.
pub async fn seed(
    addr: &str,
    tls: &ClientTls,
    tenant: &str,
    manager_token: &str,
    timeout: Duration,
) -> Result<Distribution> {
    let rpc = match connect_or_skip(addr, tls, manager_token, timeout).await {
        Ok(rpc) => rpc,
        Err(why) => return Ok(Seeding::Skipped(why)),
    };
    let mut client = DistributionServiceClient::new(rpc.channel.clone());
    let request = UpdateDistributionSettingsRequest {
        request_id: request_id(tenant, "distribution-settings"),
        default_capacity: Some(DEFAULT_CAPACITY),
        inbound_department_id: Some(INBOUND_DEPARTMENT.to_owned()),
        update_mask: None,
        expected_version: None,
    };
    answered(client.update_distribution_settings(rpc.request(request)).await, "updating the distribution settings")
}

/// The task examples (`exports`: the addresses to export first).
pub fn instructions(tenant: &str, exports: &str, tokens: &Tokens) -> String {
    let Tokens { manager, ana, crm_bot, .. } = tokens;
    format!(
        "
Tasks (task-distribution; default capacity {DEFAULT_CAPACITY} tasks per agent; inbound messages naming no
department go to {INBOUND_DEPARTMENT}).

As ana, in a terminal of its own: start the day, then watch the tasks you get:

{exports}export DW_TOKEN={ana}
dwctl day start
dwctl tasks watch
dwctl tasks mine
dwctl tasks complete --task-id <TASK_ID>

As the CRM ({CRM_BOT}, role service; token valid 12h), create a task:

{exports}export DW_TOKEN={crm_bot}
dwctl tasks create --department support --channel whatsapp --client-name 'Maria Souza' \\
    --phone +5511912345678 --priority 5 --subject 'Order 1234'
dwctl tasks get --protocol <PROTOCOL>

A client writes (the event the messaging service will publish; NATS only, no token):

dwctl demo inbound --tenant {tenant} --phone +5511987654321 --name 'Joao Pereira' --text 'Hello, I need help'

As the manager:

{exports}export DW_TOKEN={manager}
dwctl tasks stats
dwctl tasks search --client-name maria
dwctl tasks explain --task-id <TASK_ID>
dwctl tasks settings get
dwctl tasks capacity --agent ana --capacity 5
dwctl events tail --stream DW_DISTRIBUTION --from-start
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::tests::unused_addr;

    #[tokio::test]
    async fn seeding_skips_task_distribution_when_nothing_listens() {
        let outcome =
            seed(&unused_addr(), &ClientTls::default(), "demo", "token", Duration::from_secs(2)).await.unwrap();
        assert!(matches!(outcome, Distribution::Skipped(_)), "{outcome:?}");
    }
}
