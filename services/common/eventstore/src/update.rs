//! Partial updates (AIP-134) and optimistic concurrency of a read-modify-write (AIP-154), the same
//! for every service's `Update*` RPC: which fields an update names ([`UpdateMask`], parsed once at
//! the edge from the request's `google.protobuf.FieldMask` paths) and whether the caller's
//! `expected_version` is still the resource's ([`check_version`]). Pure: no I/O.

use std::collections::BTreeSet;

use crate::Violation;

/// The path that names every updatable field (a full replacement).
pub const ALL_FIELDS: &str = "*";

/// The fields an update changes; every other field keeps its value. Valid by construction: it
/// names only fields the resource lets a caller update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateMask<F> {
    /// `*`: every updatable field is replaced by the request's value (absent = its default).
    All,
    /// Only these fields (an empty set changes nothing).
    Fields(BTreeSet<F>),
}

impl<F: Copy + Ord> UpdateMask<F> {
    /// Parses the paths of the request's `update_mask` (the field `field`, usually `update_mask`)
    /// against the resource's updatable fields `updatable` (`(path, field)`). A path of an
    /// output-only or read-only field (`read_only`) and an unknown path are refused, naming the
    /// path; `*` must be alone. An empty mask is `if_empty`: each RPC documents what that means
    /// for its callers.
    pub fn parse(
        field: &str,
        paths: &[String],
        updatable: &[(&'static str, F)],
        read_only: &[&str],
        if_empty: impl FnOnce() -> Self,
    ) -> Result<Self, Vec<Violation>> {
        if paths.is_empty() {
            return Ok(if_empty());
        }
        let mut violations = Vec::new();
        let mut fields = BTreeSet::new();
        let mut all = false;
        for path in paths {
            let path = path.trim();
            if path == ALL_FIELDS {
                all = true;
            } else if let Some((_, known)) = updatable.iter().find(|(name, _)| *name == path) {
                fields.insert(*known);
            } else if read_only.contains(&path) {
                violations.push((field.to_owned(), format!("path {path:?} names a field that cannot be updated")));
            } else {
                let names: Vec<&str> = updatable.iter().map(|(name, _)| *name).collect();
                violations.push((
                    field.to_owned(),
                    format!("unknown path {path:?}; the paths are {}, or \"*\" for all of them", names.join(", ")),
                ));
            }
        }
        if all && paths.len() > 1 {
            violations.push((field.to_owned(), "\"*\" must be the only path".to_owned()));
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(if all { Self::All } else { Self::Fields(fields) })
    }

    /// Whether the update changes `field`.
    pub fn includes(&self, field: F) -> bool {
        match self {
            Self::All => true,
            Self::Fields(fields) => fields.contains(&field),
        }
    }

    /// `value` when the update changes `field`, otherwise `current`.
    pub fn pick<T>(&self, field: F, current: T, value: T) -> T {
        if self.includes(field) { value } else { current }
    }
}

/// The resource moved on since the caller read it: their change would overwrite one they have not
/// seen. `ABORTED` on the wire (AIP-154), with both versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the resource changed since you read it: it is at version {current}, you read version {expected}; read it again and \
     reapply your change"
)]
pub struct StaleVersion {
    pub expected: u64,
    pub current: u64,
}

/// Checks the caller's `expected_version` (none: no check, last writer wins) against the
/// resource's `current` version.
pub fn check_version(expected: Option<u64>, current: u64) -> Result<(), StaleVersion> {
    match expected {
        Some(expected) if expected != current => Err(StaleVersion { expected, current }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Field {
        Url,
        Reasons,
    }

    const UPDATABLE: &[(&str, Field)] = &[("url", Field::Url), ("reasons", Field::Reasons)];

    fn parse(paths: &[&str]) -> Result<UpdateMask<Field>, Vec<Violation>> {
        let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
        UpdateMask::parse("update_mask", &paths, UPDATABLE, &["version"], || UpdateMask::All)
    }

    #[test]
    fn given_named_paths_when_parsed_then_only_those_fields_change() {
        let mask = parse(&["url"]).expect("valid");
        assert!(mask.includes(Field::Url));
        assert!(!mask.includes(Field::Reasons));
        assert_eq!(mask.pick(Field::Reasons, "kept", "new"), "kept");
        assert_eq!(mask.pick(Field::Url, "old", "new"), "new");
    }

    #[test]
    fn given_a_star_or_an_empty_mask_when_parsed_then_everything_changes_or_the_default_applies() {
        assert_eq!(parse(&["*"]), Ok(UpdateMask::All));
        assert_eq!(parse(&[]), Ok(UpdateMask::All));
        let paths: Vec<String> = Vec::new();
        let only_url = UpdateMask::parse("update_mask", &paths, UPDATABLE, &[], || {
            UpdateMask::Fields(BTreeSet::from([Field::Url]))
        });
        assert_eq!(only_url, Ok(UpdateMask::Fields(BTreeSet::from([Field::Url]))));
    }

    #[test]
    fn given_an_unknown_or_read_only_path_when_parsed_then_the_violation_names_it() {
        let violations = parse(&["url", "colour"]).expect_err("unknown path");
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].0, "update_mask");
        assert!(violations[0].1.contains("\"colour\""), "{violations:?}");
        let violations = parse(&["version"]).expect_err("output only");
        assert!(violations[0].1.contains("\"version\""), "{violations:?}");
        let violations = parse(&["*", "url"]).expect_err("star not alone");
        assert!(violations[0].1.contains("only path"), "{violations:?}");
    }

    #[test]
    fn given_an_expected_version_when_checked_then_only_the_current_one_passes() {
        assert_eq!(check_version(None, 7), Ok(()));
        assert_eq!(check_version(Some(7), 7), Ok(()));
        let stale = check_version(Some(6), 7).expect_err("stale");
        assert_eq!(stale, StaleVersion { expected: 6, current: 7 });
        assert!(stale.to_string().contains("changed since you read it"));
    }
}
