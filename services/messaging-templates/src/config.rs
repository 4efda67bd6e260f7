//! Configuration from the environment: the common service settings with messaging-templates'
//! defaults (gRPC 50053, metrics 9103, database `dw_messaging`, stream `DW_MESSAGING`).

use dw_grpc_kit::config::{ConfigError, ServiceConfig, ServiceDefaults};

pub type Config = ServiceConfig;

pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    database: "dw_messaging",
    grpc_port: 50053,
    metrics_port: 9103,
    stream_name: "DW_MESSAGING",
    subject_prefix: "dw.messaging",
};

pub fn from_env() -> Result<Config, ConfigError> {
    ServiceConfig::from_env(DEFAULTS)
}
