//! Fair share between tenants on one replica: a token bucket per tenant for mutating RPCs (those
//! whose request carries a `request_id`) and another for sends (`Send*` methods, which also cost
//! a provider message), each with a default rate and per-tenant overrides; a cap on the calls one
//! tenant has in flight at once (so a burst cannot take every database connection); and load
//! shedding when the replica already serves as many RPCs as it should. A refused call is
//! `RESOURCE_EXHAUSTED` with a `RetryInfo` saying when to come back, decided before any handler
//! runs, so a tenant flooding the cluster spends almost nothing of it.
//!
//! The limits are per replica: a deployment of N replicas admits up to N times them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tonic::Status;

/// A sustained rate and the burst a tenant may spend at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// `per_second` with a burst of two seconds' worth.
    pub fn per_second(per_second: f64) -> Self {
        Self { per_second, burst: (per_second * 2.0).max(1.0) }
    }

    pub const UNLIMITED: Rate = Rate { per_second: f64::INFINITY, burst: f64::INFINITY };
}

/// What a call costs against the tenant's budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Mutation,
    Send,
}

impl Class {
    fn as_str(self) -> &'static str {
        match self {
            Self::Mutation => "mutation",
            Self::Send => "send",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FairShareConfig {
    pub mutations: Rate,
    pub sends: Rate,
    /// Per-tenant rates that replace the defaults: `(tenant, class) → rate`.
    pub overrides: HashMap<(String, Class), Rate>,
    /// RPCs one replica serves at once before it sheds new ones.
    pub max_in_flight: usize,
    /// RPCs of one tenant a replica serves at once (until their response headers).
    pub max_in_flight_per_tenant: usize,
    /// Live streams (watches, subscriptions) one tenant holds open on a replica.
    pub max_streams_per_tenant: usize,
}

impl FairShareConfig {
    /// No limits (tests and benchmarks that measure the machine, not the policy).
    pub fn unlimited() -> Self {
        Self {
            mutations: Rate::UNLIMITED,
            sends: Rate::UNLIMITED,
            overrides: HashMap::new(),
            max_in_flight: usize::MAX,
            max_in_flight_per_tenant: usize::MAX,
            max_streams_per_tenant: usize::MAX,
        }
    }

    fn rate(&self, tenant: &str, class: Class) -> Rate {
        if let Some(rate) = self.overrides.get(&(tenant.to_owned(), class)) {
            return *rate;
        }
        match class {
            Class::Mutation => self.mutations,
            Class::Send => self.sends,
        }
    }

    /// Parses `DW_TENANT_RATE_OVERRIDES`: `acme:mutations=500,sends=50;globex:mutations=10`
    /// (per second; the burst is two seconds' worth).
    pub fn parse_overrides(text: &str) -> Result<HashMap<(String, Class), Rate>, String> {
        let mut overrides = HashMap::new();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (tenant, rates) =
                entry.split_once(':').ok_or_else(|| format!("`{entry}`: expected tenant:class=rate[,class=rate]"))?;
            let tenant = dw_ids::TenantId::parse(tenant.trim()).map_err(|e| format!("`{entry}`: {e}"))?;
            for rate in rates.split(',').map(str::trim) {
                let (class, value) = rate.split_once('=').ok_or_else(|| format!("`{rate}`: expected class=rate"))?;
                let class = match class.trim() {
                    "mutations" => Class::Mutation,
                    "sends" => Class::Send,
                    other => return Err(format!("`{other}`: the classes are mutations and sends")),
                };
                let value: f64 =
                    value.trim().parse().map_err(|_| format!("`{rate}`: the rate is a number per second"))?;
                if !(value.is_finite() && value > 0.0) {
                    return Err(format!("`{rate}`: the rate must be above 0"));
                }
                overrides.insert((tenant.as_str().to_owned(), class), Rate::per_second(value));
            }
        }
        Ok(overrides)
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The replica's budgets and load, shared by its ports' interceptors and its RPC layer.
pub struct FairShare {
    config: FairShareConfig,
    buckets: Mutex<HashMap<(String, Class), Bucket>>,
    in_flight: Arc<AtomicUsize>,
    tenants_in_flight: Arc<Mutex<HashMap<String, usize>>>,
    refused: Family<RefusedLabels, Counter>,
}

/// Where the interceptor leaves an admitted call's [`TenantCall`], put in the request's
/// extensions by [`crate::RpcLayer`], which drops it when the call's response starts.
#[derive(Clone, Default)]
pub struct CallSlot(Arc<Mutex<Option<TenantCall>>>);

impl CallSlot {
    fn hold(&self, call: TenantCall) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(call);
    }

    /// Ends the held call (the response has started). A handler may keep the request, and so
    /// this slot, for as long as it streams: the call must not count for that long.
    pub fn release(&self) {
        let call = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        drop(call);
    }
}

/// One admitted call of a tenant: counted in its tenant's in-flight calls while it lives.
pub struct TenantCall {
    tenant: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for TenantCall {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    tenant: String,
    /// `mutation`, `send`, `concurrency` or `overload`.
    reason: String,
}

impl FairShare {
    pub fn new(config: FairShareConfig, registry: &mut Registry) -> Self {
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "dw_rpc_refused_for_fair_share",
            "RPCs refused with RESOURCE_EXHAUSTED before any handler ran: over the tenant's rate, or the replica overloaded",
            refused.clone(),
        );
        Self {
            config,
            buckets: Mutex::new(HashMap::new()),
            in_flight: Arc::new(AtomicUsize::new(0)),
            tenants_in_flight: Arc::default(),
            refused,
        }
    }

    /// The counter of RPCs in flight, kept by [`crate::RpcLayer`].
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }

    /// Admits a call of `tenant` costing `classes` and counts it in the tenant's calls in flight
    /// while `slot` holds it (when the call came through [`crate::RpcLayer`]), or says when to
    /// retry.
    pub fn admit(&self, tenant: &str, classes: &[Class], now: Instant, slot: Option<&CallSlot>) -> Result<(), Status> {
        if self.in_flight.load(Ordering::Relaxed) > self.config.max_in_flight {
            self.refused.get_or_create(&RefusedLabels { tenant: tenant.to_owned(), reason: "overload".into() }).inc();
            return Err(exhausted("OVERLOADED", "the server is saturated; retry shortly", Duration::from_millis(100)));
        }
        let Some(slot) = slot else {
            return self.spend(tenant, classes, now);
        };
        // The tenant's count stays locked from the check to the increment; a call refused for
        // concurrency spends no token.
        let mut counts = self.tenants_in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.get(tenant).copied().unwrap_or(0) >= self.config.max_in_flight_per_tenant {
            drop(counts);
            self.refused
                .get_or_create(&RefusedLabels { tenant: tenant.to_owned(), reason: "concurrency".into() })
                .inc();
            let message = format!("tenant {tenant} has too many calls in flight; retry shortly");
            return Err(exhausted("TENANT_CONCURRENCY", &message, Duration::from_millis(20)));
        }
        self.spend(tenant, classes, now)?;
        *counts.entry(tenant.to_owned()).or_insert(0) += 1;
        drop(counts);
        slot.hold(TenantCall { tenant: tenant.to_owned(), counts: self.tenants_in_flight.clone() });
        Ok(())
    }

    /// Takes one token of each class from the tenant's buckets, or none when one is empty.
    fn spend(&self, tenant: &str, classes: &[Class], now: Instant) -> Result<(), Status> {
        if classes.is_empty() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // All or nothing: a send refused for its send budget spends none of the mutation budget.
        let mut wait = Duration::ZERO;
        for class in classes {
            let rate = self.config.rate(tenant, *class);
            let bucket = buckets.entry((tenant.to_owned(), *class)).or_insert(Bucket { tokens: rate.burst, at: now });
            refill(bucket, rate, now);
            if bucket.tokens < 1.0 {
                let missing = Duration::from_secs_f64(((1.0 - bucket.tokens) / rate.per_second).min(60.0));
                wait = wait.max(missing);
                self.refused
                    .get_or_create(&RefusedLabels { tenant: tenant.to_owned(), reason: class.as_str().into() })
                    .inc();
            }
        }
        if wait > Duration::ZERO {
            let message = format!("tenant {tenant} is over its rate; retry in {} ms", wait.as_millis().max(1));
            return Err(exhausted("TENANT_RATE_LIMITED", &message, wait));
        }
        for class in classes {
            if let Some(bucket) = buckets.get_mut(&(tenant.to_owned(), *class)) {
                bucket.tokens -= 1.0;
            }
        }
        Ok(())
    }
}

fn refill(bucket: &mut Bucket, rate: Rate, now: Instant) {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(rate.burst);
    bucket.at = now;
}

fn exhausted(reason: &str, message: &str, retry_after: Duration) -> Status {
    crate::errors::resource_exhausted(reason, message, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_types::StatusExt;

    fn share(mutations: f64, sends: f64) -> FairShare {
        let config = FairShareConfig {
            mutations: Rate::per_second(mutations),
            sends: Rate::per_second(sends),
            overrides: FairShareConfig::parse_overrides("vip:mutations=1000").unwrap(),
            max_in_flight: 10,
            max_in_flight_per_tenant: 100,
            max_streams_per_tenant: 100,
        };
        FairShare::new(config, &mut Registry::default())
    }

    #[test]
    fn given_a_tenant_over_its_burst_when_it_calls_again_then_it_waits_while_another_tenant_does_not() {
        let share = share(5.0, 1.0);
        let start = Instant::now();
        for _ in 0..10 {
            share.admit("acme", &[Class::Mutation], start, None).unwrap();
        }
        let refused = share.admit("acme", &[Class::Mutation], start, None).unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        let retry = refused.get_details_retry_info().and_then(|r| r.retry_delay).unwrap();
        assert_eq!(retry, Duration::from_millis(200), "one token at 5/s");
        assert_eq!(refused.get_details_error_info().unwrap().reason, "TENANT_RATE_LIMITED");
        share.admit("globex", &[Class::Mutation], start, None).unwrap();
        // The bucket refills with time.
        share.admit("acme", &[Class::Mutation], start + Duration::from_millis(200), None).unwrap();
    }

    #[test]
    fn sends_have_their_own_budget_and_a_refused_send_spends_no_mutation() {
        let share = share(100.0, 1.0);
        let now = Instant::now();
        share.admit("acme", &[Class::Mutation, Class::Send], now, None).unwrap();
        share.admit("acme", &[Class::Mutation, Class::Send], now, None).unwrap();
        assert!(share.admit("acme", &[Class::Mutation, Class::Send], now, None).is_err(), "2 sends burst at 1/s");
        for _ in 0..198 {
            share.admit("acme", &[Class::Mutation], now, None).unwrap();
        }
        assert!(share.admit("acme", &[Class::Mutation], now, None).is_err());
    }

    #[test]
    fn refusals_are_counted_by_tenant_and_reason() {
        let mut registry = Registry::default();
        let config = FairShareConfig { mutations: Rate::per_second(0.5), ..FairShareConfig::unlimited() };
        let share = FairShare::new(config, &mut registry);
        let now = Instant::now();
        share.admit("acme", &[Class::Mutation], now, None).unwrap();
        assert!(share.admit("acme", &[Class::Mutation], now, None).is_err());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"dw_rpc_refused_for_fair_share_total{tenant="acme",reason="mutation"} 1"#), "{text}");
    }

    #[test]
    fn a_tenant_with_its_cap_of_calls_in_flight_waits_until_one_ends_while_others_go_on() {
        let config = FairShareConfig { max_in_flight_per_tenant: 2, ..FairShareConfig::unlimited() };
        let share = FairShare::new(config, &mut Registry::default());
        let now = Instant::now();
        let slots: Vec<CallSlot> = (0..3).map(|_| CallSlot::default()).collect();
        share.admit("acme", &[], now, Some(&slots[0])).unwrap();
        share.admit("acme", &[Class::Mutation], now, Some(&slots[1])).unwrap();
        let refused = share.admit("acme", &[], now, Some(&slots[2])).unwrap_err();
        assert_eq!(refused.get_details_error_info().unwrap().reason, "TENANT_CONCURRENCY");
        share.admit("globex", &[], now, Some(&CallSlot::default())).unwrap();
        let kept = slots[0].clone(); // a streaming handler keeps its request, and so the slot
        slots[0].release();
        share.admit("acme", &[], now, Some(&CallSlot::default())).unwrap();
        drop(kept);
    }

    #[test]
    fn reads_pass_overrides_apply_and_an_overloaded_replica_sheds() {
        let share = share(1.0, 1.0);
        let now = Instant::now();
        for _ in 0..100 {
            share.admit("acme", &[], now, None).unwrap();
            share.admit("vip", &[Class::Mutation], now, None).unwrap();
        }
        share.in_flight().store(11, Ordering::Relaxed);
        let shed = share.admit("acme", &[], now, None).unwrap_err();
        assert_eq!(shed.get_details_error_info().unwrap().reason, "OVERLOADED");
    }

    #[test]
    fn overrides_parse_and_mistakes_say_why() {
        let parsed = FairShareConfig::parse_overrides(" acme:mutations=500,sends=50 ; globex:sends=2.5 ").unwrap();
        assert_eq!(parsed[&("acme".to_owned(), Class::Mutation)], Rate { per_second: 500.0, burst: 1000.0 });
        assert_eq!(parsed[&("globex".to_owned(), Class::Send)].per_second, 2.5);
        assert!(FairShareConfig::parse_overrides("").unwrap().is_empty());
        for bad in ["acme", "acme:reads=5", "acme:mutations=x", "acme:mutations=0", "Acme:sends=1", "acme:sends"] {
            assert!(FairShareConfig::parse_overrides(bad).is_err(), "{bad}");
        }
    }
}
