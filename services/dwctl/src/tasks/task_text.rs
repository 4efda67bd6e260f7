//! How tasks print: one task, a table of tasks (with the next page), a watched update.

use chrono::{DateTime, Utc};
use dw_proto::distribution::v1::task_update::Kind;
use dw_proto::distribution::v1::{Channel, SearchProtocolsResponse, Task, TaskStatus, TaskUpdate};

use crate::output::{self as out, or_dash};
use crate::paging;

/// `whatsapp`, `sms`, `voice`, `email`, `chat`.
pub fn channel(value: i32) -> String {
    out::enum_name_or_dash(value, "CHANNEL_", Channel::as_str_name)
}

/// `queued`, `assigned`, `completed`, `cancelled`.
pub fn status(value: i32) -> String {
    out::enum_name_or_dash(value, "TASK_STATUS_", TaskStatus::as_str_name)
}

/// `current`, `assigned`, `requeued`, `completed`, `cancelled`, `transferred`, `message`.
pub fn update_kind(value: i32) -> String {
    if value == Kind::Unspecified as i32 {
        return "update".to_owned();
    }
    out::enum_name(value, "KIND_", Kind::as_str_name)
}

pub fn task_text(task: &Task, now: DateTime<Utc>) -> String {
    let contact = task.contact.clone().unwrap_or_default();
    let mut rows = vec![
        ("task", task.task_id.clone()),
        ("protocol", task.protocol.clone()),
        ("status", status(task.status)),
        ("department", or_dash(&task.department_id)),
        ("agent", or_dash(&task.agent_id)),
        ("channel", channel(task.channel)),
        ("client", or_dash(&contact.name)),
        ("phone", or_dash(&contact.phone)),
    ];
    if !contact.contact_id.is_empty() {
        rows.push(("contact id", contact.contact_id));
    }
    rows.push(("priority", task.priority.to_string()));
    rows.push(("subject", or_dash(&task.subject)));
    rows.push(("created", out::timestamp_ago(task.created_at.as_ref(), now)));
    if task.assigned_at.is_some() {
        rows.push(("assigned", out::timestamp_ago(task.assigned_at.as_ref(), now)));
    }
    if task.closed_at.is_some() {
        rows.push(("closed", out::timestamp_ago(task.closed_at.as_ref(), now)));
    }
    if task.message_count > 0 {
        rows.push((
            "messages",
            format!("{} (last {})", task.message_count, out::timestamp_ago(task.last_message_at.as_ref(), now)),
        ));
    }
    rows.push(("version", task.version.to_string()));
    out::fields(&rows)
}

const TASK_HEADER: [&str; 11] =
    ["PROTOCOL", "STATUS", "DEPARTMENT", "AGENT", "CHANNEL", "PRIO", "CLIENT", "PHONE", "MSGS", "CREATED", "TASK"];

fn task_row(task: &Task, now: DateTime<Utc>) -> Vec<String> {
    let contact = task.contact.clone().unwrap_or_default();
    let created = match task.created_at.as_ref().and_then(out::to_datetime) {
        Some(at) if now >= at => format!("{} ago", out::human_seconds((now - at).num_seconds())),
        _ => out::timestamp(task.created_at.as_ref()),
    };
    vec![
        task.protocol.clone(),
        status(task.status),
        or_dash(&task.department_id),
        or_dash(&task.agent_id),
        channel(task.channel),
        task.priority.to_string(),
        or_dash(&contact.name),
        or_dash(&contact.phone),
        task.message_count.to_string(),
        created,
        task.task_id.clone(),
    ]
}

/// One row per task: protocol, status, department, agent, channel, priority, client, age, id.
pub fn tasks_table(tasks: &[Task], now: DateTime<Utc>) -> String {
    out::table_of(&TASK_HEADER, tasks, |task| task_row(task, now))
}

pub fn search_text(result: &SearchProtocolsResponse, now: DateTime<Utc>) -> String {
    tasks_table(&result.tasks, now) + &paging::next_page_line(&result.next_page_token)
}

