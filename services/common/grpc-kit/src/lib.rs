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

pub use access::AccessPolicy;
pub use auth::{AuthInterceptor, principal, require_role};
pub use observability::{RpcLayer, RpcMetrics};
