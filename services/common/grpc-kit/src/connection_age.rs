//! How long a client may keep one gRPC connection, so that replicas the autoscaler adds get
//! traffic from long-lived clients (a ClusterIP Service balances per connection, not per RPC).
//!
//! Two steps, as gRPC's `MAX_CONNECTION_AGE` / `MAX_CONNECTION_AGE_GRACE` (proposal A9):
//!
//! 1. At `max_age` the server sends HTTP/2 `GOAWAY` (tonic's `Server::max_connection_age`): the
//!    client opens a new connection — through the Service, so possibly to another replica — for
//!    its next RPCs, while the RPCs already running on the old one continue.
//! 2. At `max_age + grace` every server stream still open on that connection (`WatchMyTasks`,
//!    `Subscribe`, `WatchAgentStatuses`; unary calls have long finished, `grace` is at least the
//!    server's request timeout) ends with `UNAVAILABLE` in its trailers ([`StreamDeadlineLayer`]),
//!    so the connection empties and closes. The client resumes the stream on a new connection:
//!    the watches start with a snapshot, `Subscribe` takes `after_sequence`.
//! 3. [`HARD_CLOSE_AFTER`] later the connection's I/O fails ([`AgeLimitedIo`]), for a client that
//!    keeps it open although nothing runs on it any more.
//!
//! Why not tonic's own `max_connection_age_grace`: in tonic 0.14.9 setting it *replaces* the
//! graceful step (the connection timer sleeps `max_age + grace`, then drops the connection without
//! a `GOAWAY`), so every RPC in flight at that moment would be cut, and a stream cut by a dropped
//! connection ends on a tonic client with `UNKNOWN` ("h2 protocol error"), not `UNAVAILABLE`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

/// How long after its streams were ended a connection is closed at the socket.
pub const HARD_CLOSE_AFTER: Duration = Duration::from_secs(5);

/// `DW_GRPC_MAX_CONNECTION_AGE_SECONDS` and `DW_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionAge {
    /// When the server asks the client to move to a new connection (`GOAWAY`).
    pub max_age: Duration,
    /// How long the RPCs running at that moment may continue before the connection is closed.
    pub grace: Duration,
}

/// When each open connection ends its streams, by peer address (one TCP connection per address
/// at a time), so that a request can find the deadline of the connection it arrived on.
#[derive(Clone, Default)]
pub struct Connections {
    streams_end_at: Arc<Mutex<HashMap<SocketAddr, Instant>>>,
}

impl Connections {
    fn open(&self, peer: SocketAddr, at: Instant) {
        self.streams_end_at.lock().unwrap_or_else(PoisonError::into_inner).insert(peer, at);
    }

    fn close(&self, peer: SocketAddr) {
        self.streams_end_at.lock().unwrap_or_else(PoisonError::into_inner).remove(&peer);
    }

    fn streams_end_at(&self, peer: SocketAddr) -> Option<Instant> {
        self.streams_end_at.lock().unwrap_or_else(PoisonError::into_inner).get(&peer).copied()
    }
}

/// Asks the client to reconnect (`GOAWAY`) once a connection is `max_age` old; no limit when `None`.
pub fn apply<L>(server: tonic::transport::Server<L>, limit: Option<ConnectionAge>) -> tonic::transport::Server<L> {
    match limit {
        Some(limit) => server.max_connection_age(limit.max_age),
        None => server,
    }
}

/// Records each accepted connection's deadlines in `connections` (for [`StreamDeadlineLayer`])
/// and closes it [`HARD_CLOSE_AFTER`] its streams ended; nothing when `limit` is `None`.
pub fn limit_incoming<S, IO>(
    incoming: S,
    limit: Option<ConnectionAge>,
    connections: Connections,
) -> impl Stream<Item = io::Result<AgeLimitedIo<IO>>>
where
    S: Stream<Item = io::Result<IO>>,
    IO: Connected<ConnectInfo = TcpConnectInfo>,
{
    incoming.map(move |accepted| {
        accepted.map(|io| {
            let Some(limit) = limit else {
                return AgeLimitedIo::new(io, None, None);
            };
            let streams_end_at = Instant::now() + limit.max_age + limit.grace;
            let peer = io.connect_info().remote_addr;
            if let Some(peer) = peer {
                connections.open(peer, streams_end_at);
            }
            let registered = peer.map(|peer| (connections.clone(), peer));
            AgeLimitedIo::new(io, Some(streams_end_at + HARD_CLOSE_AFTER), registered)
        })
    })
}

/// A connection that fails every read and write after its deadline, which makes the HTTP/2 server
/// drop it.
pub struct AgeLimitedIo<IO> {
    inner: IO,
    deadline: Option<Pin<Box<Sleep>>>,
    registered: Option<(Connections, SocketAddr)>,
}

