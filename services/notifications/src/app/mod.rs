//! Everything of notifications that does I/O outside a consumer: the mutations (webhook endpoints,
//! redeliveries, browser subscriptions), each an attempt run by the kernel's command path
//! (idempotent by `request_id`, in one transaction); the webhook and Web Push delivery workers;
//! the notifier that wakes agents' streams; the resolution of outbound destinations.

pub mod browser_subscriptions;
pub mod destination;
pub mod notifier;
pub mod push_delivery;
pub mod webhook_delivery;
pub mod webhook_endpoints;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use dw_eventstore::command::{self, Attempt};
use dw_eventstore::{CommandContext, CommandError};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use crate::domain::DomainError;
pub use browser_subscriptions::{DisableBrowser, EnableBrowser};
pub use webhook_endpoints::{CreateWebhook, DeleteWebhook, Redeliver, RotateSecret};

pub type AppError = CommandError<DomainError>;

/// Runs a mutation idempotently under the request's key.
pub async fn execute<A: Attempt<DomainError>>(
    pool: &PgPool,
    ctx: &CommandContext,
    mutation: &A,
) -> Result<A::Response, AppError> {
    command::execute(pool, ctx, mutation).await
}

/// How many sends an outbound worker keeps in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// At most, per replica.
    total: usize,
    /// Of one tenant at most, per replica: a tenant whose destinations are slow to answer (up to
    /// the timeout) holds up its own sends, not the others'.
    per_tenant: usize,
    /// Claimed per query at most.
    batch: usize,
}

/// Runs an outbound worker until `cancel`: `claim(room, full_tenants)` takes up to `room` due
/// jobs of tenants other than `full_tenants` (each job with its tenant), and `send` sends one in
/// the background, so the next due jobs are claimed while earlier ones wait for their
/// destination. After a claim that found nothing it rests `idle`, or until `wake` is told there
/// is work (`notify_one`: a wake-up during a claim is kept) or a send ends. On `cancel`, the
/// sends in flight finish first.
async fn drive<Job, Claim, Claimed, Send, Sent>(
    idle: Duration,
    cancel: &CancellationToken,
    wake: Option<&Notify>,
    limits: InFlight,
    claim: Claim,
    send: Send,
) where
    Claim: Fn(usize, Vec<String>) -> Claimed,
    Claimed: Future<Output = Vec<(String, Job)>>,
    Send: Fn(Job) -> Sent,
    Sent: Future<Output = ()> + std::marker::Send + 'static,
{
    let mut sending: JoinSet<String> = JoinSet::new();
    let mut by_tenant: HashMap<String, usize> = HashMap::new();
    // Claimed beyond their tenant's share (one claim may take several of a tenant): sent as the
    // tenant's earlier sends end, and nothing more of the tenant is claimed meanwhile, so they
    // wait at most about one destination timeout, well within their claim.
    let mut held: VecDeque<(String, Job)> = VecDeque::new();
    while !cancel.is_cancelled() {
        while let Some(done) = sending.try_join_next() {
            finished(&mut by_tenant, done);
        }
        let mut started = false;
        for _ in 0..held.len() {
            let Some((tenant, job)) = held.pop_front() else { break };
            if by_tenant.get(&tenant).copied().unwrap_or(0) < limits.per_tenant {
                start(&mut sending, &mut by_tenant, tenant, send(job));
                started = true;
            } else {
                held.push_back((tenant, job));
            }
        }
        let room = limits.total.saturating_sub(sending.len() + held.len()).min(limits.batch);
        if room > 0 {
            // Tenants at their share, and those with sends held, get nothing more claimed.
            let mut full: Vec<String> =
                by_tenant.iter().filter(|(_, n)| **n >= limits.per_tenant).map(|(tenant, _)| tenant.clone()).collect();
            full.extend(held.iter().map(|(tenant, _)| tenant.clone()));
            full.sort_unstable();
            full.dedup();
            let claimed = claim(room, full).await;
            started |= !claimed.is_empty();
            for (tenant, job) in claimed {
                if by_tenant.get(&tenant).copied().unwrap_or(0) < limits.per_tenant {
                    start(&mut sending, &mut by_tenant, tenant, send(job));
                } else {
                    held.push_back((tenant, job));
                }
            }
        }
        if started {
            continue;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(idle) => {}
            () = woken(wake) => {}
            Some(done) = sending.join_next(), if !sending.is_empty() => finished(&mut by_tenant, done),
        }
    }
    // Those held are left to their claim's expiry (another replica, or this one restarted).
    while let Some(done) = sending.join_next().await {
        finished(&mut by_tenant, done);
    }
}

