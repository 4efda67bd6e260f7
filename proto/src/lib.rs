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
