//! The active relay's fast lane: events handed over by this process's commands as they commit
//! ([`crate::handoff`]) are published at once, without waiting for a read of the outbox (on a
//! loaded database that read waits its turn behind every command: tens of milliseconds).
//!
//! The outbox stays the record and the order stays the outbox path's: the lane publishes an
//! event only when JetStream already acknowledged its stream's previous one (or it is its
//! stream's first), one stream's events one after the other, and never while the outbox path
//! publishes that stream. So every event is published after its predecessor is stored, whoever
//! publishes it; an event both publish (a read that raced the handover) is the same message id,
//! and JetStream drops the copy. What the lane does not take (a stream it has not seen
//! acknowledged yet, an event too large, a lane that is failing or full) stays for the outbox
//! path, woken at once. The lane deletes what it published from the outbox in batches; until
//! then the outbox read leaves those entries alone.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{OutboxRelay, message_size};
use crate::handoff::Committed;

/// How many streams' events the lane publishes at once; beyond, the outbox path takes them.
const MAX_CHAINS: usize = 512;

/// How many events of one stream may wait behind its chain in flight; beyond, the outbox path
/// takes them.
const MAX_QUEUED: usize = 64;

/// How many streams' last acknowledged versions the lane remembers; beyond, it forgets them all
/// (their next events go by the outbox once, which acknowledges them again).
const MAX_REMEMBERED: usize = 100_000;

/// What the lane and the outbox path of one leadership share.
#[derive(Default)]
pub(super) struct Lane {
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    /// Per stream, the highest version JetStream acknowledged (this leadership).
    acknowledged: HashMap<String, i64>,
    /// The streams the lane is publishing now: the outbox path leaves them alone.
    claimed: HashSet<String>,
    /// Per stream the lane publishes now, the events committed since, in the order they came:
    /// published once the chain in flight is acknowledged.
    queued: HashMap<String, Vec<Committed>>,
    /// The outbox positions the lane is publishing, holds or published and has not deleted yet.
    positions: HashSet<i64>,
    /// A lane publish failed and the outbox path has not published since: the lane takes
    /// nothing (the outbox path retries with its backoff).
    failing: bool,
}

/// What the outbox read must leave to the lane: the positions it holds, and the streams it is
/// publishing.
pub(super) struct Held {
    pub positions: Vec<i64>,
    pub streams: HashSet<String>,
}

impl Lane {
    fn state(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the outbox path leaves alone, taken before it reads.
    pub(super) fn held(&self) -> Held {
        let state = self.state();
        Held { positions: state.positions.iter().copied().collect(), streams: state.claimed.clone() }
    }

    /// Whether the lane is publishing `stream` now.
    pub(super) fn claims(&self, stream: &str) -> bool {
        self.state().claimed.contains(stream)
    }

    /// The outbox path published `events` (`acked[i]`: JetStream acknowledged the i-th); a
    /// publish without failure lets the lane take events again.
    pub(super) fn outbox_published<'e>(&self, events: impl Iterator<Item = (&'e str, i64, bool)>, failed: bool) {
        let mut state = self.state();
        for (stream, version, acked) in events {
            if acked {
                state.acknowledged(stream, version);
            }
        }
        if !failed {
            state.failing = false;
        }
    }
}

impl LaneState {
    fn acknowledged(&mut self, stream: &str, version: i64) {
        if self.acknowledged.len() >= MAX_REMEMBERED && !self.acknowledged.contains_key(stream) {
            self.acknowledged.clear();
        }
        let known = self.acknowledged.entry(stream.to_owned()).or_insert(version);
        *known = (*known).max(version);
    }

    /// Whether the lane may publish `chain` (one stream's events, in order) now: it follows
    /// what JetStream acknowledged of its stream.
    fn may_start(&self, chain: &[Committed]) -> bool {
        let Some(first) = chain.first() else { return false };
        let stream = first.event.stream_id.as_str();
        let after_acknowledged = first.event.version == 1
            || self.acknowledged.get(stream).is_some_and(|&known| known == first.event.version - 1);
        !self.failing && after_acknowledged && !self.claimed.contains(stream) && consecutive(chain)
    }

    /// Gives the events of `stream` queued behind its chain back to the outbox path.
    fn release_queued(&mut self, stream: &str) -> bool {
        let Some(queued) = self.queued.remove(stream) else { return false };
        for committed in &queued {
            self.positions.remove(&committed.position);
        }
        true
    }
}

/// One stream's events published by the lane: how many JetStream acknowledged, in order.
struct ChainDone {
    chain: Vec<Committed>,
    acked: usize,
    error: Option<String>,
}

impl OutboxRelay {
    /// Publishes what this process's commands hand over until `stop`, then finishes what it
    /// started (publishes in flight, deletes of what they published) and returns.
    pub(super) async fn run_lane(
        &self,
        lane: &Lane,
        mut handoffs: mpsc::Receiver<Vec<Committed>>,
        stop: &CancellationToken,
    ) {
        let mut publishing: FuturesUnordered<BoxFuture<'_, ChainDone>> = FuturesUnordered::new();
        // One delete at a time; what is acknowledged meanwhile goes in the next.
        let mut deleting: FuturesUnordered<BoxFuture<'static, (Vec<i64>, bool)>> = FuturesUnordered::new();
        let mut to_delete: Vec<i64> = Vec::new();
        let mut stopping = false;
        loop {
            if deleting.is_empty() && !to_delete.is_empty() {
                deleting.push(Box::pin(delete(self.pool.clone(), std::mem::take(&mut to_delete))));
            }
            if stopping && publishing.is_empty() && deleting.is_empty() {
                return;
            }
            tokio::select! {
                () = stop.cancelled(), if !stopping => {
                    // What is still queued stays in the outbox for the outbox path.
                    stopping = true;
                    handoffs.close();
                }
                handoff = handoffs.recv(), if !stopping => match handoff {
                    Some(events) => self.take(lane, events, &mut publishing),
                    None => stopping = true,
                },
                Some(done) = publishing.next(), if !publishing.is_empty() => {
                    to_delete.extend(self.finished(lane, done, &mut publishing));
                }
                Some((positions, deleted)) = deleting.next(), if !deleting.is_empty() => {
                    if deleted {
                        let mut state = lane.state();
                        for position in &positions {
                            state.positions.remove(position);
                        }
                    } else {
                        to_delete.extend(positions);
                    }
                }
            }
        }
    }

