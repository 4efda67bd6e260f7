//! The `Agent` aggregate: registration, linked departments and granted permissions.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AgentId, DepartmentId, DomainError, Permission};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub granted_at: DateTime<Utc>,
    pub granted_by: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// Display name; `None` until registered.
    pub display_name: Option<String>,
    pub registered_at: Option<DateTime<Utc>>,
    pub departments: BTreeSet<DepartmentId>,
    pub permissions: BTreeMap<Permission, Grant>,
}

impl Agent {
    pub fn is_registered(&self) -> bool {
        self.display_name.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Register { display_name: String },
    LinkDepartment(DepartmentId),
    UnlinkDepartment(DepartmentId),
    Grant(Permission),
    Revoke(Permission),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Registered { display_name: String, by: String, at: DateTime<Utc> },
    DepartmentLinked { department: DepartmentId, by: String, at: DateTime<Utc> },
    DepartmentUnlinked { department: DepartmentId, by: String, at: DateTime<Utc> },
    PermissionGranted { permission: Permission, by: String, at: DateTime<Utc> },
    PermissionRevoked { permission: Permission, by: String, at: DateTime<Utc> },
}

/// `by` is the manager acting.
pub fn decide(
    agent_id: &AgentId,
    state: &Agent,
    command: Command,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let by = by.to_owned();
    if let Command::Register { display_name } = command {
        if state.is_registered() {
            return Err(DomainError::AgentAlreadyRegistered(agent_id.to_string()));
        }
        return Ok(vec![Event::Registered { display_name, by, at: now }]);
    }
    if !state.is_registered() {
        return Err(DomainError::AgentNotFound(agent_id.to_string()));
    }
    let event = match command {
        Command::Register { .. } => return Err(DomainError::AgentAlreadyRegistered(agent_id.to_string())),
        Command::LinkDepartment(department) => {
            if state.departments.contains(&department) {
                return Err(DomainError::DepartmentAlreadyLinked(department.to_string()));
            }
            Event::DepartmentLinked { department, by, at: now }
        }
        Command::UnlinkDepartment(department) => {
            if !state.departments.contains(&department) {
                return Err(DomainError::DepartmentNotLinked(department.to_string()));
            }
            Event::DepartmentUnlinked { department, by, at: now }
        }
        Command::Grant(permission) => {
            if state.permissions.contains_key(&permission) {
                return Err(DomainError::PermissionAlreadyGranted(permission.to_string()));
            }
            Event::PermissionGranted { permission, by, at: now }
        }
        Command::Revoke(permission) => {
            if !state.permissions.contains_key(&permission) {
                return Err(DomainError::PermissionNotGranted(permission.to_string()));
            }
            Event::PermissionRevoked { permission, by, at: now }
        }
    };
    Ok(vec![event])
}

pub fn evolve(mut state: Agent, event: &Event) -> Agent {
    match event {
        Event::Registered { display_name, at, .. } => {
            state.display_name = Some(display_name.clone());
            state.registered_at = Some(*at);
        }
        Event::DepartmentLinked { department, .. } => {
            state.departments.insert(department.clone());
        }
        Event::DepartmentUnlinked { department, .. } => {
            state.departments.remove(department);
        }
        Event::PermissionGranted { permission, by, at } => {
            state.permissions.insert(*permission, Grant { granted_at: *at, granted_by: by.clone() });
        }
        Event::PermissionRevoked { permission, .. } => {
            state.permissions.remove(permission);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap()
    }

    fn id() -> AgentId {
        AgentId::parse("ana").unwrap()
    }

    fn registered() -> Agent {
        let events = decide(&id(), &Agent::default(), Command::Register { display_name: "Ana".into() }, "boss", now());
        events.unwrap().iter().fold(Agent::default(), evolve)
    }

    #[test]
    fn unregistered_agent_is_not_found_for_everything_but_registration() {
        let sales = DepartmentId::parse("sales").unwrap();
        assert_eq!(
            decide(&id(), &Agent::default(), Command::LinkDepartment(sales), "boss", now()),
            Err(DomainError::AgentNotFound("ana".into()))
        );
        assert!(registered().is_registered());
        assert_eq!(
            decide(&id(), &registered(), Command::Register { display_name: "Ana".into() }, "boss", now()),
            Err(DomainError::AgentAlreadyRegistered("ana".into()))
        );
    }

    #[test]
    fn departments_link_once_and_unlink_when_linked() {
        let sales = DepartmentId::parse("sales").unwrap();
        let events = decide(&id(), &registered(), Command::LinkDepartment(sales.clone()), "boss", now()).unwrap();
        let agent = events.iter().fold(registered(), evolve);
        assert!(agent.departments.contains(&sales));
        assert_eq!(
            decide(&id(), &agent, Command::LinkDepartment(sales.clone()), "boss", now()),
            Err(DomainError::DepartmentAlreadyLinked("sales".into()))
        );
        let events = decide(&id(), &agent, Command::UnlinkDepartment(sales.clone()), "boss", now()).unwrap();
        let agent = events.iter().fold(agent, evolve);
        assert!(agent.departments.is_empty());
        assert_eq!(
            decide(&id(), &agent, Command::UnlinkDepartment(sales), "boss", now()),
            Err(DomainError::DepartmentNotLinked("sales".into()))
        );
    }

    #[test]
    fn permissions_are_granted_once_and_revoked_when_granted() {
        let permission = Permission::ProtocolsSearch;
        let events = decide(&id(), &registered(), Command::Grant(permission), "boss", now()).unwrap();
        let agent = events.iter().fold(registered(), evolve);
        assert_eq!(agent.permissions[&permission].granted_by, "boss");
        assert!(decide(&id(), &agent, Command::Grant(permission), "boss", now()).is_err());
        let events = decide(&id(), &agent, Command::Revoke(permission), "boss", now()).unwrap();
        let agent = events.iter().fold(agent, evolve);
        assert!(agent.permissions.is_empty());
        assert_eq!(
            decide(&id(), &agent, Command::Revoke(permission), "boss", now()),
            Err(DomainError::PermissionNotGranted("protocols.search".into()))
        );
    }
}
