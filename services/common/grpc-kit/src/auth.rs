//! Bearer-JWT authentication as a tonic interceptor, and role checks for handlers.

use std::sync::Arc;

use dw_auth::{Principal, Role};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::access::{AccessPolicy, RpcPath};
use crate::errors;
use crate::fair_share::{CallSlot, FairShare};
use crate::identity::TokenVerifier;

/// Verifies `authorization: Bearer <JWT>` (every refusal is `UNAUTHENTICATED` with the reason),
/// admits the caller by the port's [`AccessPolicy`] and
/// puts the [`Principal`] in the request extensions.
#[derive(Clone)]
pub struct AuthInterceptor {
    verifier: Arc<TokenVerifier>,
    policy: Arc<AccessPolicy>,
    fair_share: Option<Arc<FairShare>>,
}

impl AuthInterceptor {
    pub fn new(verifier: Arc<TokenVerifier>, policy: AccessPolicy) -> Self {
        Self { verifier, policy: Arc::new(policy), fair_share: None }
    }

    /// Also admits every call by its tenant's budgets and the replica's load.
    pub fn with_fair_share(mut self, fair_share: Arc<FairShare>) -> Self {
        self.fair_share = Some(fair_share);
        self
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| errors::unauthenticated("missing authorization: Bearer <token>"))?;
        let header = header.to_str().map_err(|_| errors::unauthenticated("authorization header is not text"))?;
        let token = dw_auth::bearer_token(header).map_err(|e| errors::unauthenticated(e.to_string()))?;
        let now = chrono_now();
        let principal = self.verifier.verify(token, now).map_err(|e| errors::unauthenticated(e.to_string()))?;
        let path = request.extensions().get::<RpcPath>().map(|path| path.0.as_str());
        self.policy.admit(path, &principal)?;
        if let Some(fair_share) = &self.fair_share {
            let slot = request.extensions().get::<CallSlot>();
            fair_share.admit(
                principal.tenant().as_str(),
                self.policy.classes(path),
                std::time::Instant::now(),
                slot,
            )?;
        }
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The authenticated caller of a request that went through [`AuthInterceptor`].
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request.extensions().get::<Principal>().cloned().ok_or_else(|| errors::unauthenticated("no authenticated caller"))
}

/// `PERMISSION_DENIED` unless the caller has one of `roles`.
pub fn require_role(principal: &Principal, roles: &[Role]) -> Result<(), Status> {
    if roles.iter().any(|role| principal.has_role(*role)) {
        return Ok(());
    }
    let wanted = roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" or ");
    Err(errors::permission_denied("ROLE_REQUIRED", format!("this call needs the role {wanted}")))
}
