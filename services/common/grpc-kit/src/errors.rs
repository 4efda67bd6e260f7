//! Building `tonic::Status` values with `google.rpc` rich details: `BadRequest` field violations
//! for bad input, `ErrorInfo` with a machine-readable reason for everything else, `ResourceInfo`
//! naming what was not found, `RetryInfo` on what a client should retry.

use std::collections::HashMap;

use dw_eventstore::{CommandError, DomainRule, RuleKind};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// `ErrorInfo.domain` of every Digital Workspace error.
pub const ERROR_DOMAIN: &str = "digitalworkspace.dw";

pub use dw_eventstore::{Resource, Violation};

/// The one mapping of every service's errors to the wire: broken rules by their kind with an
/// `ErrorInfo` reason, bad input with field violations, conflicts as `ABORTED`, a database that
/// does not answer as `UNAVAILABLE`, and only real defects as `INTERNAL`.
pub fn to_status<D: DomainRule>(error: CommandError<D>) -> Status {
    match error {
        CommandError::Rule(rule) => rule_status(&rule),
        CommandError::Invalid(violations) => invalid_arguments(violations),
        CommandError::Conflict | CommandError::Aborted(_) => aborted("the resource changed concurrently; retry"),
        CommandError::StaleVersion(stale) => stale_version(&stale),
        CommandError::RequestIdReused(operation) => failed_precondition(
            "REQUEST_ID_REUSED",
            format!("request_id was already used for another request ({operation}); use a new request id"),
        ),
        CommandError::Database(error) => db_status(error),
        error @ CommandError::Corrupt(_) => internal(&error),
    }
}

/// A broken domain rule, by its kind.
pub fn rule_status(rule: &dyn DomainRule) -> Status {
    match rule.kind() {
        RuleKind::NotFound(resource) => not_found(rule.reason(), &resource, rule.to_string()),
        RuleKind::PermissionDenied => permission_denied(rule.reason(), rule.to_string()),
        RuleKind::FailedPrecondition => failed_precondition(rule.reason(), rule.to_string()),
    }
}

/// A database error: `UNAVAILABLE` when Postgres does not answer (the caller may retry),
/// `INTERNAL` otherwise.
pub fn db_status(error: sqlx::Error) -> Status {
    if is_unavailable(&error) {
        return unavailable("database unavailable");
    }
    internal(&error)
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed)
}

/// Parses a request field with `parse`, naming the field when it is refused.
pub fn parse_field<T>(field: &str, value: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, Status> {
    parse(value).map_err(|reason| invalid_argument(field, reason))
}

pub fn invalid_argument(field: &str, description: impl Into<String>) -> Status {
    invalid_arguments(vec![(field.to_owned(), description.into())])
}

pub fn invalid_arguments(violations: Vec<Violation>) -> Status {
    let message = violations.iter().map(|(field, description)| format!("{field}: {description}")).collect::<Vec<_>>();
    let details = ErrorDetails::with_bad_request(
        violations.into_iter().map(|(field, description)| FieldViolation::new(field, description)).collect::<Vec<_>>(),
    );
    Status::with_error_details(Code::InvalidArgument, format!("invalid request: {}", message.join("; ")), details)
}

fn with_reason(code: Code, reason: &str, message: impl Into<String>) -> Status {
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::<String, String>::new());
    Status::with_error_details(code, message, details)
}

/// A status a client should retry, with its `ErrorInfo` reason and a `RetryInfo` saying after
/// how long.
fn retryable(code: Code, reason: &str, message: impl Into<String>, retry_after: std::time::Duration) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(retry_after));
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::<String, String>::new());
    Status::with_error_details(code, message, details)
}

/// A broken domain rule, e.g. `ALREADY_ON_BREAK`.
pub fn failed_precondition(reason: &str, message: impl Into<String>) -> Status {
    with_reason(Code::FailedPrecondition, reason, message)
}

/// `resource` does not exist in the caller's tenant: `NOT_FOUND` with its `ErrorInfo` reason and
/// a `ResourceInfo` naming it (type, name, and the message as description; the owner is left
/// empty, it would only repeat the caller's own tenant).
pub fn not_found(reason: &str, resource: &Resource, message: impl Into<String>) -> Status {
    let message = message.into();
    let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::<String, String>::new());
    details.set_resource_info(&resource.resource_type, &resource.resource_name, "", &message);
    Status::with_error_details(Code::NotFound, message, details)
}

pub fn permission_denied(reason: &str, message: impl Into<String>) -> Status {
    with_reason(Code::PermissionDenied, reason, message)
}

pub fn unauthenticated(message: impl Into<String>) -> Status {
    with_reason(Code::Unauthenticated, "UNAUTHENTICATED", message)
}

/// A concurrency conflict that survived the handler's retries: retry at once (same request id).
pub fn aborted(message: impl Into<String>) -> Status {
    retryable(Code::Aborted, "CONCURRENT_MODIFICATION", message, std::time::Duration::from_millis(50))
}

