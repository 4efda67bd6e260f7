//! The settings of distribution a tenant's managers own here (the default capacity, where
//! inbound client messages without a department go) and how an update changes them: only the
//! fields its mask names (AIP-134), only from the version its caller read (AIP-154).

use dw_eventstore::{StaleVersion, UpdateMask, check_version};

use super::DepartmentId;

/// An agent's capacity unless a manager overrides it.
pub const DEFAULT_CAPACITY: i32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnSettings {
    /// 1-100.
    pub default_capacity: i32,
    pub inbound_department: Option<DepartmentId>,
}

impl Default for OwnSettings {
    fn default() -> Self {
        Self { default_capacity: DEFAULT_CAPACITY, inbound_department: None }
    }
}

/// The settings an update can name in its mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    DefaultCapacity,
    InboundDepartment,
}

impl Field {
    /// The mask paths (the contract's field names) of the updatable settings.
    pub const UPDATABLE: &'static [(&'static str, Field)] =
        &[("default_capacity", Field::DefaultCapacity), ("inbound_department_id", Field::InboundDepartment)];

    /// Read-only here (`auto_distribution_enabled` follows agent-sessions) or output only.
    pub const READ_ONLY: &'static [&'static str] = &["auto_distribution_enabled", "version", "time_zone"];
}

/// A manager's change: the fields `mask` names take their value from `patch` (a field the request
/// did not set is `None` there: its default), the others keep theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub default_capacity: Option<i32>,
    pub inbound_department: Option<DepartmentId>,
    pub mask: UpdateMask<Field>,
    pub expected_version: Option<u64>,
}

/// The settings after `update`, or why it is refused: they moved on since the caller read them at
/// `expected_version` (`version` is theirs now).
pub fn apply(current: &OwnSettings, version: u64, update: Update) -> Result<OwnSettings, StaleVersion> {
    check_version(update.expected_version, version)?;
    let mask = &update.mask;
    Ok(OwnSettings {
        default_capacity: mask.pick(
            Field::DefaultCapacity,
            current.default_capacity,
            update.default_capacity.unwrap_or(DEFAULT_CAPACITY),
        ),
        inbound_department: mask.pick(
            Field::InboundDepartment,
            current.inbound_department.clone(),
            update.inbound_department,
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn configured() -> OwnSettings {
        OwnSettings { default_capacity: 5, inbound_department: Some(DepartmentId::parse("support").expect("valid")) }
    }

    fn only(fields: &[Field]) -> UpdateMask<Field> {
        UpdateMask::Fields(fields.iter().copied().collect::<BTreeSet<_>>())
    }

    fn update(default_capacity: Option<i32>, mask: UpdateMask<Field>) -> Update {
        Update { default_capacity, inbound_department: None, mask, expected_version: None }
    }

    #[test]
    fn given_configured_settings_when_only_the_capacity_is_named_then_the_inbound_department_stays() {
        let after = apply(&configured(), 2, update(Some(8), only(&[Field::DefaultCapacity]))).expect("applies");
        assert_eq!(after, OwnSettings { default_capacity: 8, ..configured() });
    }

    #[test]
    fn given_configured_settings_when_a_named_field_is_not_set_then_it_takes_its_default() {
        let after = apply(&configured(), 2, update(None, UpdateMask::All)).expect("applies");
        assert_eq!(after, OwnSettings::default());
        let after = apply(&configured(), 2, update(None, only(&[Field::InboundDepartment]))).expect("applies");
        assert_eq!(after, OwnSettings { inbound_department: None, ..configured() });
    }

    #[test]
    fn given_settings_at_version_two_when_the_caller_read_version_one_then_it_is_stale() {
        let stale = Update { expected_version: Some(1), ..update(Some(8), UpdateMask::All) };
        assert_eq!(apply(&configured(), 2, stale), Err(StaleVersion { expected: 1, current: 2 }));
        let current = Update { expected_version: Some(2), ..update(Some(8), UpdateMask::All) };
        assert!(apply(&configured(), 2, current).is_ok());
    }
}
