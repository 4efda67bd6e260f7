//! The live streams (`WatchMyTasks`, `WatchAgentStatuses`, `Subscribe`): one component for all.
//!
//! A replica follows its source once — an ordered JetStream consumer on the service's own
//! stream ([`follow_stream`]) or a Postgres `LISTEN` — and hands each change to a [`Feed`], which
//! fans it out to the open streams whose key it concerns. A stream is opened before its caller
//! reads the starting state (the current tasks, the board, the backlog after a sequence), so no
//! change falls between the two. The feed bounds what one tenant holds open
//! (`DW_TENANT_MAX_STREAMS` per replica), drops a stream that cannot keep up with
//! `RESOURCE_EXHAUSTED` instead of slowing the others, and ends every stream at shutdown so the
//! server can drain.
//!
//! An idle stream is kept open through proxies (an ingress cuts a response that sends nothing for
//! its read timeout, 60 s by default) by [`Heartbeats`]: after `DW_STREAM_HEARTBEAT_SECS` without
//! an item, the stream sends a heartbeat — the RPC's own message with only its `heartbeat` marker
//! set, which clients ignore. Every live RPC wraps its stream with [`Feed::heartbeats`], so the
//! timer lives here once.

use std::collections::HashMap;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use dw_ids::TenantId;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;
use tracing::warn;

use crate::errors;

/// How a stream takes what it cannot receive at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Every item matters: a stream whose buffer is full is ended with `RESOURCE_EXHAUSTED`
    /// (the client reconnects and reads the current state again).
    Disconnect,
    /// Items are wake-ups: one already waiting stands for the next ones.
    Coalesce,
}

/// What a feed allows.
#[derive(Debug, Clone, Copy)]
pub struct FeedLimits {
    /// Open streams per tenant on this replica.
    pub streams_per_tenant: usize,
    /// Items buffered per stream.
    pub buffer: usize,
    pub overflow: Overflow,
    /// How long a stream stays silent before it sends a heartbeat (`DW_STREAM_HEARTBEAT_SECS`).
    pub heartbeat: Duration,
}

type Sender<T> = mpsc::Sender<Result<T, Status>>;

struct Inner<K, T> {
    watchers: Mutex<HashMap<K, Vec<Sender<T>>>>,
    open_per_tenant: Mutex<HashMap<TenantId, usize>>,
    limits: FeedLimits,
    cancel: CancellationToken,
}

/// Open streams by key (an agent, a tenant's board …), fed by the replica's one reader.
pub struct Feed<K, T> {
    inner: Arc<Inner<K, T>>,
}

impl<K, T> Clone for Feed<K, T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

/// A stream just opened: `start` takes the starting state (it waits for room, unlike
/// [`Feed::publish`]); `stream` is what the RPC returns.
pub struct Opened<T> {
    pub start: mpsc::Sender<Result<T, Status>>,
    pub stream: LiveStream<T>,
}

