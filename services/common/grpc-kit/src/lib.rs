//! The server kit every service is built from: bearer auth on every RPC, one mapping of errors
//! to `tonic::Status` with `google.rpc` details, RPC spans and metrics, gRPC health and
//! reflection, the Prometheus endpoint, dependency start-up with backoff and graceful shutdown.

pub mod access;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod command;
pub mod config;
pub mod connection_age;
pub mod errors;
pub mod event_log;
pub mod event_source;
pub mod fair_share;
pub mod grpc_tls;
pub mod grpc_web;
pub mod health;
pub mod identity;
pub mod live;
pub mod metrics_http;
pub mod observability;
pub mod paging;
pub mod process_metrics;
pub mod service;
pub mod shutdown;
pub mod startup;

/// jemalloc instead of the system's allocator for every binary built on the kit: a service
/// allocates and frees many small buffers per request (protobuf, SQL arguments, JSON), and under
/// load glibc's malloc took about a fifth of the process's CPU (perf, distribution and agent
/// command benches). Its settings are compiled in (`.cargo/config.toml`,
/// `JEMALLOC_SYS_WITH_MALLOC_CONF`): two arenas (each costs memory even idle), freed pages given
/// back to the system after a second and none kept "muzzy", so idle RSS stays near the system
/// allocator's (startup bench).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub use access::AccessPolicy;
pub use auth::{AuthInterceptor, principal, require_role};
pub use observability::{RpcLayer, RpcMetrics};
