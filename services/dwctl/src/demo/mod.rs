//! `dwctl demo seed`: idempotent demo data for one tenant, acting as `manager-1`: agent-sessions
//! first, then task-distribution's settings and messaging-templates' templates and CRM contacts
//! (as `crm-bot`), each when that service answers (agent-sessions alone is enough to seed).
//! notifications needs no data of its own (ana's `notifications.view` comes with every permission
//! of the catalog): when it answers, its examples are printed too.
//!
//! Every mutating call uses a fixed request id (`seed-<tenant>-…`), so re-running the seed is
//! harmless: the server answers a repeated request id from the same caller with its first result.
//! Agents, departments and permissions already in place are also skipped, and so are templates
//! whose channel and name an active template already has.

mod agent_sessions;
mod distribution;
mod messaging;
mod notifications;

use std::time::Duration;

use anyhow::{Result, anyhow};
use dw_auth::Role;
use dw_proto::agentsessions::v1::Agent;
use serde_json::{Value, json};
use tonic::Code;

use self::distribution::Distribution;
use self::messaging::Messaging;
use self::notifications::Notifications;
use crate::auth;
use crate::cli::GlobalOpts;
use crate::output::{self as out, Printer, names};
use crate::rpc::{self, ClientTls, Rpc};

pub const DEFAULT_TENANT: &str = "demo";
pub const MANAGER: &str = "manager-1";
/// The service account of the demo's CRM, which creates tasks (role `service`).
pub const CRM_BOT: &str = "crm-bot";
const TOKEN_TTL_SECONDS: i64 = 12 * 3600;

/// The tokens the seed acts with, printed after seeding.
pub struct Tokens {
    pub manager: String,
    pub ana: String,
    pub bruno: String,
    pub crm_bot: String,
}

impl Tokens {
    fn mint(secret: &str, tenant: &str) -> Result<Self> {
        let ttl = TOKEN_TTL_SECONDS;
        Ok(Self {
            manager: auth::mint(secret, tenant, MANAGER, &[Role::Manager], ttl)?,
            ana: auth::mint(secret, tenant, "ana", &[Role::Agent], ttl)?,
            bruno: auth::mint(secret, tenant, "bruno", &[Role::Agent], ttl)?,
            crm_bot: auth::mint(secret, tenant, CRM_BOT, &[Role::Service], ttl)?,
        })
    }
}

/// What seeding a service that may not run yet came to.
#[derive(Debug)]
pub enum Seeding<T> {
    Seeded(T),
    /// The service does not answer (not running yet, or not this cluster's): why.
    Skipped(String),
}

impl<T> Seeding<T> {
    /// The `--json` report of one service: what `seeded` says about it, or why it was skipped;
    /// with its address either way.
    fn report(&self, addr: &str, seeded: impl FnOnce(&T) -> Result<Value>) -> Result<Value> {
        let mut report = match self {
            Seeding::Seeded(value) => seeded(value)?,
            Seeding::Skipped(why) => json!({ "skipped": why }),
        };
        report["addr"] = json!(addr);
        Ok(report)
    }
}

/// The fixed request id of one seed step: `seed-<tenant>-<step>`.
pub fn request_id(tenant: &str, step: &str) -> String {
    format!("seed-{tenant}-{step}")
}

/// Whether a gRPC error means "the service is not (really) there", which skips its part of the
/// seed, rather than a failure of the seed itself.
pub fn not_answering(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Unimplemented | Code::DeadlineExceeded | Code::Unauthenticated)
}

/// Connects to a service that may not run yet; the error says why its part is skipped.
async fn connect_or_skip(addr: &str, tls: &ClientTls, token: &str, timeout: Duration) -> Result<Rpc, String> {
    Rpc::connect(addr, tls, token, Some(timeout), None).await.map_err(|err| format!("{err:#}"))
}

/// The answer to the first call to a service that may not run yet: seeded; skipped when the
/// service does not answer; otherwise the seed fails (`doing` says what the call was for).
fn answered<T>(answer: Result<tonic::Response<T>, tonic::Status>, doing: &'static str) -> Result<Seeding<T>> {
    match answer {
        Ok(response) => Ok(Seeding::Seeded(response.into_inner())),
        Err(status) if not_answering(status.code()) => Ok(Seeding::Skipped(skipped(&status))),
        Err(status) => Err(anyhow::Error::new(status).context(doing)),
    }
}

