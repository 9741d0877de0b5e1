//! The key hierarchy and every cryptographic operation of consentry: master key,
//! per-workspace keys (data encryption, blind index, API-key hashing, audit signing),
//! per-contact keys, field encryption bound to its place, blind indexes and tokens.
//! This module is the audit surface of the project: it is small on purpose and uses
//! only maintained primitives (`aes-gcm`, `hmac`/`sha2`, `ed25519-dalek`).

mod field;
mod keys;
mod tokens;

pub use field::{ContactCipher, FieldName, SealedContactKey};
pub use keys::{verify_checkpoint, MasterKey, WorkspaceKeys, WrappedKey, KEY_PURPOSES};
pub use tokens::{ApiKeySecret, ParsedApiKey};

use thiserror::Error;

/// Errors of the crypto layer. None carries key material or plaintext.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// A ciphertext did not open: it was altered, or moved to another row or field.
    #[error("ciphertext of field {field} does not belong here or was altered")]
    Tampered { field: String },
    #[error("key material is malformed: {0}")]
    Malformed(&'static str),
    #[error("the master key does not open this workspace's keys (wrong master key?)")]
    WrongMasterKey,
}

/// Fills a buffer from the thread-local CSPRNG (ChaCha, seeded from the OS).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut out = [0u8; N];
    rand::rng().fill_bytes(&mut out);
    out
}

/// Fills a buffer straight from the operating system's RNG, for long-lived secrets.
pub fn os_random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out)?;
    Ok(out)
}

/// SHA-256 of bytes, hex-encoded (file hashes, audit hashes).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
