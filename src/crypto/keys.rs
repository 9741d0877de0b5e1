//! Master key and per-workspace keys. The master key only wraps workspace keys; each
//! workspace key has a purpose and a version, and its wrapping is bound to both, so a
//! wrapped key copied to another workspace or purpose does not open.

use super::{os_random_bytes, random_bytes, CryptoError};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use std::path::Path;
use zeroize::Zeroizing;

/// Purposes of workspace keys, in the order they are created.
pub const KEY_PURPOSES: [&str; 4] = ["dek", "bidx", "token", "audit"];

/// The 256-bit master key. Never printed, zeroed on drop.
pub struct MasterKey(SecretBox<[u8; 32]>);

impl MasterKey {
    pub fn generate() -> anyhow::Result<Self> {
        let bytes = os_random_bytes::<32>().map_err(|e| anyhow::anyhow!("failed to read the OS random generator: {e}"))?;
        Ok(MasterKey(SecretBox::new(Box::new(bytes))))
    }

    /// Parses 64 hex characters (the key file's and `CONSENTRY_MASTER_KEY`'s format).
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let text = Zeroizing::new(text.trim().to_string());
        let bytes = Zeroizing::new(hex::decode(text.as_bytes()).map_err(|_| CryptoError::Malformed("master key is not hex"))?);
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed("master key must be 32 bytes (64 hex characters)"))?;
        Ok(MasterKey(SecretBox::new(Box::new(arr))))
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.expose_secret()))
    }

    /// Reads a key file; refuses one that others can read.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .with_context(|| format!("failed to read master key file {}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                anyhow::bail!(
                    "master key file {} is readable by others (mode {:o}): run chmod 600 on it",
                    path.display(),
                    mode & 0o777
                );
            }
        }
        let text =
            Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("failed to read master key file {}", path.display()))?);
        Ok(Self::from_hex(&text)?)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.expose_secret().into())
    }

    /// Wraps a fresh random workspace key for a purpose and version.
    pub fn wrap_new(&self, workspace: &str, purpose: &str, version: u32) -> anyhow::Result<WrappedKey> {
        let key = Zeroizing::new(os_random_bytes::<32>().map_err(|e| anyhow::anyhow!("failed to read the OS random generator: {e}"))?);
        let nonce = random_bytes::<12>();
        let aad = wrap_aad(workspace, purpose, version);
        let ct = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: key.as_slice(),
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("failed to wrap a workspace key"))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&ct);
        Ok(WrappedKey {
            purpose: purpose.to_string(),
            version,
            wrapped,
        })
    }

    fn unwrap(&self, workspace: &str, key: &WrappedKey) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        if key.wrapped.len() != 12 + 32 + 16 {
            return Err(CryptoError::Malformed("wrapped workspace key has the wrong length"));
        }
        let aad = wrap_aad(workspace, &key.purpose, key.version);
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    Nonce::from_slice(&key.wrapped[..12]),
                    Payload {
                        msg: &key.wrapped[12..],
                        aad: &aad,
                    },
                )
                .map_err(|_| CryptoError::WrongMasterKey)?,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&plain);
        Ok(out)
    }
}

fn wrap_aad(workspace: &str, purpose: &str, version: u32) -> Vec<u8> {
    format!("consentry:wskey:v1:{workspace}:{purpose}:{version}").into_bytes()
}

/// A workspace key as stored: wrapped by the master key.
#[derive(Clone)]
pub struct WrappedKey {
    pub purpose: String,
    pub version: u32,
    pub wrapped: Vec<u8>,
}

/// The unwrapped keys of one workspace, ready to use. Zeroed on drop.
pub struct WorkspaceKeys {
    pub workspace_id: String,
    /// Data-encryption keys by version; the highest seals new contact keys.
    pub(super) deks: Vec<(u32, Aes256Gcm)>,
    pub(super) bidx: Hmac<Sha256>,
    pub(super) token: Hmac<Sha256>,
    pub(super) audit_signing: ed25519_dalek::SigningKey,
}

