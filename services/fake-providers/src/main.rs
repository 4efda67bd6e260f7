//! `fake-providers`: a fake WhatsApp Cloud API (`DW_FAKE_WHATSAPP_ADDR`, default 127.0.0.1:8091)
//! and a fake SMS Messages API (`DW_FAKE_SMS_ADDR`, default 127.0.0.1:8092) for local runs. With
//! `DW_FAKE_STATUS_WEBHOOK` and `DW_FAKE_WHATSAPP_APP_SECRET`, every accepted WhatsApp message is
//! followed by signed `delivered` and `read` status webhooks (`DW_FAKE_STATUS_DELAY_MS` apart,
//! default 300) naming `DW_FAKE_WHATSAPP_PHONE_NUMBER_ID` (default: the send's); with
//! `DW_FAKE_SMS_STATUS_WEBHOOK` and `DW_FAKE_SMS_AUTH_TOKEN`, every accepted SMS by a signed
//! `delivered` callback. Logs as the services do (`DW_LOG_FORMAT`, `RUST_LOG`). Ctrl-C or SIGTERM
//! stops it.

use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = dw_telemetry::init("fake-providers", dw_telemetry::LogFormat::from_env())?;
    let config = fake_providers::Config::from_env()?;
    let cancel = CancellationToken::new();
    tokio::spawn(dw_grpc_kit::shutdown::cancel_on_signal(cancel.clone()));
    fake_providers::run(config, cancel).await?;
    tracing::info!("stopped");
    Ok(())
}
