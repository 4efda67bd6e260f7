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

/// A decision's verdicts as stored (`assignment_decisions.verdicts`, JSON as text): one array
/// per field instead of one object per candidate, the exclusion as a small code (0: none, the
/// chosen agent). A department's decision names every agent linked to it, a hundred or more, and
/// is written with the assignment: stored as JSONB objects it was about 9 KB for Postgres to
/// parse and compress per decision, now about a quarter of that, and not parsed (migration
/// 0007). Decisions stored before, as JSONB objects in `candidates`, still read.
#[derive(Serialize)]
struct VerdictColumns<'v> {
    agents: Vec<&'v AgentId>,
    exclusions: Vec<u8>,
    active: Vec<i32>,
    capacity: Vec<i32>,
}

#[derive(Deserialize)]
struct StoredColumns {
    agents: Vec<AgentId>,
    exclusions: Vec<u8>,
    active: Vec<i32>,
    capacity: Vec<i32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Columns(StoredColumns),
    Rows(Vec<Verdict>),
}

impl Exclusion {
    /// Every exclusion (for the tests).
    #[cfg(test)]
    const ALL: [Self; 6] = [
        Self::DayNotStarted,
        Self::OnBreak,
        Self::ExitNotified,
        Self::AtCapacity,
        Self::MoreActiveTasks,
        Self::LessIdleTime,
    ];

    /// The stored code of a verdict's exclusion (0: none, the chosen agent). Stored data: a code
    /// never changes meaning; a new exclusion takes the next number.
    fn code(exclusion: Option<Self>) -> u8 {
        match exclusion {
            None => 0,
            Some(Self::DayNotStarted) => 1,
            Some(Self::OnBreak) => 2,
            Some(Self::ExitNotified) => 3,
            Some(Self::AtCapacity) => 4,
            Some(Self::MoreActiveTasks) => 5,
            Some(Self::LessIdleTime) => 6,
        }
    }

    /// `None`: an unknown code; `Some(None)`: the chosen agent.
    fn from_code(code: u8) -> Option<Option<Self>> {
        Some(match code {
            0 => None,
            1 => Some(Self::DayNotStarted),
            2 => Some(Self::OnBreak),
            3 => Some(Self::ExitNotified),
            4 => Some(Self::AtCapacity),
            5 => Some(Self::MoreActiveTasks),
            6 => Some(Self::LessIdleTime),
            _ => return None,
        })
    }
}

/// `verdicts` as stored ([`VerdictColumns`]), JSON text.
pub fn encode_verdicts(verdicts: &[Verdict]) -> String {
    let columns = VerdictColumns {
        agents: verdicts.iter().map(|v| &v.agent_id).collect(),
        exclusions: verdicts.iter().map(|v| Exclusion::code(v.exclusion)).collect(),
        active: verdicts.iter().map(|v| v.active_tasks).collect(),
        capacity: verdicts.iter().map(|v| v.capacity).collect(),
    };
    serde_json::to_string(&columns).unwrap_or_else(|_| "[]".to_owned())
}

/// A decision's verdicts from its row: `verdicts` (text) when set, else `candidates` (JSONB,
/// decisions stored before); none when unreadable (a candidate with an unknown exclusion code is
/// left out).
pub fn decode_verdicts(verdicts: Option<&str>, candidates: serde_json::Value) -> Vec<Verdict> {
    let stored = match verdicts {
        Some(text) => serde_json::from_str(text),
        None => serde_json::from_value(candidates),
    };
    match stored {
        Ok(Stored::Rows(verdicts)) => verdicts,
        Ok(Stored::Columns(columns)) => columns
            .agents
            .into_iter()
            .zip(columns.exclusions)
            .zip(columns.active.into_iter().zip(columns.capacity))
            .filter_map(|((agent_id, code), (active_tasks, capacity))| {
                Exclusion::from_code(code).map(|exclusion| Verdict { agent_id, exclusion, active_tasks, capacity })
            })
            .collect(),
        Err(_) => Vec::new(),
    }
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
    fn verdicts_stored_as_columns_read_back_and_rows_written_before_still_read() {
        let mut off = candidate("d", 0, 5);
        off.on_break = true;
        let decision = choose(&[candidate("a", 2, 0), candidate("b", 1, 30), candidate("c", 1, 10), off]);
        let stored = encode_verdicts(&decision.verdicts);
        assert!(stored.starts_with("{\"agents\":[\"a\",\"b\",\"c\",\"d\"]"), "{stored}");
        assert_eq!(decode_verdicts(Some(&stored), serde_json::json!([])), decision.verdicts);
        // Every exclusion has a code of its own, and back.
        for exclusion in Exclusion::ALL {
            assert_eq!(Exclusion::from_code(Exclusion::code(Some(exclusion))), Some(Some(exclusion)));
        }
        assert_eq!(Exclusion::from_code(Exclusion::code(None)), Some(None));
        assert_eq!(Exclusion::from_code(7), None);
        // The form written before, in `candidates`: one object per candidate.
        let rows = serde_json::to_value(&decision.verdicts).unwrap();
        assert!(rows.is_array());
        assert_eq!(decode_verdicts(None, rows), decision.verdicts);
        // Neither: nothing, as before.
        assert_eq!(decode_verdicts(Some("{\"agents\": 1}"), serde_json::json!([])), Vec::new());
        assert_eq!(decode_verdicts(None, serde_json::json!({ "agents": 1 })), Vec::new());
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
