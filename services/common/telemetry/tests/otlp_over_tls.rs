//! Spans reach an OTLP collector over https:// that trusts only its own CA (made here with rcgen):
//! the exporter trusts it through `OTEL_EXPORTER_OTLP_CERTIFICATE`; without it nothing arrives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_sdk::trace::SdkTracerProvider;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct Collector {
    span_names: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut names = self.span_names.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                names.extend(scope.spans.into_iter().map(|span| span.name));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA file in `dir` and a server identity (localhost) it signed.
fn certificates(dir: &std::path::Path, name: &str) -> (PathBuf, Identity) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_file = dir.join(format!("{name}.crt"));
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&server_key, &issuer).unwrap();
    (ca_file, Identity::from_pem(server.pem(), server_key.serialize_pem()))
}

/// Exports one span named `name` through an exporter built with `env`, and flushes.
async fn export_one(endpoint: &str, env: HashMap<&'static str, String>, name: &'static str) {
    let exporter = dw_telemetry::otlp_exporter(Some(endpoint), &|key| env.get(key).cloned()).unwrap();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).build();
    provider.tracer("test").in_span(name, |_| {});
    // The batch processor exports from its own thread; flushing waits for it.
    tokio::task::spawn_blocking(move || {
        let _ = provider.force_flush();
        let _ = provider.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_collector_trusted_through_otel_exporter_otlp_certificate() {
    let dir = Dir(std::env::temp_dir().join(format!("dw-otlp-tls-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let (ca_file, identity) = certificates(&dir.0, "collector-ca");
    let (other_ca_file, _) = certificates(&dir.0, "other-ca");
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(identity))
        .unwrap()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    let endpoint = format!("https://localhost:{port}");

    // Trusting another CA: the collector's certificate is refused.
    let other = HashMap::from([("OTEL_EXPORTER_OTLP_CERTIFICATE", other_ca_file.display().to_string())]);
    export_one(&endpoint, other, "untrusted").await;
    assert!(collector.span_names.lock().unwrap().is_empty(), "nothing crosses an untrusted TLS connection");

    let env = HashMap::from([("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file.display().to_string())]);
    export_one(&endpoint, env, "over-tls").await;
    assert_eq!(*collector.span_names.lock().unwrap(), ["over-tls"]);

    // A client certificate without its key is a configuration error, named.
    let half = HashMap::from([("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", ca_file.display().to_string())]);
    let error = dw_telemetry::otlp_exporter(Some(&endpoint), &|key| half.get(key).cloned()).err().unwrap();
    assert!(error.to_string().contains("OTEL_EXPORTER_OTLP_CLIENT_KEY"), "{error}");
}