    /// Starts publishing the streams of `events` (one commit's) that the lane may take, queues
    /// those of streams it is publishing behind their chain in flight, and wakes the outbox path
    /// for the rest.
    fn take<'s>(
        &'s self,
        lane: &Lane,
        events: Vec<Committed>,
        publishing: &mut FuturesUnordered<BoxFuture<'s, ChainDone>>,
    ) {
        let mut chains: Vec<Vec<Committed>> = Vec::new();
        for committed in events {
            match chains.iter_mut().find(|chain| chain[0].event.stream_id == committed.event.stream_id) {
                Some(chain) => chain.push(committed),
                None => chains.push(vec![committed]),
            }
        }
        let limit = self.message_limit();
        let mut left = false;
        {
            let mut state = lane.state();
            for mut chain in chains {
                chain.sort_by_key(|committed| committed.event.version);
                let stream = chain[0].event.stream_id.clone();
                if state.failing || !chain.iter().all(|committed| message_size(&committed.event) <= limit) {
                    left = true;
                    continue;
                }
                if state.claimed.contains(&stream) {
                    let queued = state.queued.get(&stream).map_or(0, Vec::len);
                    if queued + chain.len() > MAX_QUEUED {
                        // A stream this busy goes by the outbox, in batches.
                        state.release_queued(&stream);
                        left = true;
                        continue;
                    }
                    state.positions.extend(chain.iter().map(|committed| committed.position));
                    state.queued.entry(stream).or_default().extend(chain);
                    continue;
                }
                if publishing.len() >= MAX_CHAINS || !state.may_start(&chain) {
                    left = true;
                    continue;
                }
                state.claimed.insert(stream);
                state.positions.extend(chain.iter().map(|committed| committed.position));
                publishing.push(Box::pin(self.publish_chain(chain)));
            }
        }
        if left {
            crate::wake_relay();
        }
    }

    async fn publish_chain(&self, chain: Vec<Committed>) -> ChainDone {
        let mut acked = 0;
        for committed in &chain {
            if let Err(error) = self.publish_one(&committed.event).await {
                return ChainDone { chain, acked, error: Some(error) };
            }
            acked += 1;
        }
        ChainDone { chain, acked, error: None }
    }

    /// Records what a chain's publish did and starts the events queued behind it; returns the
    /// positions to delete. What JetStream did not acknowledge, and what was queued behind it,
    /// goes back to the outbox path, woken for it.
    fn finished<'s>(
        &'s self,
        lane: &Lane,
        done: ChainDone,
        publishing: &mut FuturesUnordered<BoxFuture<'s, ChainDone>>,
    ) -> Vec<i64> {
        let ChainDone { chain, acked, error } = done;
        let Some(stream) = chain.first().map(|first| first.event.stream_id.clone()) else {
            return Vec::new();
        };
        self.metrics.lane_published.inc_by(acked as u64);
        let mut state = lane.state();
        if let Some(last) = acked.checked_sub(1).and_then(|last| chain.get(last)) {
            state.acknowledged(&last.event.stream_id, last.event.version);
        }
        for unpublished in &chain[acked..] {
            state.positions.remove(&unpublished.position);
        }
        state.claimed.remove(&stream);
        let mut left = false;
        if let Some(error) = error {
            state.failing = true;
            state.release_queued(&stream);
            left = true;
            warn!(%error, stream_id = %stream, "publish failed; the outbox path takes over");
        } else if let Some(mut next) = state.queued.remove(&stream) {
            next.sort_by_key(|committed| committed.event.version);
            if state.may_start(&next) {
                state.claimed.insert(stream);
                publishing.push(Box::pin(self.publish_chain(next)));
            } else {
                for committed in &next {
                    state.positions.remove(&committed.position);
                }
                left = true;
            }
        }
        drop(state);
        if left {
            crate::wake_relay();
        }
        debug!(events = acked, "published without reading the outbox");
        chain[..acked].iter().map(|committed| committed.position).collect()
    }
}

/// Whether `chain`'s versions follow each other.
fn consecutive(chain: &[Committed]) -> bool {
    chain.windows(2).all(|pair| pair[1].event.version == pair[0].event.version + 1)
}

/// Deletes `positions` from the outbox; whether it did (a failure pauses a little, and the
/// caller tries again with what was acknowledged meanwhile).
async fn delete(pool: sqlx::PgPool, positions: Vec<i64>) -> (Vec<i64>, bool) {
    let deleted = match pool.acquire().await {
        Ok(mut conn) => super::delete_published(&mut conn, &positions).await,
        Err(error) => Err(error),
    };
    if let Err(error) = &deleted {
        warn!(%error, "published events not deleted from the outbox yet, retrying");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (positions, deleted.is_ok())
}
