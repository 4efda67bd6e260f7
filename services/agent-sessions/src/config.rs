//! Configuration from the environment: the common service settings with agent-sessions'
//! defaults (gRPC 50051, metrics 9101, database `dw_agent_sessions`, stream `DW_AGENT_SESSIONS`).

use dw_grpc_kit::config::{ConfigError, ServiceConfig, ServiceDefaults};

pub type Config = ServiceConfig;

pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    database: "dw_agent_sessions",
    grpc_port: 50051,
    metrics_port: 9101,
    stream_name: "DW_AGENT_SESSIONS",
    subject_prefix: "dw.agentsessions",
};

pub fn from_env() -> Result<Config, ConfigError> {
    ServiceConfig::from_env(DEFAULTS)
}
