//! agent-sessions: service days, exits, breaks, agents, permissions and tenant settings.

pub mod domain;