impl WorkspaceKeys {
    /// Opens a workspace's wrapped keys with the master key.
    pub fn open(master: &MasterKey, workspace_id: &str, wrapped: &[WrappedKey]) -> Result<Self, CryptoError> {
        let mut deks = Vec::new();
        let mut bidx = None;
        let mut token = None;
        let mut audit = None;
        for w in wrapped {
            let raw = master.unwrap(workspace_id, w)?;
            match w.purpose.as_str() {
                "dek" => deks.push((w.version, Aes256Gcm::new(raw.as_slice().into()))),
                "bidx" => bidx = Some(hmac_key(raw.as_slice())?),
                "token" => token = Some(hmac_key(raw.as_slice())?),
                "audit" => audit = Some(ed25519_dalek::SigningKey::from_bytes(&raw)),
                _ => return Err(CryptoError::Malformed("unknown workspace key purpose")),
            }
        }
        deks.sort_by_key(|(v, _)| *v);
        if deks.is_empty() {
            return Err(CryptoError::Malformed("workspace has no data-encryption key"));
        }
        Ok(WorkspaceKeys {
            workspace_id: workspace_id.to_string(),
            deks,
            bidx: bidx.ok_or(CryptoError::Malformed("workspace has no blind-index key"))?,
            token: token.ok_or(CryptoError::Malformed("workspace has no token key"))?,
            audit_signing: audit.ok_or(CryptoError::Malformed("workspace has no audit signing key"))?,
        })
    }

    /// Blind index of an identifier: HMAC-SHA256 over kind and normalised value,
    /// truncated to 128 bits (collisions stay negligible far beyond any contact
    /// base, and the unique indexes stay half the size).
    pub fn blind_index(&self, kind: &str, normalized: &str) -> [u8; 16] {
        let mut mac = self.bidx.clone();
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(normalized.as_bytes());
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// Keyed hash of a token secret or a client IP (stored instead of the value).
    pub fn token_hash(&self, domain: &str, value: &[u8]) -> [u8; 32] {
        let mut mac = self.token.clone();
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// Signs an audit checkpoint.
    pub fn sign_checkpoint(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.audit_signing.sign(message).to_bytes()
    }

    /// The audit checkpoint verification key.
    pub fn audit_public_key(&self) -> [u8; 32] {
        self.audit_signing.verifying_key().to_bytes()
    }

    pub(super) fn current_dek(&self) -> (u32, &Aes256Gcm) {
        let (v, k) = &self.deks[self.deks.len() - 1];
        (*v, k)
    }

    pub(super) fn dek(&self, version: u32) -> Option<&Aes256Gcm> {
        self.deks.iter().find(|(v, _)| *v == version).map(|(_, k)| k)
    }
}

fn hmac_key(raw: &[u8]) -> Result<Hmac<Sha256>, CryptoError> {
    <Hmac<Sha256> as Mac>::new_from_slice(raw).map_err(|_| CryptoError::Malformed("bad hmac key"))
}

/// Verifies an audit checkpoint signature with a public key.
pub fn verify_checkpoint(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use ed25519_dalek::Verifier;
    let Ok(pk) = <[u8; 32]>::try_from(public_key) else { return false };
    let Ok(sig) = <[u8; 64]>::try_from(signature) else { return false };
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&pk) else {
        return false;
    };
    vk.verify(message, &ed25519_dalek::Signature::from_bytes(&sig)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn keys_for(ws: &str) -> (MasterKey, WorkspaceKeys) {
        let m = MasterKey::generate().unwrap();
        let wrapped: Vec<_> = KEY_PURPOSES.iter().map(|p| m.wrap_new(ws, p, 1).unwrap()).collect();
        let k = WorkspaceKeys::open(&m, ws, &wrapped).unwrap();
        (m, k)
    }

    #[test]
    fn same_email_in_two_workspaces_has_unrelated_blind_indexes() {
        let (_, a) = keys_for("ws-a");
        let (_, b) = keys_for("ws-b");
        assert_ne!(a.blind_index("email", "x@example.com"), b.blind_index("email", "x@example.com"));
        assert_eq!(a.blind_index("email", "x@example.com"), a.blind_index("email", "x@example.com"));
    }

    #[test]
    fn wrapped_key_does_not_open_in_another_workspace() {
        let m = MasterKey::generate().unwrap();
        let wrapped: Vec<_> = KEY_PURPOSES.iter().map(|p| m.wrap_new("ws-a", p, 1).unwrap()).collect();
        assert!(WorkspaceKeys::open(&m, "ws-b", &wrapped).is_err());
        let other = MasterKey::generate().unwrap();
        assert_eq!(
            WorkspaceKeys::open(&other, "ws-a", &wrapped).err(),
            Some(CryptoError::WrongMasterKey)
        );
    }

    #[test]
    fn checkpoint_signatures_verify_only_unaltered() {
        let (_, k) = keys_for("ws");
        let sig = k.sign_checkpoint(b"seq=1");
        assert!(verify_checkpoint(&k.audit_public_key(), b"seq=1", &sig));
        assert!(!verify_checkpoint(&k.audit_public_key(), b"seq=2", &sig));
    }
}
