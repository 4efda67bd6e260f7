//! CRM contacts: one per phone number in a tenant.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::PhoneNumber;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub contact_id: uuid::Uuid,
    pub name: String,
    pub phone: PhoneNumber,
    pub external_id: Option<String>,
    pub tags: Vec<String>,
    pub sms_opted_out: bool,
    pub updated_at: DateTime<Utc>,
}

/// What an upsert sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactInput {
    pub name: String,
    pub phone: PhoneNumber,
    pub external_id: Option<String>,
    pub tags: Vec<String>,
}

/// The contact after an upsert, or `None` when nothing changes.
pub fn upsert(
    existing: Option<&Contact>,
    input: ContactInput,
    new_id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Option<Contact> {
    let mut tags = input.tags;
    tags.sort();
    tags.dedup();
    let contact = Contact {
        contact_id: existing.map_or(new_id, |c| c.contact_id),
        name: input.name,
        phone: input.phone,
        external_id: input.external_id,
        tags,
        sms_opted_out: existing.is_some_and(|c| c.sms_opted_out),
        updated_at: now,
    };
    let unchanged = existing.is_some_and(|c| Contact { updated_at: c.updated_at, ..contact.clone() } == *c);
    (!unchanged).then_some(contact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_keep_the_id_and_skip_no_op_changes() {
        let now = Utc::now();
        let input = ContactInput {
            name: "José".into(),
            phone: PhoneNumber::parse("+5511999999999").unwrap(),
            external_id: None,
            tags: vec!["vip".into(), "vip".into()],
        };
        let created = upsert(None, input.clone(), uuid::Uuid::from_u128(1), now).unwrap();
        assert_eq!(created.tags, vec!["vip"]);
        assert_eq!(upsert(Some(&created), input.clone(), uuid::Uuid::from_u128(2), now), None);
        let renamed = ContactInput { name: "José Silva".into(), ..input };
        let updated = upsert(Some(&created), renamed, uuid::Uuid::from_u128(2), now).unwrap();
        assert_eq!(updated.contact_id, created.contact_id);
    }
}
