//! How the rest of task-distribution prints: queue statistics, the assignment decisions taken for
//! a task, the distribution settings and an agent's capacity.

use chrono::{DateTime, Utc};
use dw_proto::distribution::v1::{
    AgentCapacity, AssignmentDecision, CandidateVerdict, DistributionSettings, Exclusion, ExplainAssignmentResponse,
    GetQueueStatsResponse,
};

use super::task_text::task_text;
use crate::output::{self as out, or_dash};

/// Why a candidate was not chosen, in words.
pub fn exclusion(value: i32) -> String {
    match Exclusion::try_from(value) {
        Ok(Exclusion::Unspecified) => "-".to_owned(),
        Ok(Exclusion::NotInDepartment) => "not in the department".to_owned(),
        Ok(Exclusion::DayNotStarted) => "service day not started".to_owned(),
        Ok(Exclusion::OnBreak) => "on break".to_owned(),
        Ok(Exclusion::ExitNotified) => "exit notified".to_owned(),
        Ok(Exclusion::AtCapacity) => "at capacity".to_owned(),
        Ok(Exclusion::MoreActiveTasks) => "eligible, lost on load (more active tasks)".to_owned(),
        Ok(Exclusion::LessIdleTime) => "eligible, lost on idle time (idle for less time)".to_owned(),
        Err(_) => format!("unknown({value})"),
    }
}

const QUEUE_HEADER: [&str; 8] =
    ["DEPARTMENT", "WAITING", "OLDEST WAIT", "ASSIGNED", "AVAILABLE", "ON BREAK", "EXIT NOTIFIED", "AT CAPACITY"];

pub fn stats_text(stats: &GetQueueStatsResponse) -> String {
    let mut text = format!("queues at {}\n", out::timestamp(stats.at.as_ref()));
    text.push_str(&out::table_of(&QUEUE_HEADER, &stats.departments, |d| {
        vec![
            d.department_id.clone(),
            d.waiting_tasks.to_string(),
            if d.waiting_tasks > 0 { out::duration(d.oldest_wait.as_ref()) } else { "-".to_owned() },
            d.assigned_tasks.to_string(),
            d.agents_available.to_string(),
            d.agents_on_break.to_string(),
            d.agents_exit_notified.to_string(),
            d.agents_at_capacity.to_string(),
        ]
    }));
    let on_break: Vec<Vec<String>> = stats
        .departments
        .iter()
        .flat_map(|d| {
            d.tasks_waiting_on_break.iter().map(|w| {
                vec![
                    d.department_id.clone(),
                    w.protocol.clone(),
                    w.agent_id.clone(),
                    out::duration(w.waited.as_ref()),
                    w.task_id.clone(),
                ]
            })
        })
        .collect();
    if on_break.is_empty() {
        text.push_str("\nno client is waiting on an agent's break\n");
    } else {
        let table = out::table(&["DEPARTMENT", "PROTOCOL", "AGENT", "WAITED", "TASK"], &on_break);
        text.push('\n');
        text.push_str(&out::block("clients waiting on an agent's break", &table));
    }
    text
}

fn candidate_row(candidate: &CandidateVerdict, chosen: &str) -> Vec<String> {
    let verdict = if candidate.exclusion == Exclusion::Unspecified as i32 && candidate.agent_id == chosen {
        "chosen".to_owned()
    } else {
        exclusion(candidate.exclusion)
    };
    vec![candidate.agent_id.clone(), candidate.active_tasks.to_string(), candidate.capacity.to_string(), verdict]
}

pub fn decision_text(decision: &AssignmentDecision, index: usize, total: usize) -> String {
    let mut text = format!(
        "decision {}/{}  {}  at {}  trigger {}\n",
        index + 1,
        total,
        or_dash(&decision.decision_id),
        out::timestamp(decision.decided_at.as_ref()),
        or_dash(&decision.trigger),
    );
    if decision.chosen_agent_id.is_empty() {
        text.push_str("  chosen: nobody was eligible; the task stayed queued\n");
    } else {
        text.push_str(&format!("  chosen: {}\n", decision.chosen_agent_id));
    }
    // The chosen agent first, then the others in the server's order.
    let mut candidates: Vec<&CandidateVerdict> = decision.candidates.iter().collect();
    candidates.sort_by_key(|c| c.agent_id != decision.chosen_agent_id);
    let table = out::table_of(&["AGENT", "ACTIVE", "CAPACITY", "VERDICT"], candidates, |c| {
        candidate_row(c, &decision.chosen_agent_id)
    });
    text.push_str(&out::indent(&table, 2));
    text.push('\n');
    text
}

pub fn explain_text(response: &ExplainAssignmentResponse, now: DateTime<Utc>) -> String {
    let mut text = match &response.task {
        Some(task) => task_text(task, now),
        None => String::new(),
    };
    if response.decisions.is_empty() {
        text.push_str("\nno assignment decision was taken for this task\n");
    }
    let total = response.decisions.len();
    for (index, decision) in response.decisions.iter().enumerate() {
        text.push('\n');
        text.push_str(&decision_text(decision, index, total));
    }
    text
}

pub fn settings_text(settings: &DistributionSettings) -> String {
    let inbound = if settings.inbound_department_id.is_empty() {
        "(none: inbound messages naming no department are dead-lettered)".to_owned()
    } else {
        settings.inbound_department_id.clone()
    };
    out::fields(&[
        ("default capacity", settings.default_capacity.to_string()),
        ("inbound department", inbound),
        (
            "auto distribution",
            format!("{} (agent-sessions tenant setting)", out::on_off(settings.auto_distribution_enabled)),
        ),
        (
            "time zone",
            format!(
                "{} (agent-sessions tenant setting; protocols are dated in it)",
                if settings.time_zone.is_empty() { "UTC" } else { &settings.time_zone }
            ),
        ),
        ("version", settings.version.to_string()),
    ])
}

