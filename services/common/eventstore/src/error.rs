//! The one error of every command: a broken domain rule of the service (its own enum, behind
//! [`DomainRule`]), bad input, a concurrency conflict, a reused request id, unreadable stored
//! data or the database. `dw-grpc-kit` maps it to the wire in one place.

use crate::StoreError;

/// How a broken rule reaches the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// The thing named does not exist in the caller's tenant (`NOT_FOUND`, with a
    /// `google.rpc.ResourceInfo` naming it).
    NotFound(Resource),
    /// The caller may not do this (`PERMISSION_DENIED`).
    PermissionDenied,
    /// The state does not allow it (`FAILED_PRECONDITION`).
    FailedPrecondition,
}

/// The resource a `NOT_FOUND` is about (`google.rpc.ResourceInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The full protobuf name of the resource's message, e.g. `dw.agentsessions.v1.Agent`.
    pub resource_type: String,
    /// The name the caller gave for it (an id, a protocol number).
    pub resource_name: String,
}

impl Resource {
    /// The resource of message type `M` named `name`.
    pub fn of<M: prost::Name>(name: impl Into<String>) -> Self {
        Self { resource_type: M::full_name(), resource_name: name.into() }
    }
}

/// A service's broken-rule enum: a machine-readable reason and how it reaches the caller.
pub trait DomainRule: std::error::Error + Send + Sync + 'static {
    /// `google.rpc.ErrorInfo.reason`, e.g. `ALREADY_ON_BREAK`.
    fn reason(&self) -> &'static str;

    fn kind(&self) -> RuleKind {
        RuleKind::FailedPrecondition
    }
}

/// A bad request field: `(field path, what is wrong)`.
pub type Violation = (String, String);

/// Why a command (or a query of the same service) did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<D> {
    /// A rule of the domain refused it.
    #[error(transparent)]
    Rule(D),
    /// Bad input, found where only the handler could see it.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<Violation>),
    /// Another writer got there first: worth another attempt.
    #[error("concurrent modification")]
    Conflict,
    /// Still conflicting after this many attempts.
    #[error("gave up after {0} concurrent modifications")]
    Aborted(u32),
    /// The caller's `expected_version` is not the resource's any more (AIP-154): retrying the
    /// same request cannot succeed; the caller reads the resource again.
    #[error(transparent)]
    StaleVersion(#[from] crate::update::StaleVersion),
    /// The request id was used for another operation.
    #[error("request id already used for {0}")]
    RequestIdReused(String),
    /// A stored event, snapshot or response does not decode: a defect, never the caller's fault.
    #[error("stored data unreadable: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl<D> CommandError<D> {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::Invalid(vec![(field.to_owned(), reason.into())])
    }

    pub fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }

    /// Another writer got there first: a stream's version moved, or Postgres chose this
    /// transaction as the victim of a deadlock (40P01) or a serialization failure (40001). The
    /// attempt is retried.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::Conflict => true,
            Self::Database(sqlx::Error::Database(db)) => matches!(db.code().as_deref(), Some("40P01" | "40001")),
            _ => false,
        }
    }
}

impl<D: DomainRule> From<D> for CommandError<D> {
    fn from(rule: D) -> Self {
        Self::Rule(rule)
    }
}

impl<D> From<StoreError> for CommandError<D> {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => Self::Conflict,
            StoreError::RequestIdReused(operation) => Self::RequestIdReused(operation),
            StoreError::EmptyAppend(stream) => Self::Corrupt(format!("empty append to {stream}")),
            StoreError::EventTooLarge { size, limit, .. } => Self::Invalid(vec![(
                "request".to_owned(),
                format!("the change it asks for would be {size} bytes, over the limit of {limit} bytes"),
            )]),
            StoreError::Database(error) => Self::Database(error),
        }
    }
}

impl<D> From<prost::DecodeError> for CommandError<D> {
    fn from(error: prost::DecodeError) -> Self {
        Self::Corrupt(error.to_string())
    }
}

impl<D> From<crate::CodecError> for CommandError<D> {
    fn from(error: crate::CodecError) -> Self {
        Self::Corrupt(error.to_string())
    }
}
