//! messaging-templates' read models (templates, contacts), written in the command's transaction,
//! and the queries over them.

pub mod rebuild;

use dw_eventstore::writes::Write;
use dw_ids::TenantId;
use dw_proto::messaging::v1 as pb;
use sqlx::{PgConnection, Row};

use crate::codec;
use crate::domain::contact::Contact;
use crate::domain::template::{Channel, Template};

pub async fn save_template(
    conn: &mut PgConnection,
    tenant: &TenantId,
    template: &Template,
    version: i64,
) -> Result<(), sqlx::Error> {
    let state = serde_json::to_value(template).unwrap_or_default();
    sqlx::query(
        "INSERT INTO templates (tenant_id, template_id, channel, name, department_id, archived, state, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (tenant_id, template_id) DO UPDATE SET department_id = EXCLUDED.department_id, \
             archived = EXCLUDED.archived, state = EXCLUDED.state, version = EXCLUDED.version",
    )
    .bind(tenant)
    .bind(template.template_id)
    .bind(template.channel.as_str())
    .bind(&template.name)
    .bind(template.content.department.as_ref().map(|d| d.as_str()))
    .bind(template.archived)
    .bind(state)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// A number's SMS consent (STOP or START), and the flag of the contact with that phone.
pub async fn save_consent(
    conn: &mut PgConnection,
    tenant: &TenantId,
    phone: &crate::domain::PhoneNumber,
    opted_out: bool,
    keyword: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sms_opt_outs (tenant_id, phone, opted_out, keyword, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id, phone) DO UPDATE SET opted_out = EXCLUDED.opted_out, keyword = EXCLUDED.keyword, \
             updated_at = EXCLUDED.updated_at",
    )
    .bind(tenant)
    .bind(phone.as_str())
    .bind(opted_out)
    .bind(keyword)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE contacts SET sms_opted_out = $3 WHERE tenant_id = $1 AND phone = $2")
        .bind(tenant)
        .bind(phone.as_str())
        .bind(opted_out)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn save_contact(
    conn: &mut PgConnection,
    tenant: &TenantId,
    contact: &Contact,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contacts (tenant_id, contact_id, name, phone, external_id, tags, sms_opted_out, version, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tenant_id, contact_id) DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone, \
             external_id = EXCLUDED.external_id, tags = EXCLUDED.tags, sms_opted_out = EXCLUDED.sms_opted_out, \
             version = EXCLUDED.version, updated_at = EXCLUDED.updated_at",
    )
    .bind(tenant)
    .bind(contact.contact_id)
    .bind(&contact.name)
    .bind(contact.phone.as_str())
    .bind(&contact.external_id)
    .bind(&contact.tags)
    .bind(contact.sms_opted_out)
    .bind(version)
    .bind(contact.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

fn template_from_row(row: &sqlx::postgres::PgRow) -> Result<Option<pb::Template>, sqlx::Error> {
    let state: serde_json::Value = row.try_get("state")?;
    let version: i64 = row.try_get("version")?;
    Ok(serde_json::from_value::<Template>(state).ok().map(|t| codec::template_to_pb(&t, version)))
}

pub async fn template(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: uuid::Uuid,
) -> Result<Option<pb::Template>, sqlx::Error> {
    let row = sqlx::query("SELECT state, version FROM templates WHERE tenant_id = $1 AND template_id = $2")
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(template_from_row).transpose()?.flatten())
}

#[derive(Debug, Clone, Default)]
pub struct TemplateFilter {
    pub channel: Option<Channel>,
    pub department: Option<String>,
    pub name: Option<String>,
    pub include_archived: bool,
    /// Keyset: after this (name, id).
    pub after: Option<(String, uuid::Uuid)>,
    pub limit: i64,
}

pub async fn templates(
    conn: &mut PgConnection,
    tenant: &TenantId,
    filter: &TemplateFilter,
) -> Result<Vec<pb::Template>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT state, version FROM templates WHERE tenant_id = $1 \
         AND ($2::text IS NULL OR channel = $2) AND ($3::text IS NULL OR department_id = $3) \
         AND ($4::text IS NULL OR name LIKE '%' || $4 || '%') AND ($5 OR NOT archived) \
         AND ($6::text IS NULL OR (name, template_id) > ($6, $7)) \
         ORDER BY name, template_id LIMIT $8",
    )
    .bind(tenant)
    .bind(filter.channel.map(Channel::as_str))
    .bind(&filter.department)
    .bind(filter.name.as_ref().map(|n| n.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")))
    .bind(filter.include_archived)
    .bind(filter.after.as_ref().map(|(n, _)| n.clone()))
    .bind(filter.after.as_ref().map(|(_, id)| *id))
    .bind(filter.limit)
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.extend(template_from_row(row)?);
    }
    Ok(out)
}

fn contact_from_row(row: &sqlx::postgres::PgRow) -> Result<pb::Contact, sqlx::Error> {
    let id: uuid::Uuid = row.try_get("contact_id")?;
    let version: i64 = row.try_get("version")?;
    let updated_at: chrono::DateTime<chrono::Utc> = row.try_get("updated_at")?;
    Ok(pb::Contact {
        contact_id: id.to_string(),
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        external_id: row.try_get::<Option<String>, _>("external_id")?.unwrap_or_default(),
        tags: row.try_get("tags")?,
        sms_opted_out: row.try_get("sms_opted_out")?,
        version: version.max(0) as u64,
        updated_at: Some(dw_proto::time::timestamp(updated_at)),
    })
}

