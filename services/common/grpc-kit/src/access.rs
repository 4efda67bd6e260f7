//! Who may call what: every RPC a port serves names the roles it admits, in one table per
//! service, checked before any handler runs. A method without a rule is refused (and a service
//! whose table misses a method of what it serves does not start), so a new RPC cannot be
//! reachable by accident, and a token without a role reaches nothing.
//!
//! Handlers still decide what an admitted caller may touch (an agent its own day and tasks,
//! permissions granted to agents); this table decides who gets that far.

use std::collections::HashMap;

use dw_auth::{Principal, Role};
use tonic::Status;

use crate::errors;
use crate::fair_share::Class;

/// Roles for one method: `("dw.agentsessions.v1.ServiceDayService/StartBreak", AGENT)`.
pub type Rule = (&'static str, &'static [Role]);

pub const AGENT: &[Role] = &[Role::Agent];
pub const MANAGER: &[Role] = &[Role::Manager];
pub const SERVICE: &[Role] = &[Role::Service];
pub const MANAGER_OR_SERVICE: &[Role] = &[Role::Manager, Role::Service];
pub const AGENT_OR_MANAGER: &[Role] = &[Role::Agent, Role::Manager];
/// Agents (on what is theirs), managers and services (on anything of their tenant).
pub const ANY_ROLE: &[Role] = &[Role::Agent, Role::Manager, Role::Service];

/// The rules of the services one port serves, by gRPC path (`/package.Service/Method`).
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    roles: HashMap<String, &'static [Role]>,
    /// What each method costs against the tenant's budgets (mutations carry a `request_id`;
    /// `Send*` methods are sends too).
    classes: HashMap<String, Vec<Class>>,
}

/// The gRPC path of the request being served (`/package.Service/Method`), put in the request's
/// extensions by [`crate::RpcLayer`] for [`crate::AuthInterceptor`].
#[derive(Debug, Clone)]
pub struct RpcPath(pub String);

impl AccessPolicy {
    /// The policy for `services`, when `rules` name every one of their methods exactly once and
    /// nothing else.
    pub fn new(rules: &[Rule], services: &[&str]) -> Result<Self, String> {
        let mut roles = HashMap::new();
        for (method, admitted) in rules {
            if admitted.is_empty() {
                return Err(format!("the access rule of {method} admits no role"));
            }
            if roles.insert(format!("/{method}"), *admitted).is_some() {
                return Err(format!("{method} has two access rules"));
            }
        }
        let mut expected = Vec::new();
        let mut classes = HashMap::new();
        for service in services {
            let methods =
                dw_proto::service_methods(service).ok_or_else(|| format!("{service} is not in the contract"))?;
            let mutating = dw_proto::mutating_methods(service).unwrap_or_default();
            for method in methods {
                let mut costs = Vec::new();
                if mutating.contains(&method) {
                    costs.push(Class::Mutation);
                    if method.starts_with("Send") {
                        costs.push(Class::Send);
                    }
                }
                let path = format!("/{service}/{method}");
                classes.insert(path.clone(), costs);
                expected.push(path);
            }
        }
        let missing: Vec<&str> =
            expected.iter().filter(|path| !roles.contains_key(*path)).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(format!("no access rule for {}", missing.join(", ")));
        }
        let unknown: Vec<&str> =
            roles.keys().filter(|path| !expected.contains(path)).map(String::as_str).collect::<Vec<_>>();
        if !unknown.is_empty() {
            return Err(format!("access rules for methods not served here: {}", unknown.join(", ")));
        }
        Ok(Self { roles, classes })
    }

    /// What the method at `path` costs against the caller's tenant budgets (none for reads).
    pub fn classes(&self, path: Option<&str>) -> &[Class] {
        path.and_then(|path| self.classes.get(path)).map_or(&[], Vec::as_slice)
    }

    /// Admits `principal` to the method at `path`, or says why not.
    pub fn admit(&self, path: Option<&str>, principal: &Principal) -> Result<(), Status> {
        let Some(admitted) = path.and_then(|path| self.roles.get(path)) else {
            return Err(errors::permission_denied("NO_ACCESS_RULE", "this method admits no caller"));
        };
        if admitted.iter().any(|role| principal.has_role(*role)) {
            return Ok(());
        }
        let wanted = admitted.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(" or ");
        Err(errors::permission_denied("ROLE_REQUIRED", format!("this call needs the role {wanted}")))
    }
}

