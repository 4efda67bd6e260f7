//! The tenant's settings aggregate: automatic distribution, exit and break reasons, the
//! ticket-workspace link.

use serde::{Deserialize, Serialize};

use super::{Reason, ReasonId};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    pub auto_distribution_enabled: bool,
    pub exit_reasons: Vec<Reason>,
    pub break_reasons: Vec<Reason>,
    pub ticket_workspace_url: Option<String>,
}

impl TenantSettings {
    pub fn exit_reason(&self, id: &ReasonId) -> Option<&Reason> {
        self.exit_reasons.iter().find(|r| &r.id == id)
    }

    pub fn break_reason(&self, id: &ReasonId) -> Option<&Reason> {
        self.break_reasons.iter().find(|r| &r.id == id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Changed(TenantSettings),
}

/// Replacing the settings with equal ones changes nothing.
pub fn decide(state: &TenantSettings, new_settings: TenantSettings) -> Vec<Event> {
    if *state == new_settings {
        return Vec::new();
    }
    vec![Event::Changed(new_settings)]
}

pub fn evolve(_state: TenantSettings, event: &Event) -> TenantSettings {
    match event {
        Event::Changed(settings) => settings.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_settings_change_nothing_and_new_ones_replace_the_old() {
        let current = TenantSettings::default();
        assert!(decide(&current, TenantSettings::default()).is_empty());
        let new_settings = TenantSettings { auto_distribution_enabled: true, ..Default::default() };
        let events = decide(&current, new_settings.clone());
        assert_eq!(events.iter().fold(current, evolve), new_settings);
    }
}
