//! Provider secrets at rest: AES-256-GCM under the deployment's key (`DW_PROVIDER_SECRETS_KEY`,
//! the base64 of 32 random bytes).
//!
//! A sealed secret is `1 ‖ nonce ‖ ciphertext ‖ tag`: a format byte, a random 96-bit nonce, then
//! what AES-GCM makes of the secret. Its associated data names the tenant and the field, so a
//! ciphertext copied into another tenant's row, or into another column, does not open.
//!
//! The same key also keys the idempotency hash of `SetProviderConfig` (a key derived from it, see
//! [`ProviderSecretsKey::request_hash`]): a plain SHA-256 of a request holding a secret would let
//! whoever reads the idempotency table test guesses of that secret offline.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use dw_ids::TenantId;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The key's length: AES-256.
pub const KEY_BYTES: usize = 32;
/// The first byte of every sealed secret (the layout above).
const FORMAT: u8 = 1;
const NONCE_BYTES: usize = 12;
/// What the request-hash key is derived for (HMAC-SHA256 of this under the key).
const REQUEST_HASH_LABEL: &[u8] = b"dw.messaging.provider-config.request-hash.v1";

/// Which secret a ciphertext holds: part of its associated data, and its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretField {
    WhatsappAppSecret,
    WhatsappVerifyToken,
    SmsAuthToken,
}

impl SecretField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WhatsappAppSecret => "whatsapp_app_secret",
            Self::WhatsappVerifyToken => "whatsapp_verify_token",
            Self::SmsAuthToken => "sms_auth_token",
        }
    }
}

/// A stored secret that does not open: another key, another tenant's or field's ciphertext, or
/// damaged bytes. Never the caller's fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the stored {0} does not decrypt with this key")]
    Undecryptable(&'static str),
    #[error("the {0} could not be encrypted")]
    Unencryptable(&'static str),
}

/// The deployment's provider-secrets key. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct ProviderSecretsKey {
    cipher: Aes256Gcm,
    request_mac: Hmac<Sha256>,
}

impl std::fmt::Debug for ProviderSecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProviderSecretsKey(<redacted>)")
    }
}

impl ProviderSecretsKey {
    pub fn from_bytes(key: &[u8; KEY_BYTES]) -> Self {
        let request_mac_key = hmac_sha256(key, REQUEST_HASH_LABEL);
        Self { cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)), request_mac: hmac_keyed(&request_mac_key) }
    }

    /// The key from its base64 (standard alphabet, padded or not, surrounding blanks ignored).
    /// The error never repeats the value.
    pub fn from_base64(encoded: &SecretString) -> Result<Self, String> {
        let text = encoded.expose_secret().trim();
        let engines = [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::STANDARD_NO_PAD];
        let decoded = engines.iter().find_map(|engine| engine.decode(text).ok());
        let invalid = || format!("must be the base64 of {KEY_BYTES} random bytes (e.g. `openssl rand -base64 32`)");
        let bytes = decoded.ok_or_else(invalid)?;
        let key: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| invalid())?;
        Ok(Self::from_bytes(&key))
    }

    /// `secret` sealed for `tenant`'s `field`, with a fresh random nonce.
    pub fn seal(&self, tenant: &TenantId, field: SecretField, secret: &SecretString) -> Result<Vec<u8>, SecretError> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let aad = associated_data(tenant, field);
        let payload = Payload { msg: secret.expose_secret().as_bytes(), aad: &aad };
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| SecretError::Unencryptable(field.as_str()))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_BYTES + ciphertext.len());
        sealed.push(FORMAT);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// The secret sealed for `tenant`'s `field`.
    pub fn open(&self, tenant: &TenantId, field: SecretField, sealed: &[u8]) -> Result<SecretString, SecretError> {
        let undecryptable = || SecretError::Undecryptable(field.as_str());
        let Some((&FORMAT, rest)) = sealed.split_first() else {
            return Err(undecryptable());
        };
        if rest.len() < NONCE_BYTES {
            return Err(undecryptable());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let aad = associated_data(tenant, field);
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| undecryptable())?;
        let text = String::from_utf8(plaintext).map_err(|_| undecryptable())?;
        Ok(SecretString::from(text))
    }

    /// The idempotency hash of a request that holds secrets: HMAC-SHA256 of its encoding under a
    /// key derived from this one, stable for one body, useless for testing guesses without the key.
    pub fn request_hash(&self, body: &impl prost::Message) -> Vec<u8> {
        let mut mac = self.request_mac.clone();
        mac.update(&body.encode_to_vec());
        mac.finalize().into_bytes().to_vec()
    }
}

