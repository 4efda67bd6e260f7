//! Personal data in an immutable log, erasable on request (crypto-shredding).
//!
//! The personal fields of an event (a client's name and phone, the text a client wrote) are
//! stored sealed with a key of their data subject (one per tenant and subject, e.g.
//! `phone:+5511987654321`) kept in `personal_keys`. Erasing the subject deletes its key: every
//! event sealed with it then reads as erased (an empty field) in replays, rebuilds and
//! `ReadEvents` alike, while the rest of the event (ids, timings, counts) stays.
//!
//! A sealed field is `pd1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`, AES-256-GCM with a
//! fresh 96-bit nonce; its associated data names the tenant and the key, so a sealed value copied
//! into another tenant's event does not open. A field without the prefix is read as it is (events
//! written before their fields were sealed).
//!
//! The bus carries events in the clear (consumers in other services need the fields): the append
//! stores the sealed payload and gives the relay the clear one ([`crate::NewEvent::published`]),
//! which leaves the database with its outbox row. What reached the bus ages out with the stream's
//! `max_age`; consumers that keep a copy scrub it when they see the owner's erasure event.

use std::collections::HashMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use dw_ids::TenantId;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::RecordedEvent;

/// What every sealed field starts with.
pub const SEALED_PREFIX: &str = "pd1:";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;
const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The key of one data subject: what seals the subject's fields in new events.
#[derive(Clone)]
pub struct SubjectKey {
    tenant: TenantId,
    id: Uuid,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKey").field("tenant", &self.tenant).field("id", &self.id).finish_non_exhaustive()
    }
}

impl SubjectKey {
    fn new(tenant: TenantId, id: Uuid, key: &[u8]) -> Option<Self> {
        let key: &[u8; KEY_BYTES] = key.try_into().ok()?;
        Some(Self { tenant, id, cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)) })
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// `value` sealed with this key; an empty value stays empty (it holds nothing to protect).
    pub fn seal(&self, value: &str) -> String {
        if value.is_empty() {
            return String::new();
        }
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let aad = associated_data(&self.tenant, self.id);
        // AES-GCM refuses only plaintexts over 64 GiB: an event field never is one.
        let Ok(ciphertext) =
            self.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: value.as_bytes(), aad: &aad })
        else {
            return String::new();
        };
        let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}:{}", self.id.simple(), ENGINE.encode(sealed))
    }
}

/// `dw.personal.v1 ‖ 0 ‖ tenant ‖ 0 ‖ key id`.
fn associated_data(tenant: &TenantId, key_id: Uuid) -> Vec<u8> {
    format!("dw.personal.v1\0{tenant}\0{}", key_id.simple()).into_bytes()
}

/// Whether `value` is a sealed field.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

/// The key a sealed field was sealed with (`None` for a field in the clear).
pub fn key_id(value: &str) -> Option<Uuid> {
    let rest = value.strip_prefix(SEALED_PREFIX)?;
    let (id, _) = rest.split_once(':')?;
    Uuid::try_parse(id).ok()
}

/// The keys that still exist among those some events were sealed with: what opens them.
#[derive(Clone, Default)]
pub struct Keys {
    by_id: HashMap<Uuid, SubjectKey>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("count", &self.by_id.len()).finish()
    }
}

impl Keys {
    /// No key: every sealed field reads as erased (what the write side replays with; it never
    /// needs the clear fields).
    pub fn none() -> Self {
        Self::default()
    }

    /// Keys holding `key`.
    pub fn of(key: &SubjectKey) -> Self {
        Self { by_id: HashMap::from([(key.id, key.clone())]) }
    }

    /// `value` of an event of `tenant` in the clear: opened when sealed with a key that still
    /// exists, empty when its key was erased (or the value does not open), as it is when it was
    /// never sealed.
    pub fn open(&self, tenant: &TenantId, value: &str) -> String {
        if !is_sealed(value) {
            return value.to_owned();
        }
        self.try_open(tenant, value).unwrap_or_default()
    }

