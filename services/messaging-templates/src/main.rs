//! messaging-templates binary: `messaging-templates` serves; `messaging-templates migrate` applies migrations and exits;
//! `messaging-templates dead-letters list|replay …` lists or replays the events its consumers gave up on.

use messaging_templates::server;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = dw_telemetry::init("messaging-templates", dw_telemetry::LogFormat::from_env())?;
    let config = messaging_templates::config::from_env()?;
    tracing::info!(?config, "starting");
    let cancel = CancellationToken::new();
    tokio::spawn(dw_grpc_kit::shutdown::cancel_on_signal(cancel.clone()));
    match std::env::args().nth(1).as_deref() {
        Some("migrate") => server::migrate(&config, &cancel).await?,
        Some("dead-letters") => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            server::dead_letters(&config, &cancel, &args).await?;
        }
        None | Some("serve") => server::run(config, cancel).await?,
        Some(other) => {
            anyhow::bail!("unknown command {other:?}; use `serve` (default), `migrate` or `dead-letters`")
        }
    }
    Ok(())
}