fn skipped(status: &tonic::Status) -> String {
    let mut why = rpc::code_name(status.code()).to_owned();
    if !status.message().is_empty() {
        why.push_str(&format!(": {}", status.message()));
    }
    if status.code() == Code::Unauthenticated {
        why.push_str("; is it signed with another DW_JWT_SECRET?");
    }
    why
}

/// On stderr: which service did not answer, and what the seed leaves out because of it.
fn skip_note(service: &str, addr: &str, why: &str, left_out: &str) {
    eprintln!("note: {service} at {addr} does not answer ({why}); {left_out} are skipped (seed again once it runs)");
}

/// `export <VAR>=<addr>` and a line break, unless `addr` is dwctl's default.
fn export_addr(var: &str, addr: &str, default: &str) -> String {
    if addr == default { String::new() } else { format!("export {var}={addr}\n") }
}

pub async fn seed(opts: &GlobalOpts, timeout: Duration) -> Result<()> {
    let tenant = opts.tenant.clone().unwrap_or_else(|| DEFAULT_TENANT.to_owned());
    let secret = auth::signing_secret(opts)?
        .ok_or_else(|| anyhow!("demo seed needs --secret (DW_JWT_SECRET) or --secret-file (DW_JWT_SECRET_FILE)"))?;
    let tokens = Tokens::mint(&secret, &tenant)?;
    let log = |line: String| if opts.json { Ok(()) } else { out::write_line(&line) };

    let tls = opts.client_tls();
    let agents = agent_sessions::seed(&opts.addr, &tls, &tenant, &tokens.manager, timeout, &log).await?;

    let distribution = distribution::seed(&opts.distribution_addr, &tls, &tenant, &tokens.manager, timeout).await?;
    match &distribution {
        Seeding::Seeded(settings) => log(format!(
            "  distribution ({}): default capacity {}, inbound department {}, auto distribution {}",
            opts.distribution_addr,
            settings.default_capacity,
            settings.inbound_department_id,
            out::on_off(settings.auto_distribution_enabled)
        ))?,
        Seeding::Skipped(why) => {
            skip_note("task-distribution", &opts.distribution_addr, why, "its settings and the task examples")
        }
    }

    let messaging = messaging::seed(&opts.messaging_addr, &tls, &tenant, &tokens, timeout).await?;
    match &messaging {
        Seeding::Seeded(seeded) => messaging::log_seeded(seeded, &opts.messaging_addr, &log)?,
        Seeding::Skipped(why) => skip_note(
            "messaging-templates",
            &opts.messaging_addr,
            why,
            "its templates, contacts and the messaging examples",
        ),
    }

    let notifications = notifications::probe(&opts.notifications_addr, &tls, &tokens.manager, timeout).await?;
    match &notifications {
        Seeding::Seeded(()) => log(format!("  notifications ({}): answering", opts.notifications_addr))?,
        Seeding::Skipped(why) => skip_note("notifications", &opts.notifications_addr, why, "the notification examples"),
    }

    let seeded = Seeded { tenant, agents, tokens, distribution, messaging, notifications };
    if opts.json {
        out::write_line(&serde_json::to_string_pretty(&seeded.report(opts)?)?)
    } else {
        out::write_line(&seeded.instructions(opts))
    }
}

/// Everything the seed came to.
struct Seeded {
    tenant: String,
    agents: Vec<Agent>,
    tokens: Tokens,
    distribution: Distribution,
    messaging: Messaging,
    notifications: Notifications,
}

impl Seeded {
    /// The `--json` report: the tenant, the tokens, the agents and each service's part.
    fn report(&self, opts: &GlobalOpts) -> Result<Value> {
        let printer = Printer::new(true)?;
        let tokens = &self.tokens;
        Ok(json!({
            "tenant": self.tenant,
            "addr": opts.addr,
            "tokenTtlSeconds": TOKEN_TTL_SECONDS,
            "tokens": { MANAGER: tokens.manager, "ana": tokens.ana, "bruno": tokens.bruno, CRM_BOT: tokens.crm_bot },
            "agents": self.agents.iter().map(|a| json!({
                "agentId": a.agent_id,
                "displayName": a.display_name,
                "departmentIds": a.department_ids,
                "permissions": a.permissions,
            })).collect::<Vec<_>>(),
            "distribution": self.distribution.report(&opts.distribution_addr, |settings| {
                Ok(json!({ "settings": printer.to_json(names::DISTRIBUTION_SETTINGS, settings)? }))
            })?,
            "messaging": self.messaging.report(&opts.messaging_addr, |seeded| messaging::report(seeded, &printer))?,
            "notifications": self.notifications.report(&opts.notifications_addr, |()| Ok(json!({})))?,
        }))
    }

