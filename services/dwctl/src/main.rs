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
mod event_log;
mod events;
mod failure;
mod inbound;
mod messaging;
mod notifications;
mod output;
mod paging;
mod parse;
mod rpc;
mod streaming;
mod tasks;
#[cfg(test)]
mod testing;
mod webhooks;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser as _;

use crate::cli::{Cli, Command, DemoCommand, EventsCommand, GlobalOpts};
use crate::output::Printer;
use crate::rpc::Rpc;

/// The deadline of each unary RPC unless --timeout-seconds says otherwise.
const DEFAULT_RPC_TIMEOUT_SECONDS: u64 = 10;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failure::report(&err),
    }
}

async fn run(cli: Cli) -> Result<()> {
    let Cli { global, command } = cli;
    let timeout = Duration::from_secs(global.timeout_seconds.unwrap_or(DEFAULT_RPC_TIMEOUT_SECONDS));
    match command {
        Command::Token => auth::print_token(&global),
        Command::Day(command) => {
            day::validate(&command)?;
            let (rpc, printer) = connect(&global, &global.addr, timeout).await?;
            day::run(command, &rpc, &printer).await
        }
        Command::Admin(command) => {
            let (rpc, printer) = connect(&global, &global.addr, timeout).await?;
            admin::run(command, &rpc, &printer).await
        }
        Command::Tasks(command) => {
            tasks::validate(&command)?;
            let (rpc, printer) = connect(&global, &global.distribution_addr, timeout).await?;
            tasks::run(command, &rpc, &printer).await
        }
        Command::Templates(command) => {
            messaging::templates::validate(&command)?;
            let (rpc, printer) = connect(&global, &global.messaging_addr, timeout).await?;
            messaging::templates::run(command, &rpc, &printer).await
        }
        Command::Messages(command) => {
            let (rpc, printer) = connect(&global, &global.messaging_addr, timeout).await?;
            let wait = global.timeout_seconds.map_or(messaging::messages::DEFAULT_WAIT, Duration::from_secs);
            messaging::messages::run(command, &rpc, &printer, wait).await
        }
        Command::Contacts(command) => {
            let (rpc, printer) = connect(&global, &global.messaging_addr, timeout).await?;
            messaging::contacts::run(command, &rpc, &printer).await
        }
        Command::Providers(command) => {
            messaging::providers::validate(&command)?;
            let (rpc, printer) = connect(&global, &global.messaging_addr, timeout).await?;
            messaging::providers::run(command, &rpc, &printer).await
        }
        Command::Notifications(command) => {
            notifications::validate(&command)?;
            let (rpc, printer) = connect(&global, &global.notifications_addr, timeout).await?;
            notifications::run(command, &rpc, &printer).await
        }
        Command::Webhooks(command) => {
            let (rpc, printer) = connect(&global, &global.notifications_addr, timeout).await?;
            webhooks::run(command, &rpc, &printer).await
        }
        Command::Events(EventsCommand::Tail(args)) => events::tail(args, global.json).await,
        Command::Events(EventsCommand::Log(args)) => {
            let plan = event_log::plan(&args, global.tenant.as_deref())?;
            let (rpc, _) = connect(&global, event_log::address(&global, plan.owner), timeout).await?;
            event_log::run(plan, &rpc, global.json).await
        }
        Command::Demo(DemoCommand::Seed) => demo::seed(&global, timeout).await,
        Command::Demo(DemoCommand::Inbound(args)) => inbound::publish(&global, *args).await,
    }
}

/// What a service command needs: an authenticated channel to `addr`, and a printer for `--json`
/// or text.
async fn connect(global: &GlobalOpts, addr: &str, timeout: Duration) -> Result<(Rpc, Printer)> {
    let printer = Printer::new(global.json)?;
    let token = auth::resolve(global)?;
    let rpc = Rpc::connect(addr, &global.client_tls(), &token, Some(timeout), global.request_id.clone()).await?;
    Ok((rpc, printer))
}
