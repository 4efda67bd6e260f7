//! `NATS_URL` naming several servers: the service connects through any node that answers, so it
//! starts (and becomes ready) while one node of the cluster is down. Real NATS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use dw_grpc_kit::startup::connect_nats;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_service_connects_through_the_node_that_answers_when_another_is_down() {
    // Port 1 on loopback: a node that is down (nothing listens there).
    let urls = format!("nats://127.0.0.1:1,{}", dw_testkit::nats_url());
    let cancel = CancellationToken::new();
    let connected = tokio::time::timeout(
        Duration::from_secs(30),
        connect_nats(&urls, &Default::default(), "nats-servers-test", Duration::from_secs(2), &cancel),
    )
    .await
    .expect("connected within 30 s")
    .expect("connected");
    // The connection works: a PING/PONG round trip with the node that answered.
    connected.flush().await.expect("the server answers");
    assert_eq!(connected.connection_state(), async_nats::connection::State::Connected);
}

#[tokio::test]
async fn a_nats_url_that_does_not_parse_is_a_start_up_error_not_an_endless_retry() {
    let cancel = CancellationToken::new();
    let refused = connect_nats(
        "nats://127.0.0.1:4222,nats://b:notaport",
        &Default::default(),
        "x",
        Duration::from_secs(1),
        &cancel,
    )
    .await;
    assert!(refused.is_err());
}