/// One line per watched update.
pub fn update_line(update: &TaskUpdate, now: DateTime<Utc>) -> String {
    let task = update.task.clone().unwrap_or_default();
    let contact = task.contact.clone().unwrap_or_default();
    let at = update.at.as_ref().and_then(out::to_datetime).unwrap_or(now);
    let mut line = format!(
        "{}  {:<11} {}  {:<9} {}  {}  prio {}  client {} {}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        update_kind(update.kind),
        or_dash(&task.protocol),
        status(task.status),
        or_dash(&task.department_id),
        channel(task.channel),
        task.priority,
        or_dash(&contact.name),
        contact.phone,
    );
    if !task.agent_id.is_empty() {
        line.push_str(&format!("  agent {}", task.agent_id));
    }
    if task.message_count > 0 {
        line.push_str(&format!("  messages {}", task.message_count));
    }
    line.push_str(&format!("  task {}", task.task_id));
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use dw_proto::distribution::v1::Exclusion;

    use crate::output::{Printer, names};
    use crate::tasks::queue_text::exclusion;
    use crate::tasks::tests::task;
    use crate::testing::{T0, ts};

    #[test]
    fn enums_render_as_short_names() {
        assert_eq!(channel(Channel::Whatsapp as i32), "whatsapp");
        assert_eq!(channel(Channel::Email as i32), "email");
        assert_eq!(channel(0), "-");
        assert_eq!(status(TaskStatus::Cancelled as i32), "cancelled");
        assert_eq!(status(42), "unknown(42)");
        assert_eq!(update_kind(Kind::Requeued as i32), "requeued");
        assert_eq!(update_kind(Kind::Current as i32), "current");
        assert_eq!(exclusion(Exclusion::AtCapacity as i32), "at capacity");
        assert_eq!(exclusion(Exclusion::DayNotStarted as i32), "service day not started");
    }

    #[test]
    fn task_text_shows_the_protocol_client_and_times() {
        let now = DateTime::from_timestamp(T0 + 600, 0).unwrap();
        let text = task_text(&task(), now);
        assert!(text.contains("protocol    20240501000007\n"), "{text}");
        assert!(text.contains("status      assigned\n"), "{text}");
        assert!(text.contains("client      Maria Souza\n"), "{text}");
        assert!(text.contains("contact id  crm-42\n"), "{text}");
        assert!(text.contains("assigned    2024-05-01T08:00:02Z (9m 58s ago)\n"), "{text}");
        assert!(text.contains("messages    1 (last 2024-05-01T08:01:00Z (9m 00s ago))\n"), "{text}");
        assert!(!text.contains("closed"), "{text}");
    }

    #[test]
    fn task_tables_have_one_row_per_task_and_a_page_hint() {
        let now = DateTime::from_timestamp(T0 + 90, 0).unwrap();
        let result = SearchProtocolsResponse { tasks: vec![task()], next_page_token: "abc".into() };
        let text = search_text(&result, now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("PROTOCOL        STATUS    DEPARTMENT  AGENT  CHANNEL   PRIO"), "{text}");
        assert!(lines[1].starts_with("20240501000007  assigned  support     ana    whatsapp  5"), "{text}");
        assert!(lines[1].contains("1m 30s ago") && lines[1].ends_with("0196-task"), "{text}");
        assert_eq!(lines[2], "next page: --page-token abc  (or --all for every page)");
        assert_eq!(tasks_table(&[], now), "(none)\n");
    }

    #[test]
    fn watch_lines_name_the_kind_the_task_and_its_agent() {
        let update = TaskUpdate { kind: Kind::Assigned as i32, task: Some(task()), at: ts(T0 + 2), heartbeat: false };
        let line = update_line(&update, Utc::now());
        assert!(line.starts_with("2024-05-01T08:00:02Z  assigned    20240501000007  assigned  support"), "{line}");
        assert!(line.contains("client Maria Souza +5511912345678  agent ana  messages 1  task 0196-task"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn every_task_message_renders_as_proto3_json() {
        let printer = Printer::new(true).unwrap();
        let value = printer.to_json(names::TASK, &task()).unwrap();
        assert_eq!(value["protocol"], "20240501000007");
        assert_eq!(value["status"], "TASK_STATUS_ASSIGNED");
        assert_eq!(value["channel"], "CHANNEL_WHATSAPP");
        assert_eq!(value["contact"]["phone"], "+5511912345678");
        assert_eq!(value["version"], "2");
        let update = TaskUpdate { kind: Kind::Requeued as i32, task: Some(task()), at: ts(T0), heartbeat: false };
        let value = printer.to_json(names::TASK_UPDATE, &update).unwrap();
        assert_eq!(value["kind"], "KIND_REQUEUED");
        assert_eq!(value["task"]["agentId"], "ana");
    }
}
