//! Lanes: a page's events split by the model's keys, applied in parallel transactions.

use sqlx::{Connection, PgConnection};

use super::{RebuildError, Target, apply_all, set_shadow_path};
use crate::store::RecordedEvent;

/// Applies `events` to the shadow copy, recording them as applied: split by the model's lane
/// keys, one transaction per lane in parallel (or all in the first lane).
pub(super) async fn apply_page(
    lanes: &mut [PgConnection],
    target: &Target<'_>,
    events: &[RecordedEvent],
) -> Result<(), RebuildError> {
    if events.is_empty() {
        return Ok(());
    }
    let groups = split_into_lanes(events, lanes.len(), |event| target.model.lane_key(event));
    let work = lanes
        .iter_mut()
        .zip(groups)
        .filter(|(_, group)| !group.is_empty())
        .map(|(conn, group)| apply_lane(conn, target, group));
    futures::future::try_join_all(work).await?;
    Ok(())
}

/// The events of each lane, each lane in the page's order; everything in the first lane when an
/// event has no key.
fn split_into_lanes(
    events: &[RecordedEvent],
    lanes: usize,
    key: impl Fn(&RecordedEvent) -> Option<String>,
) -> Vec<Vec<&RecordedEvent>> {
    use std::hash::{Hash, Hasher};
    let mut groups: Vec<Vec<&RecordedEvent>> = vec![Vec::new(); lanes.max(1)];
    let mut lane_of = Vec::with_capacity(events.len());
    for event in events {
        let Some(key) = key(event) else {
            groups[0] = events.iter().collect();
            return groups;
        };
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        lane_of.push((hasher.finish() % groups.len() as u64) as usize);
    }
    for (event, lane) in events.iter().zip(lane_of) {
        groups[lane].push(event);
    }
    groups
}

async fn apply_lane(
    conn: &mut PgConnection,
    target: &Target<'_>,
    events: Vec<&RecordedEvent>,
) -> Result<(), RebuildError> {
    let mut tx = conn.begin().await?;
    set_shadow_path(&mut tx, target.shadow, target.live).await?;
    apply_all(&mut tx, target.model, target.shadow, events).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use dw_ids::TenantId;
    use uuid::Uuid;

    use super::*;

    fn event(position: i64, stream: &str) -> RecordedEvent {
        RecordedEvent {
            global_position: position,
            event_id: Uuid::now_v7(),
            tenant_id: TenantId::parse("acme").expect("tenant"),
            stream_id: stream.to_owned(),
            version: position,
            event_type: "t".to_owned(),
            subject: "s".to_owned(),
            payload: Vec::new(),
            recorded_at: chrono::Utc::now(),
            metadata: crate::store::EventMetadata::default(),
        }
    }

    fn positions(groups: &[Vec<&RecordedEvent>]) -> Vec<Vec<i64>> {
        groups.iter().map(|g| g.iter().map(|e| e.global_position).collect()).collect()
    }

    #[test]
    fn lanes_keep_each_keys_events_together_and_in_order() {
        let events: Vec<RecordedEvent> =
            (1..=40).map(|i| event(i, &format!("a:{}", ["x", "y", "z", "w", "v"][i as usize % 5]))).collect();
        let groups = split_into_lanes(&events, 4, |e| Some(e.stream_id.clone()));
        assert_eq!(groups.len(), 4);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 40, "every event in exactly one lane");
        for group in &groups {
            assert!(group.windows(2).all(|w| w[0].global_position < w[1].global_position), "page order kept");
        }
        for stream in ["a:x", "a:y", "a:z", "a:w", "a:v"] {
            let holding = groups.iter().filter(|g| g.iter().any(|e| e.stream_id == stream)).count();
            assert_eq!(holding, 1, "{stream} is in one lane");
        }
        assert!(groups.iter().filter(|g| !g.is_empty()).count() > 1, "five keys spread over lanes");
    }

    #[test]
    fn an_event_without_a_key_puts_the_page_in_one_lane() {
        let events: Vec<RecordedEvent> = (1..=6).map(|i| event(i, &format!("a:{i}"))).collect();
        let groups = split_into_lanes(&events, 3, |e| (e.global_position != 4).then(|| e.stream_id.clone()));
        assert_eq!(positions(&groups), vec![vec![1, 2, 3, 4, 5, 6], vec![], vec![]]);
        let one = split_into_lanes(&events, 1, |e| Some(e.stream_id.clone()));
        assert_eq!(positions(&one), vec![vec![1, 2, 3, 4, 5, 6]]);
    }
}
