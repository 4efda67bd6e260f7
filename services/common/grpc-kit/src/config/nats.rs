//! How a service protects and authenticates its NATS connection: TLS files and one way to
//! authenticate (a `.creds` file or an NKey seed), each checked when the configuration is read.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::{ConfigError, parsed, readable_file};

/// How a service protects and authenticates its NATS connection. Secrets are read when the
/// configuration is (from files, mounted Kubernetes secrets) and are never printed by `Debug`.
#[derive(Debug, Clone, Default)]
pub struct NatsSecurity {
    pub tls: NatsTls,
    pub auth: NatsAuth,
}

/// TLS to NATS: the CA that signed the servers' certificates (`DW_NATS_TLS_CA_FILE`), a client
/// certificate for servers that verify clients (`DW_NATS_TLS_CERT_FILE` + `DW_NATS_TLS_KEY_FILE`),
/// and whether a server that offers no TLS is refused (`DW_NATS_TLS_REQUIRED`; by default true as
/// soon as a CA or a client certificate is given; a `tls://` URL requires it too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsTls {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<NatsClientCert>,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Who the service is to NATS: at most one of these. Both come from files (mounted Secrets);
/// a user and password can still be given in `NATS_URL` (`nats://user:password@host`), which is
/// then a secret itself.
#[derive(Debug, Clone, Default)]
pub enum NatsAuth {
    /// No credentials (or those of `NATS_URL`).
    #[default]
    Anonymous,
    /// A `.creds` file (the user's JWT and NKey seed, decentralised auth): `DW_NATS_CREDS_FILE`.
    Credentials { file: PathBuf, contents: SecretString },
    /// An NKey user: the seed from `DW_NATS_NKEY_SEED_FILE`; its public key (the `nkey` of the
    /// server's `authorization.users`) is logged.
    Nkey { public_key: String, seed: SecretString },
}

impl NatsSecurity {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self { tls: nats_tls_from_env()?, auth: nats_auth_from_env()? })
    }
}

fn nats_tls_from_env() -> Result<NatsTls, ConfigError> {
    let ca_file = readable_file("DW_NATS_TLS_CA_FILE")?;
    let client_cert = match (readable_file("DW_NATS_TLS_CERT_FILE")?, readable_file("DW_NATS_TLS_KEY_FILE")?) {
        (Some(cert_file), Some(key_file)) => Some(NatsClientCert { cert_file, key_file }),
        (None, None) => None,
        (Some(_), None) => return Err(ConfigError::Missing("DW_NATS_TLS_KEY_FILE (with DW_NATS_TLS_CERT_FILE)")),
        (None, Some(_)) => return Err(ConfigError::Missing("DW_NATS_TLS_CERT_FILE (with DW_NATS_TLS_KEY_FILE)")),
    };
    let configured = ca_file.is_some() || client_cert.is_some();
    let required = parsed("DW_NATS_TLS_REQUIRED", if configured { "true" } else { "false" })?;
    Ok(NatsTls { ca_file, client_cert, required })
}

fn nats_auth_from_env() -> Result<NatsAuth, ConfigError> {
    let mut chosen = Vec::new();
    if let Some(file) = readable_file("DW_NATS_CREDS_FILE")? {
        chosen.push(nats_credentials(&file)?);
    }
    if let Some(file) = readable_file("DW_NATS_NKEY_SEED_FILE")? {
        let seed = std::fs::read_to_string(&file).map_err(|e| ConfigError::Invalid {
            name: "DW_NATS_NKEY_SEED_FILE",
            reason: format!("{}: {e}", file.display()),
        })?;
        chosen.push(nats_nkey(SecretString::from(seed))?);
    }
    if chosen.len() > 1 {
        return Err(ConfigError::Invalid {
            name: "DW_NATS_CREDS_FILE",
            reason: "give one way to authenticate to NATS: DW_NATS_CREDS_FILE or DW_NATS_NKEY_SEED_FILE".into(),
        });
    }
    Ok(chosen.pop().unwrap_or_default())
}

/// A `.creds` file, checked now (a JWT and a seed in the `nsc` layout) so that a broken secret
/// stops the start instead of failing every connection attempt.
pub fn nats_credentials(file: &Path) -> Result<NatsAuth, ConfigError> {
    let name = "DW_NATS_CREDS_FILE";
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::Invalid { name, reason: format!("{}: {e}", file.display()) })?;
    async_nats::ConnectOptions::with_credentials(&text).map_err(|e| ConfigError::Invalid {
        name,
        reason: format!("{}: not a NATS creds file: {e}", file.display()),
    })?;
    Ok(NatsAuth::Credentials { file: file.to_owned(), contents: SecretString::from(text) })
}

/// An NKey user seed (`SU…`), checked now.
pub fn nats_nkey(seed: SecretString) -> Result<NatsAuth, ConfigError> {
    let pair = nkeys::KeyPair::from_seed(seed.expose_secret().trim()).map_err(|_| ConfigError::Invalid {
        name: "DW_NATS_NKEY_SEED_FILE",
        reason: "not an NKey seed (SU…)".into(),
    })?;
    Ok(NatsAuth::Nkey {
        public_key: pair.public_key(),
        seed: SecretString::from(seed.expose_secret().trim().to_owned()),
    })
}
