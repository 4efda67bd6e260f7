//! Helpers for the unit tests: fixed times and parsed command lines.

use clap::Parser as _;

use crate::cli::Cli;

/// 2024-05-01T08:00:00Z.
pub const T0: i64 = 1_714_550_400;

pub fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

pub fn dur(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

/// `dwctl <args…>`.
pub fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("dwctl").chain(args.iter().copied()))
}

/// `dwctl <command> <args…>`.
pub fn parse_in(command: &str, args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(["dwctl", command].into_iter().chain(args.iter().copied()))
}