pub fn capacity_text(capacity: &AgentCapacity) -> String {
    out::fields(&[
        ("agent", capacity.agent_id.clone()),
        ("capacity", capacity.capacity.to_string()),
        ("source", if capacity.overridden { "agent override" } else { "tenant default" }.to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use dw_proto::distribution::v1::{DepartmentQueueStats, WaitingOnBreak};

    use crate::tasks::tests::task;
    use crate::testing::{T0, dur, ts};

    #[test]
    fn stats_render_a_table_and_the_clients_waiting_on_breaks() {
        let stats = GetQueueStatsResponse {
            departments: vec![
                DepartmentQueueStats {
                    department_id: "sales".into(),
                    waiting_tasks: 0,
                    agents_available: 2,
                    ..Default::default()
                },
                DepartmentQueueStats {
                    department_id: "support".into(),
                    waiting_tasks: 3,
                    oldest_wait: dur(302),
                    agents_available: 0,
                    agents_on_break: 1,
                    agents_exit_notified: 1,
                    agents_at_capacity: 2,
                    assigned_tasks: 7,
                    tasks_waiting_on_break: vec![WaitingOnBreak {
                        task_id: "t-9".into(),
                        protocol: "20240501000009".into(),
                        agent_id: "bruno".into(),
                        waited: dur(125),
                    }],
                },
            ],
            at: ts(T0),
        };
        let text = stats_text(&stats);
        assert!(text.starts_with("queues at 2024-05-01T08:00:00Z\n"), "{text}");
        assert!(
            text.contains(
                "DEPARTMENT  WAITING  OLDEST WAIT  ASSIGNED  AVAILABLE  ON BREAK  EXIT NOTIFIED  AT CAPACITY\n"
            )
        );
        assert!(
            text.contains("\nsales       0        -            0         2          0         0              0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nsupport     3        5m 02s       7         0          1         1              2\n"),
            "{text}"
        );
        assert!(text.contains("clients waiting on an agent's break:\n  DEPARTMENT  PROTOCOL"), "{text}");
        assert!(text.contains("  support     20240501000009  bruno  2m 05s  t-9\n"), "{text}");
        let empty = stats_text(&GetQueueStatsResponse::default());
        assert!(empty.contains("(none)\n") && empty.contains("no client is waiting"), "{empty}");
    }

    #[test]
    fn explain_lists_the_chosen_agent_first_and_every_exclusion() {
        let verdict = |agent: &str, exclusion: Exclusion, active: i32| CandidateVerdict {
            agent_id: agent.into(),
            exclusion: exclusion as i32,
            active_tasks: active,
            capacity: 3,
        };
        let response = ExplainAssignmentResponse {
            task: Some(task()),
            decisions: vec![
                AssignmentDecision {
                    decision_id: "d-1".into(),
                    decided_at: ts(T0),
                    chosen_agent_id: String::new(),
                    candidates: vec![verdict("ana", Exclusion::DayNotStarted, 0)],
                    trigger: "task_created".into(),
                },
                AssignmentDecision {
                    decision_id: "d-2".into(),
                    decided_at: ts(T0 + 2),
                    chosen_agent_id: "ana".into(),
                    candidates: vec![
                        verdict("bruno", Exclusion::AtCapacity, 3),
                        verdict("ana", Exclusion::Unspecified, 1),
                        verdict("carla", Exclusion::LessIdleTime, 1),
                    ],
                    trigger: "agent_available".into(),
                },
            ],
        };
        let text = explain_text(&response, DateTime::from_timestamp(T0 + 10, 0).unwrap());
        assert!(text.contains("decision 1/2  d-1  at 2024-05-01T08:00:00Z  trigger task_created\n"), "{text}");
        assert!(text.contains("  chosen: nobody was eligible; the task stayed queued\n"), "{text}");
        assert!(text.contains("  ana    0       3         service day not started\n"), "{text}");
        assert!(
            text.contains("  chosen: ana\n  AGENT  ACTIVE  CAPACITY  VERDICT\n  ana    1       3         chosen\n")
        );
        assert!(text.contains("  bruno  3       3         at capacity\n"), "{text}");
        assert!(text.contains("  carla  1       3         eligible, lost on idle time"), "{text}");
        let none = explain_text(&ExplainAssignmentResponse::default(), Utc::now());
        assert!(none.contains("no assignment decision"), "{none}");
    }

    #[test]
    fn settings_and_capacity_render() {
        let settings = DistributionSettings {
            default_capacity: 3,
            auto_distribution_enabled: true,
            inbound_department_id: "support".into(),
            version: 2,
            time_zone: "America/Sao_Paulo".into(),
        };
        assert_eq!(
            settings_text(&settings),
            "default capacity    3\ninbound department  support\nauto distribution   on (agent-sessions tenant \
             setting)\ntime zone           America/Sao_Paulo (agent-sessions tenant setting; protocols are dated in \
             it)\nversion             2\n"
        );
        let text = settings_text(&DistributionSettings::default());
        assert!(text.contains("inbound department  (none: ") && text.contains("off"), "{text}");
        let text = capacity_text(&AgentCapacity { agent_id: "ana".into(), capacity: 5, overridden: true });
        assert!(text.contains("capacity  5\n") && text.contains("source    agent override\n"), "{text}");
    }
}