/// `dw.messaging.provider-secret.v1 ‖ 0 ‖ tenant ‖ 0 ‖ field`: tenant ids and field names hold
/// no NUL, so no two pairs give the same bytes.
fn associated_data(tenant: &TenantId, field: SecretField) -> Vec<u8> {
    format!("dw.messaging.provider-secret.v1\0{tenant}\0{}", field.as_str()).into_bytes()
}

fn hmac_keyed(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("hmac accepts any key length"),
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = hmac_keyed(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> ProviderSecretsKey {
        ProviderSecretsKey::from_bytes(&[byte; KEY_BYTES])
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_for_its_tenant_and_field_only() {
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let secret = SecretString::from("s3cret-value");
        let sealed = key(7).seal(&acme, SecretField::WhatsappAppSecret, &secret).unwrap();
        assert_eq!(sealed[0], FORMAT);
        assert_eq!(sealed.len(), 1 + NONCE_BYTES + "s3cret-value".len() + 16);
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"), "not plaintext");
        let opened = key(7).open(&acme, SecretField::WhatsappAppSecret, &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "s3cret-value");
        let refused = SecretError::Undecryptable("whatsapp_app_secret");
        assert_eq!(key(7).open(&globex, SecretField::WhatsappAppSecret, &sealed).unwrap_err(), refused);
        assert!(key(7).open(&acme, SecretField::SmsAuthToken, &sealed).is_err(), "another field");
        assert!(key(8).open(&acme, SecretField::WhatsappAppSecret, &sealed).is_err(), "another key");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(key(7).open(&acme, SecretField::WhatsappAppSecret, &tampered).is_err());
        for damaged in [&[][..], &[FORMAT][..], &sealed[..10], &[2, 0, 0][..]] {
            assert!(key(7).open(&acme, SecretField::WhatsappAppSecret, damaged).is_err());
        }
    }

    #[test]
    fn every_seal_has_its_own_nonce() {
        let secret = SecretString::from("same-secret");
        let a = key(1).seal(&tenant("acme"), SecretField::SmsAuthToken, &secret).unwrap();
        let b = key(1).seal(&tenant("acme"), SecretField::SmsAuthToken, &secret).unwrap();
        assert_ne!(a[1..1 + NONCE_BYTES], b[1..1 + NONCE_BYTES]);
        assert_ne!(a, b);
    }

    #[test]
    fn the_key_is_32_bytes_of_base64_and_never_printed() {
        let encoded = base64::engine::general_purpose::STANDARD.encode([9u8; KEY_BYTES]);
        let parsed = ProviderSecretsKey::from_base64(&SecretString::from(format!(" {encoded}\n"))).unwrap();
        assert_eq!(format!("{parsed:?}"), "ProviderSecretsKey(<redacted>)");
        let unpadded = encoded.trim_end_matches('=').to_owned();
        assert!(ProviderSecretsKey::from_base64(&SecretString::from(unpadded)).is_ok());
        let short = base64::engine::general_purpose::STANDARD.encode([9u8; 16]);
        let long = base64::engine::general_purpose::STANDARD.encode([9u8; 33]);
        for bad in [short.as_str(), long.as_str(), "", "not base64 at all!", "dw-local-secret"] {
            let error = ProviderSecretsKey::from_base64(&SecretString::from(bad.to_owned())).unwrap_err();
            assert!(error.contains("base64 of 32"), "{error}");
            assert!(bad.is_empty() || !error.contains(bad), "the error does not repeat the value");
        }
    }

    #[test]
    fn request_hashes_are_keyed_and_stable() {
        let body = dw_proto::messaging::v1::GetProviderConfigRequest {};
        let request = dw_proto::messaging::v1::SetProviderConfigRequest {
            request_id: "r".into(),
            remove_sms: true,
            ..Default::default()
        };
        assert_eq!(key(1).request_hash(&request), key(1).request_hash(&request));
        assert_ne!(key(1).request_hash(&request), key(2).request_hash(&request));
        assert_ne!(key(1).request_hash(&request), key(1).request_hash(&body));
        assert_ne!(key(1).request_hash(&request), dw_grpc_kit::command::request_hash(&request));
    }
}
