//! API key tokens: `csk_<id>_<secret>`, with a 64-bit public id for lookup and a
//! 256-bit secret from the OS RNG. Only a keyed hash of the secret is stored, and it
//! is compared in constant time.

use super::{os_random_bytes, WorkspaceKeys};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// A freshly made key: the full token is shown once and then only its hash exists.
pub struct ApiKeySecret {
    pub id: String,
    pub token: SecretString,
    pub hash: [u8; 32],
}

impl ApiKeySecret {
    pub fn generate(keys: &WorkspaceKeys) -> anyhow::Result<Self> {
        let rnd = |e: getrandom::Error| anyhow::anyhow!("failed to read the OS random generator: {e}");
        let id = hex::encode(os_random_bytes::<8>().map_err(rnd)?);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(os_random_bytes::<32>().map_err(rnd)?);
        let hash = keys.token_hash("api_key", secret.as_bytes());
        Ok(ApiKeySecret {
            token: SecretString::from(format!("csk_{id}_{secret}")),
            id,
            hash,
        })
    }
}

/// A presented token split into id and secret.
pub struct ParsedApiKey {
    pub id: String,
    secret: SecretString,
}

impl ParsedApiKey {
    /// Splits `csk_<16 hex>_<43 base64url>`; `None` when the shape is wrong.
    pub fn parse(token: &str) -> Option<Self> {
        let rest = token.strip_prefix("csk_")?;
        let (id, secret) = rest.split_once('_')?;
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        if secret.len() != 43 || !secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return None;
        }
        Some(ParsedApiKey {
            id: id.to_string(),
            secret: SecretString::from(secret.to_string()),
        })
    }

    /// Whether the secret matches a stored hash (constant time).
    pub fn matches(&self, keys: &WorkspaceKeys, stored_hash: &[u8]) -> bool {
        let hash = keys.token_hash("api_key", self.secret.expose_secret().as_bytes());
        hash.ct_eq(stored_hash).into()
    }
}
