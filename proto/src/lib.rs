//! The Digital Workspace contract: generated Rust types and gRPC stubs for every `dw.*.v1`
//! package, plus the encoded descriptor set for gRPC reflection.

#![allow(clippy::all, clippy::pedantic, clippy::unwrap_used, clippy::expect_used)]

/// Encoded `FileDescriptorSet` of every proto in this crate (for `tonic-reflection`).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dw_descriptor.bin"));

pub mod agentsessions {
    pub mod v1 {
        tonic::include_proto!("dw.agentsessions.v1");
    }
}

pub mod distribution {
    pub mod v1 {
        tonic::include_proto!("dw.distribution.v1");
    }
}

pub mod messaging {
    pub mod v1 {
        tonic::include_proto!("dw.messaging.v1");
    }
}

/// Conversions between protobuf well-known time types and `chrono`.
pub mod time {
    use chrono::{DateTime, Utc};

    pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }
    }

    /// `None` when out of chrono's range or with negative nanos.
    pub fn datetime(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
    }

    pub fn duration_from_millis(ms: i64) -> prost_types::Duration {
        prost_types::Duration { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 }
    }

    pub fn millis(duration: &prost_types::Duration) -> i64 {
        duration.seconds * 1000 + i64::from(duration.nanos) / 1_000_000
    }
}

pub mod notifications {
    pub mod v1 {
        tonic::include_proto!("dw.notifications.v1");
    }
}
