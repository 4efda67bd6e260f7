//! The tenant's settings aggregate: automatic distribution, exit and break reasons (and whether
//! a break must name one), the ticket-workspace link, the time zone.

use dw_eventstore::{StaleVersion, UpdateMask, check_version};
use dw_tenant_time::TenantZone;
use serde::{Deserialize, Serialize};

use super::{Reason, ReasonId};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    pub auto_distribution_enabled: bool,
    pub exit_reasons: Vec<Reason>,
    pub break_reasons: Vec<Reason>,
    pub ticket_workspace_url: Option<String>,
    /// The tenant's calendar: protocol dates, service-day dates, date filters. Settings stored
    /// before zones existed read as UTC.
    #[serde(default)]
    pub time_zone: TenantZone,
    /// With break reasons configured, a break may still go without one.
    #[serde(default)]
    pub break_reason_optional: bool,
}

impl TenantSettings {
    /// Whether a break must name one of the tenant's reasons.
    pub fn break_reason_required(&self) -> bool {
        !self.break_reasons.is_empty() && !self.break_reason_optional
    }

    pub fn exit_reason(&self, id: &ReasonId) -> Option<&Reason> {
        self.exit_reasons.iter().find(|r| &r.id == id)
    }

    pub fn break_reason(&self, id: &ReasonId) -> Option<&Reason> {
        self.break_reasons.iter().find(|r| &r.id == id)
    }
}

/// The settings an update can name in its mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    AutoDistributionEnabled,
    ExitReasons,
    BreakReasons,
    TicketWorkspaceUrl,
    TimeZone,
    BreakReasonOptional,
}

impl Field {
    /// The mask paths (the contract's field names) of the updatable settings.
    pub const UPDATABLE: &'static [(&'static str, Field)] = &[
        ("auto_distribution_enabled", Field::AutoDistributionEnabled),
        ("exit_reasons", Field::ExitReasons),
        ("break_reasons", Field::BreakReasons),
        ("ticket_workspace_url", Field::TicketWorkspaceUrl),
        ("time_zone", Field::TimeZone),
        ("break_reason_optional", Field::BreakReasonOptional),
    ];

    /// Output-only fields: a mask naming them is refused.
    pub const READ_ONLY: &'static [&'static str] = &["version"];
}

/// A manager's change: the fields `mask` names take their value from `patch`, the others keep
/// theirs; with `expected_version`, only if the settings are still at that version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub patch: TenantSettings,
    pub mask: UpdateMask<Field>,
    pub expected_version: Option<u64>,
}

