//! Wiring: the shared bootstrap plus the template and contact services.

use std::sync::Arc;

use dw_grpc_kit::AuthInterceptor;
use dw_grpc_kit::bootstrap::{self, Bootstrap};
use dw_proto::messaging::v1::contact_service_server::ContactServiceServer;
use dw_proto::messaging::v1::template_service_server::TemplateServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Config;
use crate::grpc::contacts::ContactGrpc;
use crate::grpc::templates::TemplateGrpc;

pub use dw_grpc_kit::bootstrap::BootstrapError as ServeError;

pub const SERVICE_NAMES: [&str; 2] = ["dw.messaging.v1.TemplateService", "dw.messaging.v1.ContactService"];

pub async fn migrate(config: &Config, cancel: &CancellationToken) -> Result<(), ServeError> {
    bootstrap::migrate(config, &crate::MIGRATOR, cancel).await
}

pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), ServeError> {
    let listener =
        TcpListener::bind(config.grpc_addr).await.map_err(|e| ServeError::Bind(config.grpc_addr.to_string(), e))?;
    run_with_listener(config, listener, cancel).await
}

pub async fn run_with_listener(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let mut boot = Bootstrap::connect("messaging-templates", config, &crate::MIGRATOR, cancel).await?;
    boot.start_relay().await?;
    let app = Arc::new(App::new(boot.pool.clone()));
    let auth = AuthInterceptor::new(boot.verifier.clone());
    let routes = tonic::service::Routes::new(TemplateServiceServer::with_interceptor(
        TemplateGrpc::new(app.clone()),
        auth.clone(),
    ))
    .add_service(ContactServiceServer::with_interceptor(ContactGrpc::new(app), auth));
    boot.serve(listener, routes, &SERVICE_NAMES, &[dw_proto::FILE_DESCRIPTOR_SET]).await
}
