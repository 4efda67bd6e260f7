//! Each tenant's provider accounts ([`ProviderAccounts`]): `SetProviderConfig` stores them in
//! `provider_configs` with their secrets sealed under the deployment key, and appends a
//! `ProviderConfigChanged` event without any secret to `providers:<tenant>`, in one transaction;
//! the webhooks read them decrypted, cached for [`CACHE_TTL`] per replica. The same row keeps the
//! tenant's policy for its sends' own webhooks (`send_webhooks`, no secret, so the event carries
//! it), which a send reads in its own transaction, uncached (see [`crate::domain::send_webhook`]).
//!
//! The cache bounds how long another replica keeps verifying with a replaced secret; the replica
//! that served the change forgets the tenant at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dw_eventstore::command::{self, Attempt};
use dw_eventstore::store;
use dw_ids::TenantId;
use dw_proto::messaging::v1 as pb;
use dw_proto::time::timestamp;
use sqlx::{PgConnection, PgPool, Row};

use super::{AppError, CommandContext};
use crate::codec;
use crate::domain::DomainError;
use crate::domain::provider_config::{
    AccountSid, Change, PhoneNumberId, ProviderChange, ProviderSecret, SmsAccount, TenantProviders, WhatsappAccount,
};
use crate::provider_secrets::{ProviderSecretsKey, SecretError, SecretField};

/// How long a replica verifies webhooks with a tenant's accounts as it last read them.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Tenants cached at most (the webhook paths name any tenant, configured or not).
const MAX_CACHED: usize = 10_000;

/// Why a tenant's accounts could not be read: never the provider's fault.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("stored provider account unreadable: {0}")]
    Corrupt(&'static str),
}

/// Each tenant's accounts as last read, and when.
type Cache = HashMap<TenantId, (Instant, Arc<TenantProviders>)>;

/// The tenants' provider accounts: set, shown without secrets, and read (decrypted) by webhooks.
#[derive(Clone)]
pub struct ProviderAccounts {
    pool: PgPool,
    key: ProviderSecretsKey,
    cache: Arc<Mutex<Cache>>,
    ttl: Duration,
}

impl ProviderAccounts {
    pub fn new(pool: PgPool, key: ProviderSecretsKey) -> Self {
        Self { pool, key, cache: Arc::default(), ttl: CACHE_TTL }
    }

    /// The same, keeping what it reads for `ttl` instead of [`CACHE_TTL`] (tests).
    pub fn with_cache_ttl(self, ttl: Duration) -> Self {
        Self { ttl, ..self }
    }

    /// The idempotency hash of a request holding secrets (see [`ProviderSecretsKey::request_hash`]).
    pub fn request_hash(&self, body: &impl prost::Message) -> Vec<u8> {
        self.key.request_hash(body)
    }

    /// Applies `change` idempotently (by the context's request id); answers the accounts after it.
    pub async fn set(&self, ctx: &CommandContext, change: &ProviderChange) -> Result<pb::ProviderConfig, AppError> {
        let config = command::execute(&self.pool, ctx, &SetProviderConfig { ctx, change, key: &self.key }).await?;
        self.forget(&ctx.tenant);
        Ok(config)
    }

    /// The tenant's accounts without their secrets (version 0 when never set).
    pub async fn view(&self, tenant: &TenantId) -> Result<pb::ProviderConfig, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        Ok(view(load(&mut conn, tenant).await?.as_ref()))
    }

    /// The tenant's accounts with their secrets, for verifying its webhooks; cached.
    pub async fn accounts(&self, tenant: &TenantId) -> Result<Arc<TenantProviders>, AccountsError> {
        if let Some(cached) = self.cached(tenant) {
            return Ok(cached);
        }
        let mut conn = self.pool.acquire().await?;
        let stored = load(&mut conn, tenant).await?;
        drop(conn);
        let accounts = Arc::new(match stored {
            Some(stored) => stored.open(&self.key, tenant)?,
            None => TenantProviders::default(),
        });
        self.remember(tenant, accounts.clone());
        Ok(accounts)
    }

    fn cached(&self, tenant: &TenantId) -> Option<Arc<TenantProviders>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(tenant).filter(|(read_at, _)| read_at.elapsed() < self.ttl).map(|(_, accounts)| accounts.clone())
    }

    fn remember(&self, tenant: &TenantId, accounts: Arc<TenantProviders>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (read_at, _)| read_at.elapsed() < self.ttl);
        }
        // Still full of fresh entries: this one is read again next time.
        if cache.len() < MAX_CACHED || cache.contains_key(tenant) {
            cache.insert(tenant.clone(), (Instant::now(), accounts));
        }
    }

    fn forget(&self, tenant: &TenantId) {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).remove(tenant);
    }
}