    /// The ready-to-paste commands, for every service that answered.
    fn instructions(&self, opts: &GlobalOpts) -> String {
        let distribution_addr = match self.distribution {
            Seeding::Seeded(_) => Some(opts.distribution_addr.as_str()),
            Seeding::Skipped(_) => None,
        };
        let mut text = instructions(&self.tenant, &opts.addr, distribution_addr, &self.tokens);
        if let Seeding::Seeded(seeded) = &self.messaging {
            text.push_str(&messaging::instructions(&opts.messaging_addr, seeded, &self.tokens));
        }
        if let Seeding::Seeded(()) = self.notifications {
            let with_tasks = distribution_addr.is_some();
            let addr = &opts.notifications_addr;
            text.push_str(&notifications::instructions(&self.tenant, addr, with_tasks, &self.tokens));
        }
        text
    }
}

/// The ready-to-paste commands printed after seeding; the task examples only when
/// task-distribution (at `distribution_addr`) was seeded.
pub fn instructions(tenant: &str, addr: &str, distribution_addr: Option<&str>, tokens: &Tokens) -> String {
    let mut exports = export_addr("DW_AGENT_SESSIONS_ADDR", addr, agent_sessions::DEFAULT_ADDR);
    let Some(distribution_addr) = distribution_addr else {
        return agent_sessions::instructions(tenant, &exports, tokens);
    };
    exports.push_str(&export_addr("DW_TASK_DISTRIBUTION_ADDR", distribution_addr, distribution::DEFAULT_ADDR));
    agent_sessions::instructions(tenant, &exports, tokens) + &distribution::instructions(tenant, &exports, tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn tokens() -> Tokens {
        Tokens { manager: "MGR".into(), ana: "ANA".into(), bruno: "BRUNO".into(), crm_bot: "CRM".into() }
    }

    /// The address of a port that was free a moment ago: a connection to it is refused at once.
    pub(super) fn unused_addr() -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        format!("http://127.0.0.1:{port}")
    }

    #[test]
    fn request_ids_are_fixed_per_tenant_and_step() {
        assert_eq!(request_id("demo", "register-ana"), "seed-demo-register-ana");
        assert_eq!(request_id("acme", "grant-bruno-protocols.search"), "seed-acme-grant-bruno-protocols.search");
    }

    #[test]
    fn instructions_export_the_tokens_and_the_address_when_not_default() {
        let text = instructions("demo", "http://127.0.0.1:50051", None, &tokens());
        assert!(text.contains("export DW_TOKEN=ANA\n"));
        assert!(text.contains("export DW_TOKEN=MGR\n"));
        assert!(!text.contains("DW_AGENT_SESSIONS_ADDR"));
        let text = instructions("demo", "http://10.0.0.5:50051", None, &tokens());
        assert!(text.contains("export DW_AGENT_SESSIONS_ADDR=http://10.0.0.5:50051\n"));
    }

    #[test]
    fn task_examples_only_when_task_distribution_was_seeded() {
        let text = instructions("demo", "http://127.0.0.1:50051", None, &tokens());
        assert!(!text.contains("tasks") && !text.contains("CRM"), "{text}");
        let text = instructions("demo", "http://127.0.0.1:50051", Some("http://127.0.0.1:50052"), &tokens());
        assert!(text.contains("export DW_TOKEN=CRM\ndwctl tasks create --department support"), "{text}");
        assert!(text.contains("dwctl day start\ndwctl tasks watch\n"), "{text}");
        assert!(text.contains("dwctl demo inbound --tenant demo --phone +5511987654321"), "{text}");
        assert!(text.contains("dwctl tasks stats\n"), "{text}");
        assert!(!text.contains("DW_TASK_DISTRIBUTION_ADDR"), "{text}");
        let text = instructions("demo", "http://127.0.0.1:50051", Some("http://10.0.0.5:50052"), &tokens());
        assert!(text.contains("export DW_TASK_DISTRIBUTION_ADDR=http://10.0.0.5:50052\nexport DW_TOKEN=ANA"));
    }

    #[test]
    fn an_absent_task_distribution_skips_while_real_errors_fail() {
        assert!(not_answering(Code::Unavailable));
        assert!(not_answering(Code::Unimplemented));
        assert!(not_answering(Code::DeadlineExceeded));
        assert!(not_answering(Code::Unauthenticated));
        assert!(!not_answering(Code::InvalidArgument));
        assert!(!not_answering(Code::PermissionDenied));
        assert_eq!(request_id("demo", "distribution-settings"), "seed-demo-distribution-settings");
    }
}
