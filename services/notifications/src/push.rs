//! The names `config.rs` and `server.rs` wire Web Push with, kept where they were before the
//! layers: the pure parts live in [`crate::domain::push`], the worker and its configuration in
//! [`crate::app::push_delivery`].

pub use crate::app::push_delivery::{PushConfig, PushMetrics, run_worker, vapid_key};