/// The unit test every service's access table carries: each method the service serves has
/// exactly one rule (`dw_grpc_kit::access_table_test!(ACCESS, crate::server::SERVICE_NAMES);`).
#[macro_export]
macro_rules! access_table_test {
    ($table:path, $services:path) => {
        #[cfg(test)]
        mod access_table {
            #[test]
            fn every_method_served_has_exactly_one_rule() {
                if let Err(problem) = $crate::AccessPolicy::new($table, &$services) {
                    panic!("{problem}");
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use dw_ids::TenantId;

    const WEBHOOKS: &str = "dw.notifications.v1.WebhookService";
    const RULES: &[Rule] = &[
        ("dw.notifications.v1.WebhookService/CreateWebhook", MANAGER),
        ("dw.notifications.v1.WebhookService/ListWebhooks", MANAGER),
        ("dw.notifications.v1.WebhookService/DeleteWebhook", MANAGER),
        ("dw.notifications.v1.WebhookService/RotateWebhookSecret", MANAGER),
        ("dw.notifications.v1.WebhookService/ListDeliveries", MANAGER_OR_SERVICE),
        ("dw.notifications.v1.WebhookService/RedeliverWebhook", MANAGER),
    ];

    fn caller(roles: &[Role]) -> Principal {
        Principal::new("someone".into(), TenantId::parse("acme").unwrap(), roles.to_vec())
    }

    #[test]
    fn given_a_table_covering_the_service_when_a_caller_has_an_admitted_role_then_it_is_admitted() {
        let policy = AccessPolicy::new(RULES, &[WEBHOOKS]).unwrap();
        let path = Some("/dw.notifications.v1.WebhookService/ListDeliveries");
        assert!(policy.admit(path, &caller(&[Role::Service])).is_ok());
        assert!(policy.admit(path, &caller(&[Role::Agent, Role::Manager])).is_ok());
    }

    #[test]
    fn a_caller_without_an_admitted_role_and_a_token_without_roles_are_denied() {
        let policy = AccessPolicy::new(RULES, &[WEBHOOKS]).unwrap();
        let path = Some("/dw.notifications.v1.WebhookService/CreateWebhook");
        for roles in [&[Role::Agent][..], &[]] {
            let denied = policy.admit(path, &caller(roles)).unwrap_err();
            assert_eq!(denied.code(), tonic::Code::PermissionDenied);
            assert_eq!(errors::reason_of(&denied).as_deref(), Some("ROLE_REQUIRED"));
        }
    }

    #[test]
    fn a_method_without_a_rule_or_an_unknown_path_is_denied_to_everyone() {
        let policy = AccessPolicy::new(RULES, &[WEBHOOKS]).unwrap();
        for path in [None, Some("/dw.notifications.v1.NotificationService/Subscribe"), Some("/x")] {
            let denied = policy.admit(path, &caller(ANY_ROLE)).unwrap_err();
            assert_eq!(errors::reason_of(&denied).as_deref(), Some("NO_ACCESS_RULE"));
        }
    }

    #[test]
    fn a_table_that_misses_a_method_duplicates_one_or_names_another_service_is_refused() {
        let missing = AccessPolicy::new(&RULES[1..], &[WEBHOOKS]).unwrap_err();
        assert!(missing.contains("CreateWebhook"), "{missing}");
        let mut doubled = RULES.to_vec();
        doubled.push(RULES[0]);
        assert!(AccessPolicy::new(&doubled, &[WEBHOOKS]).unwrap_err().contains("two access rules"));
        let mut foreign = RULES.to_vec();
        foreign.push(("dw.notifications.v1.NotificationService/Subscribe", AGENT));
        assert!(AccessPolicy::new(&foreign, &[WEBHOOKS]).unwrap_err().contains("not served here"));
        let mut empty = RULES[1..].to_vec();
        empty.push(("dw.notifications.v1.WebhookService/CreateWebhook", &[]));
        assert!(AccessPolicy::new(&empty, &[WEBHOOKS]).unwrap_err().contains("admits no role"));
    }
}