/// The settings after `update`, or why it is refused: the settings moved on since the caller read
/// them at `expected_version` (`version` is theirs now).
pub fn apply(current: &TenantSettings, version: u64, update: Update) -> Result<TenantSettings, StaleVersion> {
    check_version(update.expected_version, version)?;
    let Update { patch, mask, .. } = update;
    Ok(TenantSettings {
        auto_distribution_enabled: mask.pick(
            Field::AutoDistributionEnabled,
            current.auto_distribution_enabled,
            patch.auto_distribution_enabled,
        ),
        exit_reasons: mask.pick(Field::ExitReasons, current.exit_reasons.clone(), patch.exit_reasons),
        break_reasons: mask.pick(Field::BreakReasons, current.break_reasons.clone(), patch.break_reasons),
        ticket_workspace_url: mask.pick(
            Field::TicketWorkspaceUrl,
            current.ticket_workspace_url.clone(),
            patch.ticket_workspace_url,
        ),
        time_zone: mask.pick(Field::TimeZone, current.time_zone, patch.time_zone),
        break_reason_optional: mask.pick(
            Field::BreakReasonOptional,
            current.break_reason_optional,
            patch.break_reason_optional,
        ),
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Changed(TenantSettings),
}

/// Applies `update` to the settings at `version`; an update that leaves them equal changes nothing.
pub fn decide(state: &TenantSettings, version: u64, update: Update) -> Result<Vec<Event>, StaleVersion> {
    let new_settings = apply(state, version, update)?;
    if *state == new_settings {
        return Ok(Vec::new());
    }
    Ok(vec![Event::Changed(new_settings)])
}

pub fn evolve(_state: TenantSettings, event: &Event) -> TenantSettings {
    match event {
        Event::Changed(settings) => settings.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn reason(id: &str) -> Reason {
        Reason { id: ReasonId::parse(id).expect("valid reason id"), label: id.to_owned() }
    }

    /// A tenant with everything configured.
    fn configured() -> TenantSettings {
        TenantSettings {
            auto_distribution_enabled: true,
            exit_reasons: vec![reason("meeting")],
            break_reasons: vec![reason("lunch"), reason("coffee")],
            ticket_workspace_url: Some("https://crm.example.com/old".into()),
            time_zone: TenantZone::parse("America/Sao_Paulo").expect("known zone"),
            break_reason_optional: false,
        }
    }

    fn only(fields: &[Field]) -> UpdateMask<Field> {
        UpdateMask::Fields(fields.iter().copied().collect::<BTreeSet<_>>())
    }

    fn update(patch: TenantSettings, mask: UpdateMask<Field>) -> Update {
        Update { patch, mask, expected_version: None }
    }

    #[test]
    fn given_configured_settings_when_only_the_link_is_named_then_distribution_and_reasons_stay() {
        let current = configured();
        let patch =
            TenantSettings { ticket_workspace_url: Some("https://crm.example.com/new".into()), ..Default::default() };

        let events = decide(&current, 4, update(patch, only(&[Field::TicketWorkspaceUrl]))).expect("applies");

        let after = events.iter().fold(current.clone(), evolve);
        assert_eq!(after.ticket_workspace_url.as_deref(), Some("https://crm.example.com/new"));
        assert!(after.auto_distribution_enabled);
        assert_eq!(after.exit_reasons, current.exit_reasons);
        assert_eq!(after.break_reasons, current.break_reasons);
    }

    #[test]
    fn given_configured_settings_when_a_named_field_is_absent_from_the_patch_then_it_is_cleared() {
        let events =
            decide(&configured(), 1, update(TenantSettings::default(), only(&[Field::BreakReasons]))).expect("applies");
        let after = events.iter().fold(configured(), evolve);
        assert!(after.break_reasons.is_empty());
        assert_eq!(after.exit_reasons, configured().exit_reasons);
    }

    #[test]
    fn given_configured_settings_when_the_mask_is_all_then_the_patch_replaces_everything() {
        let patch = TenantSettings { auto_distribution_enabled: true, ..Default::default() };
        let events = decide(&configured(), 1, update(patch.clone(), UpdateMask::All)).expect("applies");
        assert_eq!(events.iter().fold(configured(), evolve), patch);
    }

    #[test]
    fn given_settings_when_the_update_leaves_them_equal_then_nothing_happens() {
        let events = decide(&configured(), 2, update(configured(), UpdateMask::All)).expect("applies");
        assert!(events.is_empty());
        let events = decide(&configured(), 2, update(TenantSettings::default(), only(&[]))).expect("applies");
        assert!(events.is_empty());
    }

    #[test]
    fn given_a_zone_when_only_the_break_flag_is_named_then_the_zone_stays() {
        let patch = TenantSettings { break_reason_optional: true, ..Default::default() };
        let events = decide(&configured(), 3, update(patch, only(&[Field::BreakReasonOptional]))).expect("applies");
        let after = events.iter().fold(configured(), evolve);
        assert!(after.break_reason_optional);
        assert!(!after.break_reason_required());
        assert_eq!(after.time_zone.name(), "America/Sao_Paulo");
    }

    #[test]
    fn given_configured_settings_when_the_zone_is_named_and_absent_then_it_is_utc_again() {
        let events =
            decide(&configured(), 3, update(TenantSettings::default(), only(&[Field::TimeZone]))).expect("applies");
        let after = events.iter().fold(configured(), evolve);
        assert!(after.time_zone.is_utc());
        assert_eq!(after.break_reasons, configured().break_reasons);
    }

    #[test]
    fn given_break_reasons_then_a_reason_is_required_unless_optional_and_without_reasons_never() {
        assert!(configured().break_reason_required());
        assert!(!TenantSettings { break_reason_optional: true, ..configured() }.break_reason_required());
        assert!(!TenantSettings { break_reasons: Vec::new(), ..configured() }.break_reason_required());
    }

    #[test]
    fn given_settings_at_version_five_when_the_caller_read_version_four_then_it_is_stale() {
        let stale = Update { expected_version: Some(4), ..update(TenantSettings::default(), UpdateMask::All) };
        assert_eq!(decide(&configured(), 5, stale), Err(StaleVersion { expected: 4, current: 5 }));

        let current = Update { expected_version: Some(5), ..update(TenantSettings::default(), UpdateMask::All) };
        assert_eq!(decide(&configured(), 5, current).map(|events| events.len()), Ok(1));
    }
}