/// Starts a send of `tenant`'s in the background.
fn start<Sent>(sending: &mut JoinSet<String>, by_tenant: &mut HashMap<String, usize>, tenant: String, sent: Sent)
where
    Sent: Future<Output = ()> + std::marker::Send + 'static,
{
    *by_tenant.entry(tenant.clone()).or_default() += 1;
    sending.spawn(async move {
        sent.await;
        tenant
    });
}

async fn woken(wake: Option<&Notify>) {
    match wake {
        Some(wake) => wake.notified().await,
        None => std::future::pending().await,
    }
}

/// A send ended: its tenant has one fewer in flight.
fn finished(by_tenant: &mut HashMap<String, usize>, done: Result<String, tokio::task::JoinError>) {
    let Ok(tenant) = done else { return };
    if let Some(n) = by_tenant.get_mut(&tenant) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            by_tenant.remove(&tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn a_tenant_with_slow_destinations_holds_only_its_share_of_the_sends() {
        // Ten due jobs of a tenant whose destination does not answer yet, then one of another.
        let queue: Arc<Mutex<VecDeque<String>>> =
            Arc::new(Mutex::new(std::iter::repeat_n("slow".to_owned(), 10).chain(["other".to_owned()]).collect()));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let (slow_now, slow_most, sent) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let other_sent = Arc::new(Notify::new());
        let claim = |room: usize, full: Vec<String>| {
            let queue = queue.clone();
            async move {
                let mut queue = queue.lock().unwrap();
                let mut claimed = Vec::new();
                let mut kept = VecDeque::new();
                while let Some(tenant) = queue.pop_front() {
                    if claimed.len() < room && !full.contains(&tenant) {
                        claimed.push((tenant.clone(), tenant));
                    } else {
                        kept.push_back(tenant);
                    }
                }
                *queue = kept;
                claimed
            }
        };
        let send = |tenant: String| {
            let (release, slow_now, slow_most, sent, other_sent) =
                (release.clone(), slow_now.clone(), slow_most.clone(), sent.clone(), other_sent.clone());
            async move {
                if tenant == "slow" {
                    let now = slow_now.fetch_add(1, Ordering::SeqCst) + 1;
                    slow_most.fetch_max(now, Ordering::SeqCst);
                    release.acquire().await.unwrap().forget();
                    slow_now.fetch_sub(1, Ordering::SeqCst);
                } else {
                    other_sent.notify_one();
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
        };
        let cancel = CancellationToken::new();
        let limits = InFlight { total: 8, per_tenant: 3, batch: 2 };
        let worker = drive(Duration::from_millis(20), &cancel, None, limits, claim, send);
        let check = async {
            tokio::time::timeout(Duration::from_secs(10), other_sent.notified())
                .await
                .expect("the other tenant's send");
            assert_eq!(slow_most.load(Ordering::SeqCst), 3, "the slow tenant holds its share, no more");
            release.add_permits(10);
            while sent.load(Ordering::SeqCst) < 11 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            cancel.cancel();
        };
        tokio::join!(worker, check);
        assert_eq!(sent.load(Ordering::SeqCst), 11, "every job sent once");
        assert!(queue.lock().unwrap().is_empty());
    }
}
