//! Where a token carries the subject, the tenant and the roles: identity providers put them in
//! different places (Keycloak `realm_access.roles`, Entra ID `roles`, Auth0 a namespaced
//! `https://example.com/roles`), so the paths are configuration, parsed once into a
//! [`ClaimMapping`] that turns a verified claim set into a [`Principal`].

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::{AuthError, Principal, Role, TenantId};

/// The longest claim path accepted, in segments (a token is not a deep tree).
const MAX_SEGMENTS: usize = 8;

/// A path to a claim: segments separated by `.`, a `.` inside a claim name written `\.` (and a
/// backslash `\\`). `realm_access.roles` is the claim `roles` inside the object `realm_access`;
/// `https://example\.com/roles` is the top-level claim `https://example.com/roles`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimPath {
    segments: Vec<String>,
    text: String,
}

impl ClaimPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let mut current = String::new();
        let mut chars = text.trim().chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(escaped @ ('.' | '\\')) => current.push(escaped),
                    _ => return Err(r"a backslash must be followed by `.` or `\`".into()),
                },
                '.' => segments.push(std::mem::take(&mut current)),
                _ => current.push(c),
            }
        }
        segments.push(current);
        if segments.iter().any(String::is_empty) {
            return Err("a claim path has no empty segment (write a dot inside a claim name as `\\.`)".into());
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(format!("a claim path has at most {MAX_SEGMENTS} segments"));
        }
        Ok(Self { segments, text: text.trim().to_owned() })
    }

    /// The value at this path in `claims`, if every step is an object that has the next name.
    pub fn find<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        self.segments.iter().try_fold(claims, |value, segment| value.as_object()?.get(segment))
    }

    /// The path as configured (for error messages).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Identity-provider role names to Digital Workspace roles: `dw-agent=agent,dw-manager=manager`.
/// Without a map the role names `agent`, `manager` and `service` are taken as they are; with
/// one, only the names it lists grant a role. Other names in the token are ignored either way
/// (an IdP puts roles of other applications in the same claim).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleMap {
    names: HashMap<String, Role>,
}

impl RoleMap {
    /// Parses `idp-name=role` pairs separated by commas (empty: no map).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut names = HashMap::new();
        for pair in text.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
            let (idp, role) =
                pair.split_once('=').ok_or_else(|| format!("{pair:?} is not idp-role=agent|manager|service"))?;
            let (idp, role) = (idp.trim(), role.trim());
            let role = Role::parse(role).ok_or_else(|| format!("{role:?} is not agent, manager or service"))?;
            if idp.is_empty() {
                return Err(format!("{pair:?} names no identity-provider role"));
            }
            if names.insert(idp.to_owned(), role).is_some() {
                return Err(format!("{idp:?} is mapped twice"));
            }
        }
        Ok(Self { names })
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn role(&self, name: &str) -> Option<Role> {
        if self.names.is_empty() { Role::parse(name) } else { self.names.get(name).copied() }
    }
}

/// Where the subject, tenant and roles are in a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    pub subject: ClaimPath,
    pub tenant: ClaimPath,
    pub roles: ClaimPath,
    pub role_map: RoleMap,
}

impl Default for ClaimMapping {
    /// `sub`, `tenant` and `roles` at the top level, role names as they are: what `dwctl token`
    /// mints.
    fn default() -> Self {
        Self::parse("sub", "tenant", "roles", "").unwrap_or_else(|_| unreachable!("the default paths are valid"))
    }
}

impl ClaimMapping {
    pub fn parse(subject: &str, tenant: &str, roles: &str, role_map: &str) -> Result<Self, String> {
        Ok(Self {
            subject: ClaimPath::parse(subject).map_err(|e| format!("subject claim: {e}"))?,
            tenant: ClaimPath::parse(tenant).map_err(|e| format!("tenant claim: {e}"))?,
            roles: ClaimPath::parse(roles).map_err(|e| format!("roles claim: {e}"))?,
            role_map: RoleMap::parse(role_map).map_err(|e| format!("role map: {e}"))?,
        })
    }

    /// The caller a verified claim set names. A missing subject, tenant or roles claim is an
    /// error; a roles claim without a role this service knows gives a caller without roles
    /// (admitted nowhere: `PERMISSION_DENIED`).
    pub fn principal(&self, claims: &Value) -> Result<Principal, AuthError> {
        let subject = self.string(&self.subject, claims)?;
        let subject = subject.trim();
        if subject.is_empty() || subject.len() > 128 || subject.chars().any(char::is_control) {
            return Err(self.bad(&self.subject, "must be 1-128 printable characters"));
        }
        let tenant = self.string(&self.tenant, claims)?;
        let tenant = TenantId::parse(tenant).map_err(|reason| self.bad(&self.tenant, &reason))?;
        let names: Vec<&str> = match self.roles.find(claims) {
            None | Some(Value::Null) => return Err(AuthError::MissingClaim { claim: self.roles.to_string() }),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().ok_or_else(|| self.bad(&self.roles, "must hold strings")))
                .collect::<Result<_, _>>()?,
            // Space-separated, like `scope`.
            Some(Value::String(text)) => text.split_whitespace().collect(),
            Some(_) => return Err(self.bad(&self.roles, "must be a list of role names or a string")),
        };
        let mut roles = Vec::new();
        for role in names.into_iter().filter_map(|name| self.role_map.role(name)) {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        Ok(Principal::new(subject.to_owned(), tenant, roles))
    }

