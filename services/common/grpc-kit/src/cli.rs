//! The entry point of every service binary: `<service> [serve]`, `<service> migrate`,
//! `<service> dead-letters list|replay`, `<service> quarantine list|release` and
//! `<service> projections list|rebuild`, with `--help`
//! and `--version`, built from the service's [`Service`] description.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use dw_bus::dead_letters::{Command as DeadLetterCommand, USAGE, main_command};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bootstrap::{self, BootstrapError};
use crate::service::Service;

#[derive(Debug, Parser)]
#[command(version, about = "A Digital Workspace service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC (the default): migrate when DW_RUN_MIGRATIONS, start the relay and consumers.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// List or replay the events this service's consumers gave up on (JSON lines).
    #[command(subcommand)]
    DeadLetters(DeadLetters),
    /// List or release the outbox events the relay set aside because JetStream refused them
    /// (JSON lines); a released event is published with the events of its stream that waited.
    #[command(subcommand)]
    Quarantine(Quarantine),
    /// List the read models this service keeps from its own events, or rebuild one from its
    /// event store while the live one keeps serving (JSON lines; progress on stderr).
    #[command(subcommand)]
    Projections(Projections),
}

#[derive(Debug, Subcommand, PartialEq)]
enum Projections {
    /// The read models and their tables.
    List,
    /// Rebuild one read model: a shadow copy from the event store, then one swap.
    Rebuild {
        /// The read model's name (from `list`).
        name: String,
        /// Only this tenant's rows.
        #[arg(long)]
        tenant: Option<String>,
        /// Parallel lanes (connections) applying events that touch different rows [default: the
        /// model's, 4 or 2 for a set-based one].
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
        lanes: Option<u8>,
    },
}

#[derive(Debug, Subcommand, PartialEq)]
enum Quarantine {
    /// The held events, oldest first, with how many of their stream's events wait behind each.
    List,
    /// Give one held event (by its outbox position) or all of them back to the relay.
    Release {
        /// The held event's outbox position (from `list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        position: Option<i64>,
        /// Every held event.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLetters {
    /// The pending dead letters, oldest first.
    List {
        /// Only this consumer's.
        #[arg(long)]
        consumer: Option<String>,
    },
    /// Replay one dead letter (by id) or all pending ones through the consumer's projection.
    Replay(Replay),
}

#[derive(Debug, Args)]
struct Replay {
    /// The dead letter's id.
    #[arg(value_parser = dead_letter_id, required_unless_present = "all", conflicts_with = "all")]
    id: Option<i64>,
    /// Every pending dead letter.
    #[arg(long)]
    all: bool,
    /// With --all: only this consumer's.
    #[arg(long, requires = "all", conflicts_with = "id")]
    consumer: Option<String>,
}

fn dead_letter_id(value: &str) -> Result<i64, String> {
    value.parse().map_err(|_| format!("a dead letter id is a number; usage: {USAGE}"))
}

impl DeadLetters {
    fn command(self) -> DeadLetterCommand {
        match self {
            Self::List { consumer } => DeadLetterCommand::List { consumer },
            Self::Replay(Replay { id: Some(id), .. }) => DeadLetterCommand::ReplayOne(id),
            Self::Replay(Replay { consumer, .. }) => DeadLetterCommand::ReplayAll { consumer },
        }
    }
}

/// Runs the binary of service `S`: parses the arguments, starts telemetry, reads the
/// configuration and runs the subcommand until it ends or SIGTERM/SIGINT.
pub fn main<S: Service>() -> anyhow::Result<()> {
    let matches = Cli::command().name(S::NAME).bin_name(S::NAME).get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run::<S>(cli.command.unwrap_or(Command::Serve)))
}

async fn run<S: Service>(command: Command) -> anyhow::Result<()> {
    let _telemetry = dw_telemetry::init(S::NAME, dw_telemetry::LogFormat::from_env())?;
    let config = (S::CONFIG_FROM_ENV)()?;
    tracing::info!(?config, "starting");
    let cancel = CancellationToken::new();
    tokio::spawn(crate::shutdown::cancel_on_signal(cancel.clone()));
    let shared: &crate::config::ServiceConfig = config.as_ref();
    match command {
        Command::Serve => {
            let addr = shared.grpc_addr;
            let listener = TcpListener::bind(addr).await.map_err(|e| BootstrapError::Bind(addr.to_string(), e))?;
            S::serve(config, listener, cancel).await?;
        }
        Command::Migrate => bootstrap::migrate(shared, S::MIGRATOR, &cancel).await?,
        Command::DeadLetters(action) => {
            let pool = crate::startup::connect_postgres(&shared.database_url, 2, &cancel).await?;
            // Metrics of a one-off command go nowhere.
            let consumers = S::consumers(&config, &pool, &mut prometheus_client::registry::Registry::default())?;
            let replay_one = async |name: &str, id: i64| match consumers.iter().find(|c| c.name() == name) {
                Some(consumer) => Some(consumer.replay(&pool, id).await),
                None => None,
            };
            main_command(&pool, &action.command(), replay_one).await.map_err(anyhow::Error::msg)?;
        }
        Command::Quarantine(action) => {
            let pool = crate::startup::connect_postgres(&shared.database_url, 2, &cancel).await?;
            quarantine(&pool, action).await?;
        }
        Command::Projections(action) => projections(S::read_models(), shared, action, &cancel).await?,
    }
    Ok(())
}

