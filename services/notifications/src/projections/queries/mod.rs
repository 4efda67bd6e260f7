//! The reads the gRPC layer serves: the single-notifications log and agents' notifications
//! ([`notifications`]), webhook endpoints and their deliveries ([`webhooks`]). Every query
//! filters by tenant.

pub mod notifications;
pub mod webhooks;