/// The caller's `expected_version` is stale (AIP-154): `ABORTED` with the reason `STALE_VERSION`
/// and both versions in the `ErrorInfo` metadata, and no `RetryInfo` (the same request would fail
/// again: read the resource, reapply the change).
pub fn stale_version(stale: &dw_eventstore::StaleVersion) -> Status {
    let metadata = HashMap::from([
        ("current_version".to_owned(), stale.current.to_string()),
        ("expected_version".to_owned(), stale.expected.to_string()),
    ]);
    let details = ErrorDetails::with_error_info("STALE_VERSION", ERROR_DOMAIN, metadata);
    Status::with_error_details(Code::Aborted, stale.to_string(), details)
}

/// Parses a request's `update_mask` (AIP-134) against the resource's updatable fields;
/// a bad path is `INVALID_ARGUMENT` on `update_mask`, naming it. See [`dw_eventstore::UpdateMask::parse`].
pub fn update_mask<F: Copy + Ord>(
    mask: Option<&prost_types::FieldMask>,
    updatable: &[(&'static str, F)],
    read_only: &[&str],
    if_empty: impl FnOnce() -> dw_eventstore::UpdateMask<F>,
) -> Result<dw_eventstore::UpdateMask<F>, Status> {
    let paths = mask.map_or(&[][..], |mask| mask.paths.as_slice());
    dw_eventstore::UpdateMask::parse("update_mask", paths, updatable, read_only, if_empty).map_err(invalid_arguments)
}

/// A limit of the tenant or of the replica was reached: `RESOURCE_EXHAUSTED` with its reason and
/// a `RetryInfo` saying when trying again makes sense.
pub fn resource_exhausted(reason: &str, message: impl Into<String>, retry_after: std::time::Duration) -> Status {
    retryable(Code::ResourceExhausted, reason, message, retry_after)
}

/// A dependency (Postgres, NATS) that does not answer: retry after a second (same request id).
pub fn unavailable(message: impl Into<String>) -> Status {
    retryable(Code::Unavailable, "DEPENDENCY_UNAVAILABLE", message, std::time::Duration::from_secs(1))
}

/// An unexpected failure: logged in full, reported without internals.
pub fn internal(error: &dyn std::fmt::Display) -> Status {
    tracing::error!(error = %error, "internal error");
    with_reason(Code::Internal, "INTERNAL", "internal error")
}

/// The `ErrorInfo.reason` of a status, if it carries one.
pub fn reason_of(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// The fields named by a status's `BadRequest` violations.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The fields of an erasure request (`EraseClientData` of every service that keeps a client's
/// personal data): the client's phone (E.164) and a reason of 1-500 printable characters, kept
/// in the erasure event.
pub fn erasure_request(phone: &str, reason: &str) -> Result<(dw_ids::PhoneNumber, String), Status> {
    let mut violations: Vec<Violation> = Vec::new();
    let phone = dw_ids::PhoneNumber::parse(phone).map_err(|e| violations.push(("phone".to_owned(), e))).ok();
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        violations.push(("reason".to_owned(), "must be 1-500 printable characters".to_owned()));
    }
    match phone {
        Some(phone) if violations.is_empty() => Ok((phone, reason.to_owned())),
        _ => Err(invalid_arguments(violations)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses_say_when_to_retry() {
        let exhausted = resource_exhausted("TOO_MANY_STREAMS", "close one", std::time::Duration::from_secs(5));
        for status in [aborted("conflict"), unavailable("database unavailable"), exhausted] {
            let retry = status.get_details_retry_info().and_then(|info| info.retry_delay);
            assert!(retry.is_some_and(|delay| !delay.is_zero()), "{status:?}");
            assert!(reason_of(&status).is_some());
        }
        assert!(failed_precondition("X", "y").get_details_retry_info().is_none());
    }

    #[test]
    fn not_found_names_the_resource() {
        let resource = Resource { resource_type: "dw.agentsessions.v1.Agent".into(), resource_name: "ana".into() };
        let status = not_found("AGENT_NOT_FOUND", &resource, "agent ana not found");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(reason_of(&status).as_deref(), Some("AGENT_NOT_FOUND"));
        let info = status.get_details_resource_info().expect("resource info");
        assert_eq!(info.resource_type, "dw.agentsessions.v1.Agent");
        assert_eq!(info.resource_name, "ana");
        assert_eq!(info.description, "agent ana not found");
    }

    #[test]
    fn a_stale_version_is_aborted_with_the_current_version_and_no_retry() {
        let status = stale_version(&dw_eventstore::StaleVersion { expected: 3, current: 5 });
        assert_eq!(status.code(), Code::Aborted);
        assert!(status.message().contains("changed since you read it"));
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "STALE_VERSION");
        assert_eq!(info.metadata.get("current_version").map(String::as_str), Some("5"));
        assert!(status.get_details_retry_info().is_none());
    }

    #[test]
    fn field_violations_and_reasons_round_trip() {
        let status = invalid_argument("reason_id", "must not be empty");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["reason_id".to_owned()]);
        assert!(status.message().contains("reason_id"));

        let status = failed_precondition("ALREADY_ON_BREAK", "already on a break");
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(reason_of(&status).as_deref(), Some("ALREADY_ON_BREAK"));
    }
}
