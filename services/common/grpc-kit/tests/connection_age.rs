//! Max connection age on a real tonic server and client (the server kit's wiring, with the
//! health service's `Watch` as the server stream): after the age the client's next calls go over
//! a new connection while an open stream continues; after the grace the stream ends and the
//! client resumes it on a new connection. deploy/README.md (Network) states the same for clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dw_grpc_kit::connection_age::{self, ConnectionAge};
use futures::StreamExt;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;

const SERVICE: &str = "dw.test.v1.Probe";

fn request() -> HealthCheckRequest {
    HealthCheckRequest { service: SERVICE.to_owned() }
}

#[tokio::test]
async fn an_old_connection_hands_new_calls_to_a_new_one_and_its_streams_end_after_the_grace() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status(SERVICE, ServingStatus::Serving).await;

    let limit = Some(ConnectionAge { max_age: Duration::from_secs(1), grace: Duration::from_secs(2) });
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let incoming = TcpIncoming::from(listener).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let connections = connection_age::Connections::default();
    tokio::spawn(
        connection_age::apply(Server::builder(), limit)
            .layer(connection_age::StreamDeadlineLayer::new(connections.clone()))
            .add_service(health)
            .serve_with_incoming(connection_age::limit_incoming(incoming, limit, connections)),
    );

    let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut client = HealthClient::new(channel);
    let mut stream = client.watch(request()).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.status, WireStatus::Serving as i32);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // Past the age: the server has sent GOAWAY, and the open stream still delivers.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    reporter.set_service_status(SERVICE, ServingStatus::NotServing).await;
    let during_grace = tokio::time::timeout(Duration::from_secs(1), stream.message()).await;
    let during_grace = during_grace.expect("delivered during the grace").unwrap().unwrap();
    assert_eq!(during_grace.status, WireStatus::NotServing as i32);

    // A unary call after the GOAWAY: a tonic (hyper) client whose connection still carries a
    // stream fails the first call it routes there with CANCELLED "connection closed" — the call
    // was never written to the wire, so retrying it is safe — and reconnects for the next one
    // (gRPC-Go and grpc-java clients reconnect without failing a call).
    let first_try = client.check(request()).await;
    if let Err(status) = &first_try {
        assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    }
    let checked = match first_try {
        Ok(response) => response,
        Err(_) => client.check(request()).await.expect("the retry succeeds over a new connection"),
    };
    assert_eq!(checked.into_inner().status, WireStatus::NotServing as i32);
    assert!(accepted.load(Ordering::SeqCst) >= 2, "the call after the GOAWAY used a new connection");

    // At age + grace the stream ends with UNAVAILABLE (a clean end, in the trailers) ...
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.expect("ended after the grace");
    let status = ended.expect_err("the stream ends with an error, not a clean end");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // ... and the client resumes it on a new connection.
    let mut resumed = client.watch(request()).await.expect("resumed").into_inner();
    let again = resumed.message().await.unwrap().unwrap();
    assert_eq!(again.status, WireStatus::NotServing as i32);
}