impl<K: Eq + Hash + Clone + Send + 'static, T: Clone + Send + 'static> Feed<K, T> {
    /// A feed whose streams all end when `cancel` fires.
    pub fn new(limits: FeedLimits, cancel: CancellationToken) -> Self {
        let inner = Inner {
            watchers: Mutex::new(HashMap::new()),
            open_per_tenant: Mutex::new(HashMap::new()),
            limits,
            cancel: cancel.clone(),
        };
        let feed = Self { inner: Arc::new(inner) };
        let closing = feed.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            closing.close_all();
        });
        feed
    }

    /// Opens a stream for `key` of `tenant`: `UNAVAILABLE` while shutting down,
    /// `RESOURCE_EXHAUSTED` when the tenant already holds its share of streams.
    pub fn open(&self, tenant: &TenantId, key: K) -> Result<Opened<T>, Status> {
        if self.inner.cancel.is_cancelled() {
            return Err(errors::unavailable("shutting down"));
        }
        let slot = StreamSlot::take(&self.inner, tenant)?;
        let (sender, receiver) = mpsc::channel(self.inner.limits.buffer.max(1));
        if let Ok(mut watchers) = self.inner.watchers.lock() {
            watchers.entry(key).or_default().push(sender.clone());
        }
        Ok(Opened { start: sender, stream: LiveStream { inner: ReceiverStream::new(receiver), _slot: Box::new(slot) } })
    }

    /// `stream` with a heartbeat after each silence of the feed's heartbeat interval: `beat`
    /// makes the message (the RPC's own, with only its heartbeat marker set). For a stream this
    /// feed opened, or one fed from it (a stream of wake-ups that reads its items elsewhere).
    pub fn heartbeats<S, M>(&self, stream: S, beat: fn() -> M) -> Heartbeats<S, M>
    where
        S: Stream<Item = Result<M, Status>> + Unpin,
    {
        Heartbeats::new(stream, self.inner.limits.heartbeat, beat)
    }

    /// Whether any open stream waits for `key` (to skip reading what nobody will receive).
    pub fn wants(&self, key: &K) -> bool {
        !self.senders(key).is_empty()
    }

    /// Whether any open stream has a key that `matches` (e.g. any board of one tenant).
    pub fn wants_any(&self, matches: impl Fn(&K) -> bool) -> bool {
        let Ok(watchers) = self.inner.watchers.lock() else { return false };
        watchers.iter().any(|(key, list)| matches(key) && list.iter().any(|s| !s.is_closed()))
    }

    /// Hands `item` to every stream of `key`, never waiting.
    pub fn publish(&self, key: &K, item: T) {
        for sender in self.senders(key) {
            match sender.try_send(Ok(item.clone())) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) if self.inner.limits.overflow == Overflow::Coalesce => {}
                Err(mpsc::error::TrySendError::Full(_)) => self.drop_slow(key, &sender),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Ends every open stream (at shutdown, so the server can drain).
    pub fn close_all(&self) {
        if let Ok(mut watchers) = self.inner.watchers.lock() {
            watchers.clear();
        }
    }

    /// The open streams of `key`, forgetting those whose caller went away.
    fn senders(&self, key: &K) -> Vec<Sender<T>> {
        let Ok(mut watchers) = self.inner.watchers.lock() else { return Vec::new() };
        let Some(list) = watchers.get_mut(key) else { return Vec::new() };
        list.retain(|s| !s.is_closed());
        let senders = list.clone();
        if list.is_empty() {
            watchers.remove(key);
        }
        senders
    }

    /// A stream that cannot keep up is told why and forgotten; its caller reconnects.
    fn drop_slow(&self, key: &K, slow: &Sender<T>) {
        if let Ok(mut watchers) = self.inner.watchers.lock()
            && let Some(list) = watchers.get_mut(key)
        {
            list.retain(|s| !s.same_channel(slow));
        }
        // The buffer is full: the error waits for room, then the stream ends.
        let slow = slow.clone();
        tokio::spawn(async move {
            let reason = errors::resource_exhausted(
                "STREAM_TOO_SLOW",
                "the stream could not keep up; reconnect to resume",
                Duration::from_secs(1),
            );
            let _ = tokio::time::timeout(Duration::from_secs(30), slow.send(Err(reason))).await;
        });
    }
}

/// One open stream counted against its tenant until it is dropped.
struct StreamSlot<K, T> {
    inner: Arc<Inner<K, T>>,
    tenant: TenantId,
}

impl<K, T> StreamSlot<K, T> {
    fn take(inner: &Arc<Inner<K, T>>, tenant: &TenantId) -> Result<Self, Status> {
        let Ok(mut open) = inner.open_per_tenant.lock() else {
            return Err(errors::unavailable("stream registry unavailable"));
        };
        let count = open.entry(tenant.clone()).or_default();
        if *count >= inner.limits.streams_per_tenant {
            return Err(errors::resource_exhausted(
                "TOO_MANY_STREAMS",
                format!("the tenant holds {} open streams on this replica, the most allowed; close one first", *count),
                Duration::from_secs(5),
            ));
        }
        *count += 1;
        Ok(Self { inner: inner.clone(), tenant: tenant.clone() })
    }
}

