//! Field encryption. Every contact has its own random key, sealed by the workspace's
//! data-encryption key (so erasing the sealed key shreds the contact). Each field is
//! AES-256-GCM with a random 96-bit nonce; the associated data names the workspace,
//! the contact and the field, so a ciphertext copied elsewhere does not open.

use super::{random_bytes, CryptoError, WorkspaceKeys};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

const FIELD_FORMAT: u8 = 1;

/// The name of an encrypted field, part of its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldName<'a> {
    Email,
    Phone,
    FirstName,
    LastName,
    /// The identifying custom attributes, sealed together as one JSON object.
    Attributes,
    /// Private consent evidence (IP address, user agent) of one ledger event.
    ConsentEvidence(&'a str),
    /// A user's sign-in address (users have their own key, as contacts do).
    UserEmail,
    /// A user's TOTP seed.
    TotpSecret,
    /// The client address an API key was last used from.
    ApiKeyAddress,
    /// A user's passkey credential, bound to its id.
    Passkey(&'a str),
    /// The name a user gave a passkey, bound to its id.
    PasskeyName(&'a str),
    /// The verifier's state of a WebAuthn ceremony.
    WebauthnCeremony,
}

impl FieldName<'_> {
    pub fn label(&self) -> String {
        match self {
            FieldName::Email => "email".into(),
            FieldName::Phone => "phone".into(),
            FieldName::FirstName => "first_name".into(),
            FieldName::LastName => "last_name".into(),
            FieldName::Attributes => "attributes".into(),
            FieldName::ConsentEvidence(id) => format!("consent_evidence:{id}"),
            FieldName::UserEmail => "user_email".into(),
            FieldName::TotpSecret => "totp_secret".into(),
            FieldName::ApiKeyAddress => "api_key_address".into(),
            FieldName::Passkey(id) => format!("passkey:{id}"),
            FieldName::PasskeyName(id) => format!("passkey_name:{id}"),
            FieldName::WebauthnCeremony => "webauthn_ceremony".into(),
        }
    }
}

/// A contact key sealed by a workspace data-encryption key:
/// 4-byte key version, 12-byte nonce, 48 bytes of ciphertext and tag.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedContactKey(pub Vec<u8>);

/// Encrypts and decrypts the fields of one contact.
pub struct ContactCipher {
    workspace_id: String,
    contact_id: [u8; 16],
    cipher: Aes256Gcm,
}

impl ContactCipher {
    /// Creates a fresh key for a new contact and seals it with the current DEK.
    pub fn create(keys: &WorkspaceKeys, contact_id: [u8; 16]) -> Result<(Self, SealedContactKey), CryptoError> {
        let raw = Zeroizing::new(random_bytes::<32>());
        let (version, dek) = keys.current_dek();
        let nonce = random_bytes::<12>();
        let aad = contact_key_aad(&keys.workspace_id, &contact_id, version);
        let ct = dek
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: raw.as_slice(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Malformed("failed to seal a contact key"))?;
        let mut sealed = Vec::with_capacity(4 + 12 + ct.len());
        sealed.extend_from_slice(&version.to_be_bytes());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ct);
        let cipher = Aes256Gcm::new(raw.as_slice().into());
        Ok((
            ContactCipher {
                workspace_id: keys.workspace_id.clone(),
                contact_id,
                cipher,
            },
            SealedContactKey(sealed),
        ))
    }

    /// Opens the sealed key of an existing contact.
    pub fn open(keys: &WorkspaceKeys, contact_id: [u8; 16], sealed: &[u8]) -> Result<Self, CryptoError> {
        let tampered = || CryptoError::Tampered {
            field: "contact_key".into(),
        };
        if sealed.len() != 4 + 12 + 48 {
            return Err(tampered());
        }
        let version = u32::from_be_bytes([sealed[0], sealed[1], sealed[2], sealed[3]]);
        let dek = keys.dek(version).ok_or_else(tampered)?;
        let aad = contact_key_aad(&keys.workspace_id, &contact_id, version);
        let raw = Zeroizing::new(
            dek.decrypt(
                Nonce::from_slice(&sealed[4..16]),
                Payload {
                    msg: &sealed[16..],
                    aad: &aad,
                },
            )
            .map_err(|_| tampered())?,
        );
        let cipher = Aes256Gcm::new(raw.as_slice().into());
        Ok(ContactCipher {
            workspace_id: keys.workspace_id.clone(),
            contact_id,
            cipher,
        })
    }

    /// Seals one field value.
    pub fn seal(&self, field: FieldName<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce = random_bytes::<12>();
        let aad = self.field_aad(field);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| CryptoError::Malformed("failed to seal a field"))?;
        let mut out = Vec::with_capacity(1 + 12 + ct.len());
        out.push(FIELD_FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens one field value; fails if it was altered or belongs to another place.
    pub fn open_field(&self, field: FieldName<'_>, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let tampered = || CryptoError::Tampered { field: field.label() };
        if sealed.len() < 1 + 12 + 16 || sealed[0] != FIELD_FORMAT {
            return Err(tampered());
        }
        let aad = self.field_aad(field);
        self.cipher
            .decrypt(
                Nonce::from_slice(&sealed[1..13]),
                Payload {
                    msg: &sealed[13..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| tampered())
    }

    /// Opens a field that holds UTF-8 text.
    pub fn open_text(&self, field: FieldName<'_>, sealed: &[u8]) -> Result<String, CryptoError> {
        let bytes = self.open_field(field, sealed)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CryptoError::Tampered { field: field.label() })
    }

    fn field_aad(&self, field: FieldName<'_>) -> Vec<u8> {
        let label = field.label();
        let mut aad = Vec::with_capacity(24 + self.workspace_id.len() + label.len());
        aad.extend_from_slice(b"consentry:field:v1:");
        aad.extend_from_slice(self.workspace_id.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&self.contact_id);
        aad.extend_from_slice(label.as_bytes());
        aad
    }
}

fn contact_key_aad(workspace: &str, contact_id: &[u8; 16], version: u32) -> Vec<u8> {
    let mut aad = b"consentry:ck:v1:".to_vec();
    aad.extend_from_slice(workspace.as_bytes());
    aad.push(0);
    aad.extend_from_slice(contact_id);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{MasterKey, WorkspaceKeys, KEY_PURPOSES};
    use proptest::prelude::*;

    fn keys(ws: &str) -> WorkspaceKeys {
        let m = MasterKey::generate().unwrap();
        let wrapped: Vec<_> = KEY_PURPOSES.iter().map(|p| m.wrap_new(ws, p, 1).unwrap()).collect();
        WorkspaceKeys::open(&m, ws, &wrapped).unwrap()
    }

    #[test]
    fn field_round_trips() {
        let k = keys("ws");
        let (c, sealed_key) = ContactCipher::create(&k, [1; 16]).unwrap();
        let ct = c.seal(FieldName::Email, b"jane@example.com").unwrap();
        let reopened = ContactCipher::open(&k, [1; 16], &sealed_key.0).unwrap();
        assert_eq!(reopened.open_text(FieldName::Email, &ct).unwrap(), "jane@example.com");
    }

    #[test]
    fn ciphertext_moved_to_another_field_is_refused() {
        let k = keys("ws");
        let (c, _) = ContactCipher::create(&k, [1; 16]).unwrap();
        let ct = c.seal(FieldName::FirstName, b"Jane").unwrap();
        assert_eq!(
            c.open_field(FieldName::LastName, &ct).err(),
            Some(CryptoError::Tampered { field: "last_name".into() })
        );
    }

    #[test]
    fn contact_key_moved_to_another_contact_is_refused() {
        let k = keys("ws");
        let (_, sealed) = ContactCipher::create(&k, [1; 16]).unwrap();
        assert!(ContactCipher::open(&k, [2; 16], &sealed.0).is_err());
    }

    proptest! {
        #[test]
        fn any_single_bit_flip_is_detected(data in proptest::collection::vec(any::<u8>(), 0..200), bit in 0usize..1000) {
            let k = keys("ws");
            let (c, _) = ContactCipher::create(&k, [7; 16]).unwrap();
            let mut ct = c.seal(FieldName::Phone, &data).unwrap();
            let idx = bit % (ct.len() * 8);
            ct[idx / 8] ^= 1 << (idx % 8);
            prop_assert!(c.open_field(FieldName::Phone, &ct).is_err());
        }

        #[test]
        fn seal_then_open_is_identity(data in proptest::collection::vec(any::<u8>(), 0..500)) {
            let k = keys("ws");
            let (c, _) = ContactCipher::create(&k, [9; 16]).unwrap();
            let ct = c.seal(FieldName::Attributes, &data).unwrap();
            prop_assert_eq!(c.open_field(FieldName::Attributes, &ct).unwrap().to_vec(), data);
        }
    }
}
