//! From a command's commit straight to the relay of its process, without reading the outbox.
//!
//! The command kernel ([`crate::command`]) collects what its appends queued in the outbox (the
//! events as stored, with their outbox positions) while the command runs, and once it committed
//! hands them to the relay active in this process for the same database, which publishes them
//! at once (`outbox_relay`'s fast lane). The outbox stays the record: the lane only takes an
//! event whose stream's previous event JetStream already acknowledged, and anything it does not
//! take, cannot hand over (no relay active here: a standby replica; a full queue) or fails to
//! publish is read from the outbox as before, after a wake ([`crate::wake_relay`]).
//!
//! A writer outside the kernel with one transaction (a bus consumer's reaction, an inbound
//! webhook) gets the same through [`handing_over`]: its events are handed over only once its
//! transaction committed through [`crate::commit`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::store::RecordedEvent;

/// An event a command committed, with its outbox position.
#[derive(Debug, Clone)]
pub(crate) struct Committed {
    pub position: i64,
    pub event: RecordedEvent,
}

tokio::task_local! {
    /// What the running command's appends queued ([`collected`]).
    static COLLECTED: RefCell<Vec<Committed>>;
}

/// Whether the running command collects what it appends: only then do the appends copy their
/// events for the relay.
pub(crate) fn collecting() -> bool {
    COLLECTED.try_with(|_| ()).is_ok()
}

/// Adds what an append queued to the running command's collection (none: nothing happens).
pub(crate) fn collect(committed: impl IntoIterator<Item = Committed>) {
    let _outside = COLLECTED.try_with(|collected| collected.borrow_mut().extend(committed));
}

/// Runs `work` (one attempt of a command), collecting the events its appends queue.
pub(crate) async fn collected<F: Future>(work: F) -> (F::Output, Vec<Committed>) {
    COLLECTED
        .scope(RefCell::new(Vec::new()), async move {
            let output = work.await;
            let collected = COLLECTED.with(RefCell::take);
            (output, collected)
        })
        .await
}

tokio::task_local! {
    /// Whether the transaction a [`handing_over`] runs committed through [`crate::commit`].
    static COMMITTED_IN_SCOPE: Cell<bool>;
}

/// Runs `work`: one transaction outside the command kernel (a bus consumer's reaction, say)
/// that appends events and commits through [`crate::commit`]. Once it has committed, its events
/// go to this process's active relay for `pool`'s database, as a command's do; when it did not
/// commit that way (an error, a rollback), what it appended is not handed over (those outbox
/// positions never existed) and the relays are only woken. One transaction per call: a rolled-back
/// transaction and a committed one in the same call could not be told apart.
///
/// `work` is boxed here: the returned future holds a pointer, not `work` and its scopes inline,
/// so callers that join several of them (a consumer's lanes) keep their futures, and the stack
/// they are polled on, as small as before.
pub fn handing_over<F: Future>(pool: &PgPool, work: F) -> impl Future<Output = F::Output> {
    let pool = pool.clone();
    let work = Box::pin(collected(COMMITTED_IN_SCOPE.scope(Cell::new(false), async move {
        let output = work.await;
        (output, COMMITTED_IN_SCOPE.with(Cell::get))
    })));
    async move {
        let ((output, committed_here), events) = work.await;
        if committed_here {
            committed(&pool, events);
        } else if !events.is_empty() {
            crate::wake_relay();
        }
        output
    }
}

/// Called by [`crate::commit`] once its transaction committed: true inside a [`handing_over`],
/// which then hands the events over (and wakes when it cannot), so `commit` need not wake.
pub(crate) fn note_commit() -> bool {
    COMMITTED_IN_SCOPE.try_with(|committed| committed.set(true)).is_ok()
}

/// Called once what `events` were collected from has committed: hands them to the relay active
/// in this process for `pool`'s database, or, when there is none or it cannot take them now,
/// wakes the relays (in process, and the active one of another replica).
pub(crate) fn committed(pool: &PgPool, events: Vec<Committed>) {
    if events.is_empty() || !hand_over(pool, events) {
        crate::wake_relay();
    }
}

/// The relay registered for a database, while it leads.
struct Registered {
    term: u64,
    sender: mpsc::Sender<Vec<Committed>>,
}

static LANES: LazyLock<Mutex<HashMap<String, Registered>>> = LazyLock::new(Default::default);
static TERMS: AtomicU64 = AtomicU64::new(0);

/// Which database a pool writes to: the relay of the same database takes its commands' events
/// (tests run several services, each with its own database, in one process).
fn database_key(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or_default())
}

fn hand_over(pool: &PgPool, events: Vec<Committed>) -> bool {
    let key = database_key(pool);
    let lanes = LANES.lock().unwrap_or_else(PoisonError::into_inner);
    lanes.get(&key).is_some_and(|lane| lane.sender.try_send(events).is_ok())
}

/// A relay's registration for its database's commits, while it leads: dropped, it ends (and
/// what is still queued for it stays in the outbox).
pub(crate) struct Registration {
    key: String,
    term: u64,
}

/// Registers the relay of `pool`'s database; commits hand it their events through the receiver
/// (up to `capacity` commits queued, then they fall back to the outbox).
pub(crate) fn register(pool: &PgPool, capacity: usize) -> (Registration, mpsc::Receiver<Vec<Committed>>) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let key = database_key(pool);
    let term = TERMS.fetch_add(1, Ordering::Relaxed);
    LANES.lock().unwrap_or_else(PoisonError::into_inner).insert(key.clone(), Registered { term, sender });
    (Registration { key, term }, receiver)
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut lanes = LANES.lock().unwrap_or_else(PoisonError::into_inner);
        if lanes.get(&self.key).is_some_and(|lane| lane.term == self.term) {
            lanes.remove(&self.key);
        }
    }
}