    fn try_open(&self, tenant: &TenantId, value: &str) -> Option<String> {
        let id = key_id(value)?;
        let key = self.by_id.get(&id)?;
        if &key.tenant != tenant {
            return None;
        }
        let (_, encoded) = value.strip_prefix(SEALED_PREFIX)?.split_once(':')?;
        let sealed = ENGINE.decode(encoded).ok()?;
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let aad = associated_data(tenant, id);
        let clear = key.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad }).ok()?;
        String::from_utf8(clear).ok()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The key of `subject` in `tenant`, created on first use, in one round trip. Two concurrent
/// first uses agree on one key (the second waits for the first's insert and takes its row).
///
/// The key row stays locked until the caller's transaction ends: an erasure of the subject
/// ([`erase_subject`]) waits for every transaction sealing with the key to commit, then scrubs
/// what they wrote; one that starts after the erasure creates a new key. (Transactions sealing
/// for the same subject take turns on the row: one client's messages, never the tenant's.)
pub async fn subject_key(conn: &mut PgConnection, tenant: &TenantId, subject: &str) -> Result<SubjectKey, sqlx::Error> {
    let fresh: [u8; KEY_BYTES] = rand::random();
    // `DO UPDATE` (a no-op change) returns and locks the existing row where `DO NOTHING` would
    // return nothing and lock nothing.
    let row = sqlx::query(
        "INSERT INTO personal_keys (tenant_id, subject, key_id, key) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, subject) DO UPDATE SET key_id = personal_keys.key_id RETURNING key_id, key",
    )
    .bind(tenant)
    .bind(subject)
    .bind(Uuid::now_v7())
    .bind(fresh.as_slice())
    .fetch_one(&mut *conn)
    .await?;
    let id: Uuid = row.try_get("key_id")?;
    let key: Vec<u8> = row.try_get("key")?;
    SubjectKey::new(tenant.clone(), id, &key)
        .ok_or_else(|| sqlx::Error::Decode(format!("personal key {id} is not {KEY_BYTES} bytes").into()))
}

/// The keys among `ids` that still exist (one query).
pub async fn keys(conn: &mut PgConnection, ids: impl IntoIterator<Item = Uuid>) -> Result<Keys, sqlx::Error> {
    let mut ids: Vec<Uuid> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Keys::none());
    }
    let rows = sqlx::query("SELECT tenant_id, key_id, key FROM personal_keys WHERE key_id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut by_id = HashMap::with_capacity(rows.len());
    for row in rows {
        let tenant: TenantId = row.try_get("tenant_id")?;
        let id: Uuid = row.try_get("key_id")?;
        let key: Vec<u8> = row.try_get("key")?;
        if let Some(key) = SubjectKey::new(tenant, id, &key) {
            by_id.insert(id, key);
        }
    }
    Ok(Keys { by_id })
}

/// Deletes the key of `subject`: what it sealed no longer opens, anywhere. Returns the key's id,
/// `None` when the subject had none (never seen, or already erased).
pub async fn erase_subject(
    conn: &mut PgConnection,
    tenant: &TenantId,
    subject: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    let row = sqlx::query("DELETE FROM personal_keys WHERE tenant_id = $1 AND subject = $2 RETURNING key_id")
        .bind(tenant)
        .bind(subject)
        .fetch_optional(conn)
        .await?;
    row.map(|row| row.try_get("key_id")).transpose()
}

/// Which fields of a service's stored events are personal: one place per service that knows its
/// contract, used to open events for readers outside the write side (`ReadEvents`, rebuilds).
pub trait PersonalFields: Send + Sync + 'static {
    /// Calls `field` on each personal field of an event (its type and protobuf payload) and
    /// returns the payload re-encoded with what `field` left there; `None` when the event has no
    /// personal field or does not decode (it is then passed on as stored).
    fn map_fields(&self, event_type: &str, payload: &[u8], field: &mut dyn FnMut(&mut String)) -> Option<Vec<u8>>;
}

