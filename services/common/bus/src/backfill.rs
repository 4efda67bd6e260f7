//! Backfill from the owner: a consumer created after its stream dropped old messages (the stream's
//! `max_age` or `max_bytes`) reads what it missed from the producing service's own event store
//! (its `ReadEvents` RPC, behind [`EventSource`]) before it starts on the stream.
//!
//! The backfill applies every event of the owner's store up to the store's head at the start, in
//! store order (each aggregate's events in order), through the same effectively-once path as the
//! stream; the consumer then starts at the stream's first message. What both deliver is applied
//! once (`processed_events`), so nothing is missed and nothing repeats.

use std::fmt::Debug;

use futures::future::BoxFuture;

use crate::InboundEvent;

/// One event read from the owner's store.
#[derive(Debug, Clone)]
pub struct SourcedEvent {
    /// The owner's global position.
    pub position: i64,
    /// The event as a consumer of the stream would receive it (its `subject` the NATS subject).
    pub event: InboundEvent,
}

/// The owner's event log, read forward.
pub trait EventSource: Send + Sync + Debug {
    /// The position of the owner's newest event (0 for an empty store).
    fn head(&self) -> BoxFuture<'_, Result<i64, String>>;

    /// Up to `limit` events after `after`, oldest first; empty at the end.
    fn read(&self, after: i64, limit: usize) -> BoxFuture<'_, Result<Vec<SourcedEvent>, String>>;
}

/// Whether NATS subject `subject` matches `filter` (`*` one token, `>` the rest).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in filter.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(actual)) if literal == actual => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// Whether a consumer with `filters` (empty: the whole stream) receives `subject`.
pub fn receives(filters: &[String], subject: &str) -> bool {
    filters.is_empty() || filters.iter().any(|filter| subject_matches(filter, subject))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_like_nats() {
        assert!(subject_matches("dw.a.*.agent.>", "dw.a.acme.agent.x.registered"));
        assert!(subject_matches("dw.a.>", "dw.a.acme"));
        assert!(!subject_matches("dw.a.>", "dw.a"));
        assert!(subject_matches("dw.a.*.task.created", "dw.a.acme.task.created"));
        assert!(!subject_matches("dw.a.*.task.created", "dw.a.acme.task.created.more"));
        assert!(!subject_matches("dw.a.*.task.created", "dw.a.acme.agent.created"));
        assert!(!subject_matches("dw.a.*", "dw.b.acme"));
        assert!(receives(&[], "anything.at.all"));
        assert!(receives(&["x.>".into(), "dw.>".into()], "dw.a"));
        assert!(!receives(&["x.>".into()], "dw.a"));
    }
}
