//! SIGTERM / Ctrl-C handling: cancels the service's token so every owned task drains and stops.

use tokio_util::sync::CancellationToken;

/// Waits for SIGTERM or Ctrl-C (or `cancel` from elsewhere), then cancels `cancel`.
pub async fn cancel_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("ctrl-c received, shutting down"),
        () = terminate => tracing::info!("sigterm received, shutting down"),
        () = cancel.cancelled() => {}
    }
    cancel.cancel();
}