/// A `provider_configs` row: the account ids and the sealed secrets.
#[derive(Debug, Clone, Default)]
struct Stored {
    whatsapp_phone_number_id: Option<String>,
    whatsapp_app_secret: Option<Vec<u8>>,
    whatsapp_verify_token: Option<Vec<u8>>,
    sms_account_sid: Option<String>,
    sms_auth_token: Option<Vec<u8>>,
    version: i64,
    updated_at: Option<DateTime<Utc>>,
    updated_by: String,
    /// The hosts a send's own webhook may name.
    send_webhook_hosts: Vec<String>,
}

impl Stored {
    fn open(&self, key: &ProviderSecretsKey, tenant: &TenantId) -> Result<TenantProviders, AccountsError> {
        let secret = |field: SecretField, sealed: &[u8]| -> Result<ProviderSecret, AccountsError> {
            Ok(ProviderSecret::from(key.open(tenant, field, sealed)?))
        };
        let whatsapp = match (&self.whatsapp_phone_number_id, &self.whatsapp_app_secret, &self.whatsapp_verify_token) {
            (Some(id), Some(app_secret), Some(verify_token)) => Some(WhatsappAccount {
                phone_number_id: PhoneNumberId::parse(id).map_err(|_| AccountsError::Corrupt("phone number id"))?,
                app_secret: secret(SecretField::WhatsappAppSecret, app_secret)?,
                verify_token: secret(SecretField::WhatsappVerifyToken, verify_token)?,
            }),
            _ => None,
        };
        let sms = match (&self.sms_account_sid, &self.sms_auth_token) {
            (Some(sid), Some(auth_token)) => Some(SmsAccount {
                account_sid: AccountSid::parse(sid).map_err(|_| AccountsError::Corrupt("account sid"))?,
                auth_token: secret(SecretField::SmsAuthToken, auth_token)?,
            }),
            _ => None,
        };
        Ok(TenantProviders { whatsapp, sms })
    }
}

async fn load(conn: &mut PgConnection, tenant: &TenantId) -> Result<Option<Stored>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT whatsapp_phone_number_id, whatsapp_app_secret, whatsapp_verify_token, sms_account_sid, \
                sms_auth_token, version, updated_at, updated_by, send_webhook_hosts \
         FROM provider_configs WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(Stored {
        whatsapp_phone_number_id: row.try_get("whatsapp_phone_number_id")?,
        whatsapp_app_secret: row.try_get("whatsapp_app_secret")?,
        whatsapp_verify_token: row.try_get("whatsapp_verify_token")?,
        sms_account_sid: row.try_get("sms_account_sid")?,
        sms_auth_token: row.try_get("sms_auth_token")?,
        version: row.try_get("version")?,
        updated_at: Some(row.try_get("updated_at")?),
        updated_by: row.try_get("updated_by")?,
        send_webhook_hosts: row.try_get("send_webhook_hosts")?,
    }))
}