const CONTACT_COLUMNS: &str = "contact_id, name, phone, external_id, tags, sms_opted_out, version, updated_at";

pub async fn contact(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: uuid::Uuid,
) -> Result<Option<pb::Contact>, sqlx::Error> {
    let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE tenant_id = $1 AND contact_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(contact_from_row).transpose()
}

/// A contact search: by partial name (case- and accent-insensitive) or exact phone, `limit` rows
/// after the row `after` of its order.
#[derive(Debug, Clone)]
pub struct ContactSearch<'a> {
    pub name: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub after: Option<ContactKey>,
    pub limit: i64,
}

/// A row's place in a search's order — best match first (its rank: the name's trigram
/// similarity, 0 for a search by phone), then name, then id — which a page token carries.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactKey {
    pub rank: f32,
    pub name: String,
    pub contact_id: uuid::Uuid,
}

impl ContactKey {
    /// The key of a contact the search answered with `rank`.
    pub fn of(contact: &pb::Contact, rank: f32) -> Option<Self> {
        let contact_id = uuid::Uuid::parse_str(&contact.contact_id).ok()?;
        Some(Self { rank, name: contact.name.clone(), contact_id })
    }

    /// The key as page-token parts: the rank (its shortest exact decimal form), the name (any
    /// text) and the id.
    pub fn parts(&self) -> [String; 3] {
        [self.rank.to_string(), dw_grpc_kit::paging::text_part(&self.name), self.contact_id.to_string()]
    }

    /// The key of [`parts`](Self::parts); `None` for anything else.
    pub fn parse(parts: &[&str]) -> Option<Self> {
        let [rank, name, contact_id] = parts else { return None };
        let rank: f32 = rank.parse().ok().filter(|r: &f32| r.is_finite())?;
        let name = dw_grpc_kit::paging::read_text_part(name)?;
        Some(Self { rank, name, contact_id: uuid::Uuid::parse_str(contact_id).ok()? })
    }
}

/// A page of `search`, best matches first, each contact with its rank (for the next page's key).
pub async fn search_contacts(
    conn: &mut PgConnection,
    tenant: &TenantId,
    search: &ContactSearch<'_>,
) -> Result<Vec<(pb::Contact, f32)>, sqlx::Error> {
    let sql = format!(
        "SELECT * FROM (\
             SELECT {CONTACT_COLUMNS}, \
                    CASE WHEN $2::text IS NULL THEN 0::real \
                         ELSE similarity(dw_search_text(name), dw_search_text($2)) END AS rank \
             FROM contacts WHERE tenant_id = $1 \
             AND ($2::text IS NULL OR dw_search_text(name) LIKE '%' || dw_search_text($2) || '%') \
             AND ($3::text IS NULL OR phone = $3)\
         ) c \
         WHERE $5::real IS NULL OR c.rank < $5 OR (c.rank = $5 AND (c.name, c.contact_id) > ($6::text, $7::uuid)) \
         ORDER BY c.rank DESC, c.name, c.contact_id LIMIT $4"
    );
    let escaped = search.name.map(|n| n.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let after = search.after.as_ref();
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(escaped)
        .bind(search.phone)
        .bind(search.limit)
        .bind(after.map(|key| key.rank))
        .bind(after.map(|key| key.name.as_str()))
        .bind(after.map(|key| key.contact_id))
        .fetch_all(conn)
        .await?;
    rows.iter().map(|row| Ok((contact_from_row(row)?, row.try_get::<f32, _>("rank")?))).collect()
}

pub async fn save_message(
    conn: &mut PgConnection,
    tenant: &TenantId,
    message: &crate::domain::message::OutboundMessage,
    version: i64,
) -> Result<(), sqlx::Error> {
    save_message_write(tenant, message, version).execute(conn).await?;
    Ok(())
}

/// [`save_message`] as a write of a command's statement.
pub fn save_message_write(tenant: &TenantId, message: &crate::domain::message::OutboundMessage, version: i64) -> Write {
    let state = serde_json::to_value(message).unwrap_or_default();
    Write::new(
        "messages",
        "INSERT INTO messages (tenant_id, message_id, channel, status, agent_id, recipient, provider_message_id, \
                               requested_at, state, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (tenant_id, message_id) DO UPDATE SET status = EXCLUDED.status, \
             provider_message_id = EXCLUDED.provider_message_id, state = EXCLUDED.state, version = EXCLUDED.version",
    )
    .bind(tenant.clone())
    .bind(message.message_id)
    .bind(message.channel.as_str().to_owned())
    .bind(message.status.as_str().to_owned())
    .bind(message.agent.clone())
    .bind(message.phone.as_str().to_owned())
    .bind(message.provider_message_id.clone())
    .bind(message.requested_at)
    .bind(state)
    .bind(version)
}

pub async fn message(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: uuid::Uuid,
) -> Result<Option<pb::Message>, sqlx::Error> {
    let row = sqlx::query("SELECT state FROM messages WHERE tenant_id = $1 AND message_id = $2")
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let state: serde_json::Value = row.try_get("state")?;
    Ok(serde_json::from_value::<crate::domain::message::OutboundMessage>(state).ok().map(|m| codec::message_to_pb(&m)))
}

pub use dw_bus::permissions::has_permission;