impl<K, T> Drop for StreamSlot<K, T> {
    fn drop(&mut self) {
        if let Ok(mut open) = self.inner.open_per_tenant.lock()
            && let Some(count) = open.get_mut(&self.tenant)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

/// What a live RPC returns: the stream's items; its tenant's slot is given back when the caller
/// goes away.
pub struct LiveStream<T> {
    inner: ReceiverStream<Result<T, Status>>,
    _slot: Box<dyn Send + Sync>,
}

impl<T> Stream for LiveStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// A live stream that sends a heartbeat (`beat()`) whenever `every` passes without an item, so
/// that proxies with a read timeout do not cut an idle stream. The stream ends when its inner
/// stream does.
pub struct Heartbeats<S, M> {
    inner: S,
    every: Duration,
    silence: Pin<Box<tokio::time::Sleep>>,
    beat: fn() -> M,
}

impl<S, M> Heartbeats<S, M> {
    pub fn new(inner: S, every: Duration, beat: fn() -> M) -> Self {
        Self { inner, every, silence: Box::pin(tokio::time::sleep(every)), beat }
    }

    fn restart_silence(&mut self) {
        let deadline = tokio::time::Instant::now() + self.every;
        self.silence.as_mut().reset(deadline);
    }
}

impl<S, M> Stream for Heartbeats<S, M>
where
    S: Stream<Item = Result<M, Status>> + Unpin,
{
    type Item = Result<M, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                this.restart_silence();
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if this.silence.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.restart_silence();
        Poll::Ready(Some(Ok((this.beat)())))
    }
}

/// Follows the service's own JetStream stream from now on (one ordered consumer per replica,
/// filtered to `filter_subject`), calling `each` for every message until `cancel`. A broken
/// consumer is recreated after a backoff; what was published meanwhile is not replayed (live
/// streams re-read the current state when they reconnect).
pub fn follow_stream<F, Fut>(
    jetstream: jetstream::Context,
    stream_name: String,
    filter_subject: String,
    tasks: &TaskTracker,
    cancel: CancellationToken,
    each: F,
) where
    F: Fn(jetstream::Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let each = Arc::new(each);
    follow_stream_batches(jetstream, stream_name, filter_subject, tasks, cancel, 1, move |batch| {
        let each = each.clone();
        async move {
            for message in batch {
                each(message).await;
            }
        }
    });
}

/// [`follow_stream`], calling `each_batch` with the messages already received when it is called
/// (up to `max_batch`, in stream order; at least one), so a follower that reads the database per
/// message can read for many at once and keep up under load. Batches are handled one after the
/// other.
pub fn follow_stream_batches<F, Fut>(
    jetstream: jetstream::Context,
    stream_name: String,
    filter_subject: String,
    tasks: &TaskTracker,
    cancel: CancellationToken,
    max_batch: usize,
    each_batch: F,
) where
    F: Fn(Vec<jetstream::Message>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    use futures::FutureExt;
    let max_batch = max_batch.max(1);
    tasks.spawn(async move {
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            let followed = async {
                let stream = jetstream.get_stream(&stream_name).await.map_err(|e| e.to_string())?;
                let config = OrderedConfig {
                    filter_subject: filter_subject.clone(),
                    deliver_policy: DeliverPolicy::New,
                    ..Default::default()
                };
                let consumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
                let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
                backoff = Duration::from_millis(100);
                loop {
                    let next = tokio::select! {
                        () = cancel.cancelled() => return Ok(()),
                        next = messages.next() => next,
                    };
                    let mut batch = vec![next.ok_or("the consumer ended")?.map_err(|e| e.to_string())?];
                    // What else has arrived, without waiting; an error after it ends the batch
                    // and is reported once the batch is handled.
                    let mut broken = None;
                    while batch.len() < max_batch {
                        match messages.next().now_or_never() {
                            Some(Some(Ok(message))) => batch.push(message),
                            Some(Some(Err(error))) => {
                                broken = Some(error.to_string());
                                break;
                            }
                            Some(None) => {
                                broken = Some("the consumer ended".to_owned());
                                break;
                            }
                            None => break,
                        }
                    }
                    each_batch(batch).await;
                    if let Some(reason) = broken {
                        return Err(reason);
                    }
                }
            };
            let result: Result<(), String> = followed.await;
            if let Err(reason) = result {
                warn!(%reason, stream = %stream_name, "live feed interrupted, following again");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(streams_per_tenant: usize, buffer: usize, overflow: Overflow) -> FeedLimits {
        FeedLimits { streams_per_tenant, buffer, overflow, heartbeat: Duration::from_secs(15) }
    }

    fn tenant(name: &str) -> TenantId {
        match TenantId::parse(name) {
            Ok(tenant) => tenant,
            Err(error) => panic!("{error}"),
        }
    }

    #[tokio::test]
    async fn an_item_reaches_only_the_streams_of_its_key() {
        let feed: Feed<&str, u32> = Feed::new(limits(10, 8, Overflow::Disconnect), CancellationToken::new());
        let mut ana = feed.open(&tenant("acme"), "ana").unwrap().stream;
        let mut bob = feed.open(&tenant("acme"), "bob").unwrap().stream;
        feed.publish(&"ana", 7);
        assert_eq!(ana.next().await.unwrap().unwrap(), 7);
        assert!(feed.wants(&"bob"));
        assert!(tokio::time::timeout(Duration::from_millis(50), bob.next()).await.is_err());
    }

    #[tokio::test]
    async fn a_tenant_cannot_open_more_than_its_share_and_gets_it_back_on_close() {
        let feed: Feed<&str, u32> = Feed::new(limits(2, 8, Overflow::Disconnect), CancellationToken::new());
        let first = feed.open(&tenant("acme"), "ana").unwrap();
        let _second = feed.open(&tenant("acme"), "bob").unwrap();
        let refused = feed.open(&tenant("acme"), "carl").err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        // Another tenant is not affected.
        assert!(feed.open(&tenant("globex"), "ana").is_ok());
        drop(first);
        assert!(feed.open(&tenant("acme"), "carl").is_ok());
    }

    #[tokio::test]
    async fn a_stream_that_cannot_keep_up_is_ended_and_the_others_still_receive() {
        let feed: Feed<&str, u32> = Feed::new(limits(10, 2, Overflow::Disconnect), CancellationToken::new());
        let mut slow = feed.open(&tenant("acme"), "ana").unwrap().stream;
        for n in 0..3 {
            feed.publish(&"ana", n);
        }
        assert!(!feed.wants(&"ana"), "the slow stream is forgotten");
        assert_eq!(slow.next().await.unwrap().unwrap(), 0);
        assert_eq!(slow.next().await.unwrap().unwrap(), 1);
        assert_eq!(slow.next().await.unwrap().unwrap_err().code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn wake_ups_coalesce_instead_of_ending_the_stream() {
        let feed: Feed<&str, ()> = Feed::new(limits(10, 1, Overflow::Coalesce), CancellationToken::new());
        let mut wakes = feed.open(&tenant("acme"), "ana").unwrap().stream;
        for _ in 0..5 {
            feed.publish(&"ana", ());
        }
        assert!(feed.wants(&"ana"));
        assert!(wakes.next().await.unwrap().is_ok());
        assert!(tokio::time::timeout(Duration::from_millis(50), wakes.next()).await.is_err());
    }

    #[tokio::test]
    async fn shutdown_ends_every_stream_and_refuses_new_ones() {
        let cancel = CancellationToken::new();
        let feed: Feed<&str, u32> = Feed::new(limits(10, 8, Overflow::Disconnect), cancel.clone());
        let Opened { start, mut stream } = feed.open(&tenant("acme"), "ana").unwrap();
        drop(start);
        cancel.cancel();
        assert!(tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().is_none());
        assert_eq!(feed.open(&tenant("acme"), "ana").err().unwrap().code(), tonic::Code::Unavailable);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_sends_heartbeats_and_items_pass_between_them() {
        let feed: Feed<&str, i32> = Feed::new(limits(10, 8, Overflow::Disconnect), CancellationToken::new());
        let opened = feed.open(&tenant("acme"), "ana").unwrap();
        let mut stream = feed.heartbeats(opened.stream, || -1);
        let started = tokio::time::Instant::now();
        assert_eq!(stream.next().await.unwrap().unwrap(), -1, "a heartbeat on the idle stream");
        assert_eq!(started.elapsed(), Duration::from_secs(15));

        // An item is delivered at once, untouched, and postpones the next heartbeat.
        tokio::time::sleep(Duration::from_secs(10)).await;
        feed.publish(&"ana", 7);
        assert_eq!(stream.next().await.unwrap().unwrap(), 7);
        let after_item = tokio::time::Instant::now();
        assert_eq!(stream.next().await.unwrap().unwrap(), -1);
        assert_eq!(after_item.elapsed(), Duration::from_secs(15), "counted from the last item");

        // The stream still ends with its feed.
        drop(opened.start);
        feed.close_all();
        assert!(stream.next().await.is_none());
    }
}
