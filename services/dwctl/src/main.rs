//! `dwctl`: the Digital Workspace command-line client for operators and demos.
//!
//! See `dwctl --help` (and `dwctl <command> --help`) for every command.

// A command-line client prints by design.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod admin;
mod auth;
mod cli;
mod day;
mod demo;
mod events;
mod inbound;
mod messaging;
mod notifications;
mod output;
mod parse;
mod rpc;
mod tasks;
mod webhooks;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser as _;

use crate::cli::{Cli, Command, DemoCommand, EventsCommand};
use crate::output::Printer;
use crate::rpc::Rpc;

/// The deadline of each unary RPC unless --timeout-seconds says otherwise.
const DEFAULT_RPC_TIMEOUT_SECONDS: u64 = 10;

/// A locally detected misuse (exit status 2, like clap's own usage errors).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

async fn run(cli: Cli) -> Result<()> {
    let Cli { global, command } = cli;
    let timeout = Duration::from_secs(global.timeout_seconds.unwrap_or(DEFAULT_RPC_TIMEOUT_SECONDS));
    match command {
        Command::Token => {
            let token = auth::mint_from_options(&global)?;
            if global.json {
                let expires_at = chrono::Utc::now() + chrono::Duration::seconds(global.ttl_seconds);
                let value = serde_json::json!({
                    "token": token,
                    "expiresAt": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                });
                output::write_line(&serde_json::to_string_pretty(&value)?)
            } else {
                output::write_line(&token)
            }
        }
        Command::Day(command) => {
            day::validate(&command)?;
            let printer = Printer::new(global.json)?;
            let rpc = connect(&global, &global.addr, timeout).await?;
            day::run(command, &rpc, &printer).await
        }
        Command::Admin(command) => {
            let printer = Printer::new(global.json)?;
            let rpc = connect(&global, &global.addr, timeout).await?;
            admin::run(command, &rpc, &printer).await
        }
        Command::Tasks(command) => {
            tasks::validate(&command)?;
            let printer = Printer::new(global.json)?;
            let rpc = connect(&global, &global.distribution_addr, timeout).await?;
            tasks::run(command, &rpc, &printer).await
        }
        Command::Templates(command) => {
            messaging::validate_templates(&command)?;
            let printer = Printer::new(global.json)?;
            let rpc = connect(&global, &global.messaging_addr, timeout).await?;
            messaging::templates(command, &rpc, &printer).await
        }
        Command::Messages(command) => {
            let printer = Printer::new(global.json)?;
            let rpc = connect(&global, &global.messaging_addr, timeout).await?;
            let wait = global.timeout_seconds.map_or(messaging::DEFAULT_WAIT, Duration::from_secs);
            messaging::messages(command, &rpc, &printer, wait).await
        }
        Command::Contacts(command) => {
            let printer = Printer::new(global.json)?;
            let rpc = connect(&global, &global.messaging_addr, timeout).await?;
            messaging::contacts(command, &rpc, &printer).await
        }
        Command::Notifications(command) => {
            notifications::validate(&command)?;
            let printer = Printer::new(global.json)?;
            let rpc = connect(&global, &global.notifications_addr, timeout).await?;
            notifications::run(command, &rpc, &printer).await
        }
        Command::Webhooks(command) => {
            let printer = Printer::new(global.json)?;
            let rpc = connect(&global, &global.notifications_addr, timeout).await?;
            webhooks::run(command, &rpc, &printer).await
        }
        Command::Events(EventsCommand::Tail(args)) => events::tail(args, global.json).await,
        Command::Demo(DemoCommand::Seed) => demo::seed(&global, timeout).await,
        Command::Demo(DemoCommand::Inbound(args)) => inbound::publish(&global, *args).await,
    }
}

async fn connect(global: &cli::GlobalOpts, addr: &str, timeout: Duration) -> Result<Rpc> {
    let token = auth::resolve(global)?;
    Rpc::connect(addr, &token, Some(timeout), global.request_id.clone()).await
}

/// Prints an error to stderr and picks the exit status: 2 for usage errors, 1 otherwise. A gRPC
/// error is printed with its code, message and `google.rpc` details.
fn report(err: &anyhow::Error) -> ExitCode {
    let broken_pipe = err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        // The reader went away (`dwctl … | head`): nothing left to say.
        return ExitCode::SUCCESS;
    }
    if let Some(usage) = err.downcast_ref::<UsageError>() {
        eprintln!("error: {usage}");
        return ExitCode::from(2);
    }
    if let Some(status) = err.chain().find_map(|cause| cause.downcast_ref::<tonic::Status>()) {
        let context: Vec<String> = err
            .chain()
            .take_while(|cause| cause.downcast_ref::<tonic::Status>().is_none())
            .map(ToString::to_string)
            .collect();
        if !context.is_empty() {
            eprintln!("{}:", context.join(": "));
        }
        eprint!("{}", rpc::describe_status(status));
        return ExitCode::FAILURE;
    }
    eprintln!("error: {err:#}");
    ExitCode::FAILURE
}