    fn string<'a>(&self, path: &ClaimPath, claims: &'a Value) -> Result<&'a str, AuthError> {
        match path.find(claims) {
            None | Some(Value::Null) => Err(AuthError::MissingClaim { claim: path.to_string() }),
            Some(Value::String(text)) => Ok(text),
            Some(_) => Err(self.bad(path, "must be a string")),
        }
    }

    fn bad(&self, path: &ClaimPath, reason: &str) -> AuthError {
        AuthError::BadClaim { claim: path.to_string(), reason: reason.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_path_is_split_on_dots_and_an_escaped_dot_stays_in_the_name() {
        let keycloak = ClaimPath::parse("realm_access.roles").unwrap();
        let claims = json!({"realm_access": {"roles": ["agent"]}, "https://example.com/roles": ["manager"]});
        assert_eq!(keycloak.find(&claims), Some(&json!(["agent"])));
        let auth0 = ClaimPath::parse(r"https://example\.com/roles").unwrap();
        assert_eq!(auth0.find(&claims), Some(&json!(["manager"])));
        assert_eq!(ClaimPath::parse("https://example.com/roles").unwrap().find(&claims), None);
        for bad in ["", "a..b", ".a", "a.", r"a\b", r"a\", "a.b.c.d.e.f.g.h.i"] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keycloak_entra_and_auth0_layouts_map_to_the_same_principal() {
        let layouts = [
            (
                ClaimMapping::parse("sub", "tenant", "realm_access.roles", "").unwrap(),
                json!({"sub": "ana", "tenant": "acme", "realm_access": {"roles": ["offline_access", "agent"]}}),
            ),
            (
                ClaimMapping::parse("oid", "extn\\.tenant", "roles", "DW.Agent=agent").unwrap(),
                json!({"oid": "ana", "extn.tenant": "acme", "roles": ["DW.Agent", "Other.Role"]}),
            ),
            (
                ClaimMapping::parse("sub", r"https://dw\.example\.com/tenant", r"https://dw\.example\.com/roles", "")
                    .unwrap(),
                json!({"sub": "ana", "https://dw.example.com/tenant": "acme", "https://dw.example.com/roles": "agent"}),
            ),
        ];
        for (mapping, claims) in layouts {
            let principal = mapping.principal(&claims).unwrap();
            assert_eq!((principal.subject(), principal.tenant().as_str()), ("ana", "acme"));
            assert_eq!(principal.roles(), &[Role::Agent]);
        }
    }

    #[test]
    fn a_role_map_grants_only_the_names_it_lists() {
        let mapping = ClaimMapping::parse("sub", "tenant", "roles", "dw-manager=manager, dw-agent=agent").unwrap();
        let claims = json!({"sub": "a", "tenant": "acme", "roles": ["manager", "dw-agent", "dw-agent"]});
        assert_eq!(mapping.principal(&claims).unwrap().roles(), &[Role::Agent]);
        assert!(RoleMap::parse("x=root").is_err());
        assert!(RoleMap::parse("x").is_err());
        assert!(RoleMap::parse("x=agent,x=manager").is_err());
        assert!(RoleMap::parse("").unwrap().is_empty());
    }

    #[test]
    fn missing_claims_are_errors_and_roles_nobody_knows_give_no_role() {
        let mapping = ClaimMapping::default();
        let missing = |claims: Value| match mapping.principal(&claims) {
            Err(AuthError::MissingClaim { claim }) => claim,
            other => panic!("{other:?}"),
        };
        assert_eq!(missing(json!({"tenant": "acme", "roles": []})), "sub");
        assert_eq!(missing(json!({"sub": "a", "roles": []})), "tenant");
        assert_eq!(missing(json!({"sub": "a", "tenant": "acme"})), "roles");
        let nobody = mapping.principal(&json!({"sub": "a", "tenant": "acme", "roles": ["root"]})).unwrap();
        assert!(nobody.roles().is_empty());
        for bad in [
            json!({"sub": 1, "tenant": "acme", "roles": []}),
            json!({"sub": "a", "tenant": "Not A Tenant", "roles": []}),
            json!({"sub": "a", "tenant": "acme", "roles": [1]}),
            json!({"sub": "a", "tenant": "acme", "roles": {}}),
        ] {
            assert!(matches!(mapping.principal(&bad), Err(AuthError::BadClaim { .. })), "{bad}");
        }
    }
}