/// Empties the personal fields of one stored event that are still in the clear (written before
/// its fields were sealed: the one change to a stored event, which the law requires); sealed ones
/// are left, without their key they read as erased. Returns whether the event changed.
pub async fn blank_clear_fields(
    conn: &mut PgConnection,
    fields: &dyn PersonalFields,
    global_position: i64,
    event_type: &str,
    payload: &[u8],
) -> Result<bool, sqlx::Error> {
    let mut blanked = false;
    let scrubbed = fields.map_fields(event_type, payload, &mut |value| {
        if !value.is_empty() && !is_sealed(value) {
            value.clear();
            blanked = true;
        }
    });
    let (true, Some(scrubbed)) = (blanked, scrubbed) else {
        return Ok(false);
    };
    sqlx::query("UPDATE events SET payload = $2 WHERE global_position = $1")
        .bind(global_position)
        .bind(scrubbed)
        .execute(conn)
        .await?;
    Ok(true)
}

/// Opens the personal fields of `events` in place (one key query for all of them): the clear
/// value where the key still exists, empty where it was erased.
pub async fn open_events(
    conn: &mut PgConnection,
    fields: &dyn PersonalFields,
    events: &mut [RecordedEvent],
) -> Result<(), sqlx::Error> {
    let mut ids = Vec::new();
    for event in events.iter() {
        fields.map_fields(&event.event_type, &event.payload, &mut |value| ids.extend(key_id(value)));
    }
    if ids.is_empty() {
        return Ok(());
    }
    let keys = keys(conn, ids).await?;
    for event in events.iter_mut() {
        let tenant = event.tenant_id.clone();
        let mut sealed = false;
        let opened = fields.map_fields(&event.event_type, &event.payload, &mut |value| {
            if is_sealed(value) {
                sealed = true;
                *value = keys.open(&tenant, value);
            }
        });
        if let (true, Some(payload)) = (sealed, opened) {
            event.payload = payload;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str) -> SubjectKey {
        let bytes: [u8; KEY_BYTES] = rand::random();
        SubjectKey::new(TenantId::parse(tenant).unwrap(), Uuid::now_v7(), &bytes).unwrap()
    }

    #[test]
    fn a_sealed_field_opens_with_its_key_only() {
        let acme = TenantId::parse("acme").unwrap();
        let ana = key("acme");
        let sealed = ana.seal("Ana Souza");
        assert!(is_sealed(&sealed) && !sealed.contains("Ana"), "{sealed}");
        assert_eq!(key_id(&sealed), Some(ana.id()));
        assert_ne!(ana.seal("Ana Souza"), sealed, "a fresh nonce every time");
        assert_eq!(Keys::of(&ana).open(&acme, &sealed), "Ana Souza");
        assert_eq!(Keys::none().open(&acme, &sealed), "", "an erased key reads as erased");
        assert_eq!(Keys::of(&key("acme")).open(&acme, &sealed), "", "another key does not open it");
        assert_eq!(Keys::none().open(&acme, "Bia"), "Bia", "a field never sealed reads as it is");
        assert_eq!(ana.seal(""), "", "nothing to seal");
    }

    #[test]
    fn a_sealed_field_copied_into_another_tenant_does_not_open() {
        let ana = key("acme");
        let sealed = ana.seal("+5511987654321");
        let mut keys = Keys::of(&ana);
        assert_eq!(keys.open(&TenantId::parse("globex").unwrap(), &sealed), "");
        // Even a key row claiming the other tenant: the associated data names the sealing one.
        let id = ana.id();
        let stolen = SubjectKey { tenant: TenantId::parse("globex").unwrap(), ..ana };
        keys.by_id.insert(id, stolen);
        assert_eq!(keys.open(&TenantId::parse("globex").unwrap(), &sealed), "");
    }

    #[test]
    fn damaged_sealed_fields_read_as_erased() {
        let acme = TenantId::parse("acme").unwrap();
        let ana = key("acme");
        let keys = Keys::of(&ana);
        let sealed = ana.seal("Ana");
        let mut damaged = sealed.clone();
        damaged.pop();
        damaged.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        for value in [damaged.as_str(), "pd1:", "pd1:nonsense", &format!("pd1:{}:", ana.id().simple()), "pd1:x:y:z"] {
            assert_eq!(keys.open(&acme, value), "", "{value}");
        }
    }
}