impl<IO> Drop for AgeLimitedIo<IO> {
    fn drop(&mut self) {
        if let Some((connections, peer)) = self.registered.take() {
            connections.close(peer);
        }
    }
}

impl<IO> AgeLimitedIo<IO> {
    fn new(inner: IO, deadline: Option<Instant>, registered: Option<(Connections, SocketAddr)>) -> Self {
        Self { inner, deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))), registered }
    }

    /// An error once the deadline passed; otherwise registers the waker for it, so that an idle
    /// connection (whose read is pending) is woken and closed on time.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(deadline) = self.deadline.as_mut() else {
            return Ok(());
        };
        if deadline.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "grpc connection closed: older than max connection age + grace"))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for AgeLimitedIo<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Err(expired) = self.check(cx) {
            return Poll::Ready(Err(expired));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AgeLimitedIo<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Err(expired) = self.check(cx) {
            return Poll::Ready(Err(expired));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Err(expired) = self.check(cx) {
            return Poll::Ready(Err(expired));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for AgeLimitedIo<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Ends every response still streaming when its connection reaches `max_age + grace` with
/// `UNAVAILABLE` ("resume on a new connection") in the trailers, instead of letting the socket
/// close under it. Responses on connections without a deadline pass untouched.
#[derive(Clone)]
pub struct StreamDeadlineLayer {
    connections: Connections,
}

impl StreamDeadlineLayer {
    pub fn new(connections: Connections) -> Self {
        Self { connections }
    }
}

impl<S> Layer<S> for StreamDeadlineLayer {
    type Service = StreamDeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StreamDeadlineService { inner, connections: self.connections.clone() }
    }
}

#[derive(Clone)]
pub struct StreamDeadlineService<S> {
    inner: S,
    connections: Connections,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> Service<http::Request<B>> for StreamDeadlineService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<DeadlineBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // Plaintext connections carry `TcpConnectInfo`, TLS ones (crate::grpc_tls) `TlsConnectInfo`.
        let extensions = request.extensions();
        let peer = extensions
            .get::<TcpConnectInfo>()
            .or_else(|| extensions.get::<TlsConnectInfo<TcpConnectInfo>>().map(TlsConnectInfo::get_ref))
            .and_then(|info| info.remote_addr);
        let ends_at = peer.and_then(|peer| self.connections.streams_end_at(peer));
        let response = self.inner.call(request);
        Box::pin(async move { Ok(response.await?.map(|body| DeadlineBody::new(body, ends_at))) })
    }
}

/// A response body that, at its deadline, stops and sends `UNAVAILABLE` trailers.
pub struct DeadlineBody<B> {
    inner: Pin<Box<B>>,
    deadline: Option<Pin<Box<Sleep>>>,
    ended: bool,
}

impl<B> DeadlineBody<B> {
    fn new(inner: B, ends_at: Option<Instant>) -> Self {
        Self {
            inner: Box::pin(inner),
            deadline: ends_at.map(|at| Box::pin(tokio::time::sleep_until(at))),
            ended: false,
        }
    }
}

fn unavailable_trailers() -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
    trailers.insert(
        "grpc-message",
        http::HeaderValue::from_static(
            "connection%20reached%20its%20max%20age%2C%20resume%20on%20a%20new%20connection",
        ),
    );
    trailers
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let expired = self.deadline.as_mut().is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
        if expired {
            self.ended = true;
            return Poll::Ready(Some(Ok(Frame::trailers(unavailable_trailers()))));
        }
        let polled = self.inner.as_mut().poll_frame(cx);
        // After the inner body's own trailers (its status) nothing more may be sent.
        let finished = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(frame))) => frame.is_trailers(),
            _ => false,
        };
        if finished {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_connection_works_until_its_deadline_then_every_read_and_write_fails() {
        let (client, server) = tokio::io::duplex(64);
        let mut client = client;
        let mut io = AgeLimitedIo::new(server, Some(Instant::now() + Duration::from_secs(10)), None);

        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        // A read pending at the deadline is woken and fails (an idle HTTP/2 connection).
        let pending_read = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            let failed = io.read(&mut buf).await.expect_err("closed at the deadline");
            (io, failed)
        });
        tokio::time::sleep(Duration::from_secs(11)).await;
        let (mut io, failed) = pending_read.await.unwrap();
        assert_eq!(failed.kind(), io::ErrorKind::TimedOut);
        assert!(io.write_all(b"x").await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_limit_a_connection_never_expires() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = AgeLimitedIo::new(server, None, None);
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        client.write_all(b"ok").await.unwrap();
        let mut buf = [0u8; 2];
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ok");
    }
}