async fn save(conn: &mut PgConnection, tenant: &TenantId, stored: &Stored) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO provider_configs (tenant_id, whatsapp_phone_number_id, whatsapp_app_secret, \
             whatsapp_verify_token, sms_account_sid, sms_auth_token, version, updated_at, updated_by, \
             send_webhook_hosts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (tenant_id) DO UPDATE SET \
             whatsapp_phone_number_id = EXCLUDED.whatsapp_phone_number_id, \
             whatsapp_app_secret = EXCLUDED.whatsapp_app_secret, \
             whatsapp_verify_token = EXCLUDED.whatsapp_verify_token, \
             sms_account_sid = EXCLUDED.sms_account_sid, sms_auth_token = EXCLUDED.sms_auth_token, \
             version = EXCLUDED.version, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by, \
             send_webhook_hosts = EXCLUDED.send_webhook_hosts",
    )
    .bind(tenant)
    .bind(&stored.whatsapp_phone_number_id)
    .bind(&stored.whatsapp_app_secret)
    .bind(&stored.whatsapp_verify_token)
    .bind(&stored.sms_account_sid)
    .bind(&stored.sms_auth_token)
    .bind(stored.version)
    .bind(stored.updated_at)
    .bind(&stored.updated_by)
    .bind(&stored.send_webhook_hosts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The accounts as anyone may see them: ids and whether each secret is set.
fn view(stored: Option<&Stored>) -> pb::ProviderConfig {
    let Some(stored) = stored else {
        return pb::ProviderConfig::default();
    };
    pb::ProviderConfig {
        whatsapp: stored.whatsapp_phone_number_id.as_ref().map(|id| pb::WhatsappProviderStatus {
            phone_number_id: id.clone(),
            has_app_secret: stored.whatsapp_app_secret.is_some(),
            has_verify_token: stored.whatsapp_verify_token.is_some(),
        }),
        sms: stored.sms_account_sid.as_ref().map(|sid| pb::SmsProviderStatus {
            account_sid: sid.clone(),
            has_auth_token: stored.sms_auth_token.is_some(),
        }),
        version: stored.version,
        updated_at: stored.updated_at.map(timestamp),
        updated_by: stored.updated_by.clone(),
        send_webhooks: Some(pb::SendWebhookPolicy { allowed_hosts: stored.send_webhook_hosts.clone() }),
    }
}

struct SetProviderConfig<'c> {
    ctx: &'c CommandContext,
    change: &'c ProviderChange,
    key: &'c ProviderSecretsKey,
}

impl SetProviderConfig<'_> {
    fn seal(&self, field: SecretField, secret: &ProviderSecret) -> Result<Vec<u8>, AppError> {
        self.key.seal(&self.ctx.tenant, field, secret.secret()).map_err(AppError::corrupt)
    }
}

impl Attempt<DomainError> for SetProviderConfig<'_> {
    type Response = pb::ProviderConfig;

    async fn attempt(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<pb::ProviderConfig, AppError> {
        let tenant = &self.ctx.tenant;
        let stream_id = codec::providers_stream(tenant);
        let stream = store::load_stream(conn, &stream_id).await?;
        let mut stored = load(conn, tenant).await?.unwrap_or_default();
        match &self.change.whatsapp {
            Change::Keep => {}
            Change::Set(account) => {
                stored.whatsapp_phone_number_id = Some(account.phone_number_id.as_str().to_owned());
                stored.whatsapp_app_secret = Some(self.seal(SecretField::WhatsappAppSecret, &account.app_secret)?);
                stored.whatsapp_verify_token =
                    Some(self.seal(SecretField::WhatsappVerifyToken, &account.verify_token)?);
            }
            Change::Remove => {
                stored.whatsapp_phone_number_id = None;
                stored.whatsapp_app_secret = None;
                stored.whatsapp_verify_token = None;
            }
        }
        match &self.change.sms {
            Change::Keep => {}
            Change::Set(account) => {
                stored.sms_account_sid = Some(account.account_sid.as_str().to_owned());
                stored.sms_auth_token = Some(self.seal(SecretField::SmsAuthToken, &account.auth_token)?);
            }
            Change::Remove => {
                stored.sms_account_sid = None;
                stored.sms_auth_token = None;
            }
        }
        if let Some(hosts) = &self.change.send_webhooks {
            stored.send_webhook_hosts = hosts.as_slice().to_vec();
        }
        stored.version = stream.version + 1;
        stored.updated_at = Some(now);
        stored.updated_by = self.ctx.actor.clone();
        let config = view(Some(&stored));
        let whatsapp_replaced = matches!(self.change.whatsapp, Change::Set(_));
        let sms_replaced = matches!(self.change.sms, Change::Set(_));
        let event = codec::provider_config_changed(&config, whatsapp_replaced, sms_replaced, &self.ctx.actor);
        // No snapshot: the state, secrets and all, is the `provider_configs` row.
        store::append(conn, tenant, &stream_id, stream.version, vec![event], None, &self.ctx.metadata).await?;
        save(conn, tenant, &stored).await?;
        Ok(config)
    }
}