/// `quarantine list|release`: JSON lines on stdout.
async fn quarantine(pool: &sqlx::PgPool, action: Quarantine) -> anyhow::Result<()> {
    use dw_eventstore::quarantine;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match action {
        Quarantine::List => {
            for held in quarantine::list(pool).await? {
                writeln!(out, "{}", serde_json::to_string(&held)?)?;
            }
        }
        Quarantine::Release { position: Some(position), .. } => {
            if !quarantine::release(pool, position).await? {
                anyhow::bail!("nothing is held at outbox position {position}");
            }
            writeln!(out, "{}", serde_json::json!({ "position": position, "released": true }))?;
        }
        Quarantine::Release { position: None, .. } => {
            let released = quarantine::release_all(pool).await?;
            writeln!(out, "{}", serde_json::json!({ "released": released }))?;
        }
    }
    Ok(())
}

/// `projections list|rebuild`: JSON lines on stdout, the rebuild's progress on stderr.
async fn projections(
    models: Vec<Box<dyn dw_eventstore::rebuild::ReadModel>>,
    shared: &crate::config::ServiceConfig,
    action: Projections,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    use std::io::Write;
    match action {
        Projections::List => {
            let pool = crate::startup::connect_postgres(&shared.database_url, 1, cancel).await?;
            let statuses = dw_eventstore::rebuild::statuses(&pool).await?;
            let mut out = std::io::stdout().lock();
            for model in &models {
                let last = statuses.iter().find(|s| s.read_model == model.name());
                let line = serde_json::json!({ "name": model.name(), "tables": model.tables(), "last_rebuild": last });
                writeln!(out, "{line}")?;
            }
        }
        Projections::Rebuild { name, tenant, lanes } => {
            let Some(model) = models.iter().find(|m| m.name() == name) else {
                let names: Vec<&str> = models.iter().map(|m| m.name()).collect();
                anyhow::bail!("no read model {name:?}; this service has: {}", names.join(", "));
            };
            let tenant = tenant
                .map(|t| dw_ids::TenantId::parse(&t).map_err(|e| anyhow::anyhow!("--tenant {t:?}: {e}")))
                .transpose()?;
            let lanes = lanes.map_or_else(|| model.default_lanes(), usize::from);
            let pool = crate::startup::connect_postgres(&shared.database_url, lanes as u32 + 2, cancel).await?;
            let mut last_shown = std::time::Instant::now();
            let rebuilt = dw_eventstore::rebuild::rebuild(&pool, model.as_ref(), tenant.as_ref(), lanes, |progress| {
                if last_shown.elapsed() >= std::time::Duration::from_secs(1) {
                    last_shown = std::time::Instant::now();
                    if let Ok(line) = serde_json::to_string(&progress) {
                        eprintln!("{line}");
                    }
                }
            })
            .await?;
            writeln!(std::io::stdout().lock(), "{}", serde_json::to_string(&rebuilt)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Option<Command>, clap::Error> {
        Cli::try_parse_from(std::iter::once("svc").chain(line.split_whitespace())).map(|cli| cli.command)
    }

    fn dead_letters(line: &str) -> DeadLetterCommand {
        match parse(line) {
            Ok(Some(Command::DeadLetters(action))) => action.command(),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn subcommands_parse_and_mistakes_say_the_usage() {
        assert!(matches!(parse(""), Ok(None)), "serve is the default");
        assert!(matches!(parse("serve"), Ok(Some(Command::Serve))));
        assert!(matches!(parse("migrate"), Ok(Some(Command::Migrate))));
        assert_eq!(dead_letters("dead-letters list"), DeadLetterCommand::List { consumer: None });
        assert_eq!(
            dead_letters("dead-letters list --consumer notifications-messaging"),
            DeadLetterCommand::List { consumer: Some("notifications-messaging".into()) }
        );
        assert_eq!(dead_letters("dead-letters replay 42"), DeadLetterCommand::ReplayOne(42));
        assert_eq!(dead_letters("dead-letters replay --all"), DeadLetterCommand::ReplayAll { consumer: None });
        assert_eq!(
            dead_letters("dead-letters replay --all --consumer x"),
            DeadLetterCommand::ReplayAll { consumer: Some("x".into()) }
        );
        let quarantine = |line: &str| match parse(line) {
            Ok(Some(Command::Quarantine(action))) => action,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(quarantine("quarantine list"), Quarantine::List);
        assert_eq!(quarantine("quarantine release 7"), Quarantine::Release { position: Some(7), all: false });
        assert_eq!(quarantine("quarantine release --all"), Quarantine::Release { position: None, all: true });
        for refused in ["quarantine release", "quarantine release 7 --all", "quarantine release x"] {
            assert!(parse(refused).is_err(), "{refused}");
        }
        let projections = |line: &str| match parse(line) {
            Ok(Some(Command::Projections(action))) => action,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(projections("projections list"), Projections::List);
        assert_eq!(
            projections("projections rebuild read-models"),
            Projections::Rebuild { name: "read-models".into(), tenant: None, lanes: None }
        );
        assert_eq!(
            projections("projections rebuild read-models --tenant acme --lanes 16"),
            Projections::Rebuild { name: "read-models".into(), tenant: Some("acme".into()), lanes: Some(16) }
        );
        for refused in ["projections rebuild", "projections rebuild x --lanes 0", "projections rebuild x --lanes 17"] {
            assert!(parse(refused).is_err(), "{refused}");
        }
        let wrong = parse("dead-letters replay seven").unwrap_err().to_string();
        assert!(wrong.contains("usage"), "{wrong}");
        for refused in
            ["dead-letters replay", "dead-letters replay 1 --all", "dead-letters replay 1 --consumer x", "bogus"]
        {
            assert!(parse(refused).is_err(), "{refused}");
        }
    }
}
