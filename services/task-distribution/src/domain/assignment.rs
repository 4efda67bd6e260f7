//! Choosing an agent for a task: eligible agents (day open, not on break, no exit notified,
//! linked to the task's department, below capacity) with the fewest active tasks, then the one
//! idle the longest. Every other candidate gets the reason it was not chosen.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AgentId;

/// What the dispatcher knows of an agent linked to the task's department.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub agent_id: AgentId,
    pub day_open: bool,
    pub on_break: bool,
    pub exit_notified: bool,
    pub active_tasks: i32,
    pub capacity: i32,
    pub idle_since: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exclusion {
    DayNotStarted,
    OnBreak,
    ExitNotified,
    AtCapacity,
    MoreActiveTasks,
    LessIdleTime,
}

impl Exclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DayNotStarted => "day_not_started",
            Self::OnBreak => "on_break",
            Self::ExitNotified => "exit_notified",
            Self::AtCapacity => "at_capacity",
            Self::MoreActiveTasks => "more_active_tasks",
            Self::LessIdleTime => "less_idle_time",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub agent_id: AgentId,
    /// `None` for the chosen agent.
    pub exclusion: Option<Exclusion>,
    pub active_tasks: i32,
    pub capacity: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub chosen: Option<AgentId>,
    pub verdicts: Vec<Verdict>,
}

impl Decision {
    pub fn eligible(&self) -> usize {
        self.verdicts
            .iter()
            .filter(|v| matches!(v.exclusion, None | Some(Exclusion::MoreActiveTasks | Exclusion::LessIdleTime)))
            .count()
    }
}

fn ineligibility(candidate: &Candidate) -> Option<Exclusion> {
    if !candidate.day_open {
        Some(Exclusion::DayNotStarted)
    } else if candidate.on_break {
        Some(Exclusion::OnBreak)
    } else if candidate.exit_notified {
        Some(Exclusion::ExitNotified)
    } else if candidate.active_tasks >= candidate.capacity {
        Some(Exclusion::AtCapacity)
    } else {
        None
    }
}

/// Decides who gets the task among `candidates` (the agents linked to its department).
pub fn choose(candidates: &[Candidate]) -> Decision {
    let best = candidates
        .iter()
        .filter(|c| ineligibility(c).is_none())
        .min_by(|a, b| {
            a.active_tasks.cmp(&b.active_tasks).then(a.idle_since.cmp(&b.idle_since)).then(a.agent_id.cmp(&b.agent_id))
        })
        .cloned();
    let verdicts = candidates
        .iter()
        .map(|candidate| {
            let exclusion = match (&best, ineligibility(candidate)) {
                (_, Some(reason)) => Some(reason),
                (Some(best), None) if best.agent_id == candidate.agent_id => None,
                (Some(best), None) if candidate.active_tasks > best.active_tasks => Some(Exclusion::MoreActiveTasks),
                (Some(_), None) => Some(Exclusion::LessIdleTime),
                (None, None) => None,
            };
            Verdict {
                agent_id: candidate.agent_id.clone(),
                exclusion,
                active_tasks: candidate.active_tasks,
                capacity: candidate.capacity,
            }
        })
        .collect();
    Decision { chosen: best.map(|c| c.agent_id), verdicts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn candidate(id: &str, active: i32, idle_minute: u32) -> Candidate {
        Candidate {
            agent_id: AgentId::parse(id).unwrap(),
            day_open: true,
            on_break: false,
            exit_notified: false,
            active_tasks: active,
            capacity: 3,
            idle_since: Utc.with_ymd_and_hms(2026, 11, 24, 9, idle_minute, 0).unwrap(),
        }
    }

    fn exclusion_of(decision: &Decision, id: &str) -> Option<Exclusion> {
        decision.verdicts.iter().find(|v| v.agent_id.as_str() == id).and_then(|v| v.exclusion)
    }

    #[test]
    fn fewest_active_tasks_wins_then_longest_idle() {
        let decision = choose(&[candidate("a", 2, 0), candidate("b", 1, 30), candidate("c", 1, 10)]);
        assert_eq!(decision.chosen.as_ref().map(AgentId::as_str), Some("c"));
        assert_eq!(exclusion_of(&decision, "a"), Some(Exclusion::MoreActiveTasks));
        assert_eq!(exclusion_of(&decision, "b"), Some(Exclusion::LessIdleTime));
        assert_eq!(exclusion_of(&decision, "c"), None);
        assert_eq!(decision.eligible(), 3);
    }

    #[test]
    fn unavailable_agents_are_excluded_with_their_reason() {
        let mut off = candidate("off", 0, 0);
        off.day_open = false;
        let mut pause = candidate("pause", 0, 0);
        pause.on_break = true;
        let mut leaving = candidate("leaving", 0, 0);
        leaving.exit_notified = true;
        let full = candidate("full", 3, 0);
        let decision = choose(&[off, pause, leaving, full]);
        assert_eq!(decision.chosen, None);
        assert_eq!(exclusion_of(&decision, "off"), Some(Exclusion::DayNotStarted));
        assert_eq!(exclusion_of(&decision, "pause"), Some(Exclusion::OnBreak));
        assert_eq!(exclusion_of(&decision, "leaving"), Some(Exclusion::ExitNotified));
        assert_eq!(exclusion_of(&decision, "full"), Some(Exclusion::AtCapacity));
        assert_eq!(decision.eligible(), 0);
    }

    #[test]
    fn nobody_linked_means_nobody_chosen() {
        assert_eq!(choose(&[]).chosen, None);
    }
}
