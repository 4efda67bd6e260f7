//! How dwctl fails: the exit status an error gets, and what it prints to stderr.

use std::process::ExitCode;

use crate::rpc;

/// A locally detected misuse (exit status 2, like clap's own usage errors).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Whether `err` is a broken pipe on dwctl's own output (`dwctl … | head`), not on a connection:
/// a server that closes the connection (e.g. refusing a client without a certificate at the TLS
/// handshake) surfaces as a broken pipe inside a gRPC or transport error, which is a failure.
fn reader_went_away(err: &anyhow::Error) -> bool {
    let on_a_connection = err.chain().any(|cause| cause.is::<tonic::Status>() || cause.is::<tonic::transport::Error>());
    let broken_pipe = err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    broken_pipe && !on_a_connection
}

/// Prints an error to stderr and picks the exit status: 2 for usage errors, 1 otherwise. A gRPC
/// error is printed with its code, message and `google.rpc` details.
pub fn report(err: &anyhow::Error) -> ExitCode {
    if reader_went_away(err) {
        // The reader went away (`dwctl … | head`): nothing left to say.
        return ExitCode::SUCCESS;
    }
    if let Some(usage) = err.downcast_ref::<UsageError>() {
        eprintln!("error: {usage}");
        return ExitCode::from(2);
    }
    if let Some(status) = err.chain().find_map(|cause| cause.downcast_ref::<tonic::Status>()) {
        let context: Vec<String> = err
            .chain()
            .take_while(|cause| cause.downcast_ref::<tonic::Status>().is_none())
            .map(ToString::to_string)
            .collect();
        if !context.is_empty() {
            eprintln!("{}:", context.join(": "));
        }
        eprint!("{}", rpc::describe_status(status));
        return ExitCode::FAILURE;
    }
    eprintln!("error: {err:#}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_silent_on_stdout_but_a_failure_on_a_connection() {
        let pipe = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        assert!(reader_went_away(&anyhow::Error::new(pipe())));
        let refused = tonic::Status::from_error(Box::new(pipe()));
        assert!(!reader_went_away(&anyhow::Error::new(refused).context("get agent")));
    }
}
