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

/// Prints an error to stderr and picks the exit status: 2 for usage errors, 1 otherwise. A gRPC
/// error is printed with its code, message and `google.rpc` details.
pub fn report(err: &anyhow::Error) -> ExitCode {
    let broken_pipe = err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
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
