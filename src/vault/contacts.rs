//! Contacts: sealing and opening records, masking, and the create / read / look up /
//! update / delete / list services. Every unmasked read is audited before the data
//! is returned; a read whose audit event cannot be written fails.

use super::{FieldError, Vault, VaultError, VaultResult};
use crate::access::{Permission, Principal, ReadMode};
use crate::audit::{AuditDraft, Outcome};
use crate::clock::rfc3339;
use crate::crypto::{ContactCipher, CryptoError, FieldName, WorkspaceKeys};
use crate::domain::mask::{mask_email, mask_phone, mask_text};
use crate::domain::names::parse_text;
use crate::domain::{AttributeClass, EmailAddress, PhoneNumber};
use crate::store::{AttributeDef, ContactRow, IdentifierKind, ListScope, NewContact};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// A contact's values in clear, only ever in memory.
#[derive(Clone, Default)]
pub struct ContactPlain {
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Identifying custom attributes (sealed together).
    pub identifying: BTreeMap<String, String>,
    /// Segmentable attributes (stored in clear).
    pub segment: BTreeMap<String, String>,
}

/// A contact as returned to a client: identifying values masked unless the request
/// was allowed to unmask them.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContactView {
    pub id: Uuid,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Custom attributes; identifying ones are masked like the fields above.
    pub attributes: BTreeMap<String, String>,
    /// Whether identifying values were masked.
    pub masked: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// Input of `POST /contacts` and `PATCH /contacts/{id}`. In a patch, a missing field
/// is left alone and an empty string clears it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Region for phone numbers written without a country code (e.g. `NL`).
    pub region: Option<String>,
    /// Lists (ids or names) to add a new contact to.
    #[serde(default)]
    pub lists: Vec<String>,
    /// Consents to record with a new contact.
    #[serde(default)]
    pub consents: Vec<super::consents::ConsentInput>,
}

/// Seals a contact's plaintext with its cipher into a row.
pub fn seal_row(cipher: &ContactCipher, keys: &WorkspaceKeys, base: ContactRow, plain: &ContactPlain) -> Result<ContactRow, CryptoError> {
    let seal_opt =
        |f: FieldName<'_>, v: Option<&str>| -> Result<Option<Vec<u8>>, CryptoError> { v.map(|v| cipher.seal(f, v.as_bytes())).transpose() };
    let attributes_ct = if plain.identifying.is_empty() {
        None
    } else {
        let json = serde_json::to_vec(&plain.identifying).map_err(|_| CryptoError::Malformed("attributes"))?;
        Some(cipher.seal(FieldName::Attributes, &json)?)
    };
    Ok(ContactRow {
        email_bidx: plain.email.as_ref().map(|e| keys.blind_index("email", e.normalized()).to_vec()),
        phone_bidx: plain.phone.as_ref().map(|p| keys.blind_index("phone", p.as_str()).to_vec()),
        email_ct: seal_opt(FieldName::Email, plain.email.as_ref().map(|e| e.as_str()))?,
        phone_ct: seal_opt(FieldName::Phone, plain.phone.as_ref().map(|p| p.as_str()))?,
        first_name_ct: seal_opt(FieldName::FirstName, plain.first_name.as_deref())?,
        last_name_ct: seal_opt(FieldName::LastName, plain.last_name.as_deref())?,
        attributes_ct,
        segment_attributes: serde_json::to_string(&plain.segment).unwrap_or_else(|_| "{}".into()),
        ..base
    })
}

/// Seals a new contact under a fresh contact key.
pub fn seal_new(keys: &WorkspaceKeys, id: Uuid, plain: &ContactPlain, now: i64) -> Result<(ContactCipher, ContactRow), CryptoError> {
    let (cipher, sealed_key) = ContactCipher::create(keys, *id.as_bytes())?;
    let base = ContactRow {
        id,
        workspace_id: keys.workspace_id.clone(),
        email_bidx: None,
        phone_bidx: None,
        contact_key: sealed_key.0,
        email_ct: None,
        phone_ct: None,
        first_name_ct: None,
        last_name_ct: None,
        attributes_ct: None,
        segment_attributes: "{}".into(),
        created_at: now,
        updated_at: now,
    };
    let row = seal_row(&cipher, keys, base, plain)?;
    Ok((cipher, row))
}

/// Opens a row. Any ciphertext that does not belong to its place is an error.
pub fn open_row(keys: &WorkspaceKeys, row: &ContactRow) -> Result<(ContactCipher, ContactPlain), CryptoError> {
    let cipher = ContactCipher::open(keys, *row.id.as_bytes(), &row.contact_key)?;
    let text = |f: FieldName<'_>, ct: &Option<Vec<u8>>| -> Result<Option<String>, CryptoError> {
        ct.as_ref().map(|ct| cipher.open_text(f, ct)).transpose()
    };
    let tampered = |f: &str| CryptoError::Tampered { field: f.to_string() };
    let email = text(FieldName::Email, &row.email_ct)?
        .map(|e| EmailAddress::from_sealed(&e).map_err(|_| tampered("email")))
        .transpose()?;
    let phone = text(FieldName::Phone, &row.phone_ct)?
        .map(|p| PhoneNumber::from_sealed_e164(&p).map_err(|_| tampered("phone")))
        .transpose()?;
    let identifying = match &row.attributes_ct {
        Some(ct) => {
            let bytes = cipher.open_field(FieldName::Attributes, ct)?;
            serde_json::from_slice(&bytes).map_err(|_| tampered("attributes"))?
        }
        None => BTreeMap::new(),
    };
    let segment = serde_json::from_str(&row.segment_attributes).unwrap_or_default();
    let plain = ContactPlain {
        email,
        phone,
        first_name: text(FieldName::FirstName, &row.first_name_ct)?,
        last_name: text(FieldName::LastName, &row.last_name_ct)?,
        identifying,
        segment,
    };
    Ok((cipher, plain))
}

/// Renders a contact for a client under a read mode.
pub fn view(row: &ContactRow, plain: &ContactPlain, mode: &ReadMode) -> ContactView {
    let masked = matches!(mode, ReadMode::Masked);
    let m = |v: &Option<String>| v.as_ref().map(|v| if masked { mask_text(v) } else { v.clone() });
    let mut attributes: BTreeMap<String, String> = plain.segment.clone();
    for (k, v) in &plain.identifying {
        attributes.insert(k.clone(), if masked { mask_text(v) } else { v.clone() });
    }
    ContactView {
        id: row.id,
        email: plain
            .email
            .as_ref()
            .map(|e| if masked { mask_email(e.as_str()) } else { e.as_str().to_string() }),
        phone: plain.phone.as_ref().map(|p| {
            if masked {
                mask_phone(p.as_str(), p.country_code())
            } else {
                p.as_str().to_string()
            }
        }),
        first_name: m(&plain.first_name),
        last_name: m(&plain.last_name),
        attributes,
        masked,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }
}

/// Parses the attributes of an input against the workspace schema.
pub fn split_attributes(
    schema: &[AttributeDef],
    input: &BTreeMap<String, String>,
    errors: &mut Vec<FieldError>,
) -> (BTreeMap<String, Option<String>>, BTreeMap<String, Option<String>>) {
    let mut identifying = BTreeMap::new();
    let mut segment = BTreeMap::new();
    for (name, raw) in input {
        let field = format!("attributes.{name}");
        let Some(def) = schema.iter().find(|d| &d.name == name) else {
            errors.push(FieldError::new(
                &field,
                "unknown attribute: create it in the workspace schema first",
            ));
            continue;
        };
        match parse_text(raw) {
            Ok(v) => {
                match def.class {
                    AttributeClass::Identifying => identifying.insert(name.clone(), v),
                    AttributeClass::Segmentable => segment.insert(name.clone(), v),
                };
            }
            Err(msg) => errors.push(FieldError::new(&field, msg)),
        }
    }
    (identifying, segment)
}

impl Vault {
    /// Reports a failed integrity check (log and audit) and returns its error.
    pub(crate) async fn integrity_failure(&self, p: &Principal, id: Uuid, field: &str) -> VaultError {
        tracing::error!(workspace = %p.workspace_id, contact = %id, field, "stored contact failed its integrity check");
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "integrity.violation")
            .target(format!("contact:{id}"))
            .outcome(Outcome::Failure)
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "field": field }));
        if let Err(e) = self.store.record_audit(draft).await {
            tracing::error!(error = %e, "failed to record an integrity violation");
        }
        VaultError::Integrity { field: field.to_string() }
    }

    /// Opens a row for a principal, reporting tampering instead of returning data.
    pub(crate) async fn open_for(&self, p: &Principal, keys: &WorkspaceKeys, row: &ContactRow) -> VaultResult<ContactPlain> {
        match open_row(keys, row) {
            Ok((_, plain)) => Ok(plain),
            Err(CryptoError::Tampered { field }) => Err(self.integrity_failure(p, row.id, &field).await),
            Err(e) => Err(e.into()),
        }
    }

    /// Records the audit event of an unmasked read before the data leaves.
    pub(crate) async fn audit_read(&self, p: &Principal, mode: &ReadMode, action: &'static str, ids: &[Uuid]) -> VaultResult<()> {
        if let ReadMode::Unmasked { purpose } = mode {
            if ids.is_empty() {
                return Ok(());
            }
            let target = if ids.len() == 1 {
                format!("contact:{}", ids[0])
            } else {
                format!("contacts:{}", ids.len())
            };
            let draft = AuditDraft::new(&p.workspace_id, &p.actor, action)
                .target(target)
                .purpose(Some(purpose))
                .ip_hash(p.ip_hash.clone())
                .details(serde_json::json!({ "contacts": ids }));
            self.store.record_audit(draft).await?;
        }
        Ok(())
    }

    /// Creates a contact with optional first consents and list memberships.
    pub async fn create_contact(&self, p: &Principal, input: ContactInput, mode: &ReadMode) -> VaultResult<ContactView> {
        p.require(Permission::ContactsWrite)?;
        let keys = self.keys(&p.workspace_id).await?;
        let schema = self.store.list_attributes(&p.workspace_id).await?;
        let mut errors = Vec::new();
        let region = parse_region(input.region.as_deref(), &mut errors);
        let mut plain = ContactPlain::default();
        apply_input(&mut plain, &input, region, &schema, &mut errors);
        if plain.email.is_none() && plain.phone.is_none() {
            errors.push(FieldError::new("email", "a contact needs an email or a phone"));
        }
        let mut list_ids = Vec::new();
        for l in &input.lists {
            match self.store.find_list(&p.workspace_id, l, &p.lists).await? {
                Some(list) => list_ids.push(list.id),
                None => errors.push(FieldError::new("lists", "no such list")),
            }
        }
        if let ListScope::Lists(_) = p.lists {
            if list_ids.is_empty() {
                errors.push(FieldError::new("lists", "this key is limited to some lists: name one of them"));
            }
        }
        if !errors.is_empty() {
            return Err(VaultError::Invalid(errors));
        }
        let id = Uuid::now_v7();
        let now = self.now();
        let (cipher, row) = seal_new(&keys, id, &plain, now)?;
        let mut consents = Vec::new();
        for (i, c) in input.consents.iter().enumerate() {
            consents.push(self.consent_row(p, &cipher, &plain, id, c, &format!("consents[{i}]"))?);
        }
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "contact.created")
            .target(format!("contact:{id}"))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "lists": list_ids, "consents": consents.len() }));
        self.store
            .create_contact(
                NewContact {
                    row: row.clone(),
                    consents,
                    list_ids,
                },
                draft,
            )
            .await?;
        self.audit_read(p, mode, "contact.read_unmasked", &[id]).await?;
        Ok(view(&row, &plain, mode))
    }

    /// Reads one contact.
    pub async fn get_contact(&self, p: &Principal, id: Uuid, mode: &ReadMode) -> VaultResult<ContactView> {
        p.require_contact_read()?;
        let keys = self.keys(&p.workspace_id).await?;
        let row = self
            .store
            .find_contact(&p.workspace_id, id, &p.lists)
            .await?
            .ok_or(VaultError::NotFound("contact"))?;
        let plain = self.open_for(p, &keys, &row).await?;
        self.audit_read(p, mode, "contact.read_unmasked", &[id]).await?;
        Ok(view(&row, &plain, mode))
    }

    /// Finds a contact by exact email or phone through the blind index.
    pub async fn lookup_contact(
        &self,
        p: &Principal,
        email: Option<&str>,
        phone: Option<&str>,
        region: Option<&str>,
        mode: &ReadMode,
    ) -> VaultResult<ContactView> {
        p.require_contact_read()?;
        let keys = self.keys(&p.workspace_id).await?;
        let (kind, bidx) = match (email, phone) {
            (Some(e), None) => {
                let e = EmailAddress::parse(e).map_err(|m| VaultError::invalid("email", m))?;
                (IdentifierKind::Email, keys.blind_index("email", e.normalized()))
            }
            (None, Some(ph)) => {
                let mut errors = Vec::new();
                let region = parse_region(region, &mut errors);
                if !errors.is_empty() {
                    return Err(VaultError::Invalid(errors));
                }
                let ph = PhoneNumber::parse(ph, region).map_err(|m| VaultError::invalid("phone", m))?;
                (IdentifierKind::Phone, keys.blind_index("phone", ph.as_str()))
            }
            _ => return Err(VaultError::invalid("email", "give exactly one of email or phone")),
        };
        let row = self
            .store
            .find_contact_by_bidx(&p.workspace_id, kind, &bidx, &p.lists)
            .await?
            .ok_or(VaultError::NotFound("contact"))?;
        let plain = self.open_for(p, &keys, &row).await?;
        self.audit_read(p, mode, "contact.read_unmasked", &[row.id]).await?;
        Ok(view(&row, &plain, mode))
    }

    /// Changes a contact's fields.
    pub async fn update_contact(&self, p: &Principal, id: Uuid, input: ContactInput, mode: &ReadMode) -> VaultResult<ContactView> {
        p.require(Permission::ContactsWrite)?;
        if !input.lists.is_empty() || !input.consents.is_empty() {
            return Err(VaultError::invalid(
                if input.lists.is_empty() { "consents" } else { "lists" },
                "use the list-member and consent endpoints to change these",
            ));
        }
        let keys = self.keys(&p.workspace_id).await?;
        let row = self
            .store
            .find_contact(&p.workspace_id, id, &p.lists)
            .await?
            .ok_or(VaultError::NotFound("contact"))?;
        let mut plain = self.open_for(p, &keys, &row).await?;
        let schema = self.store.list_attributes(&p.workspace_id).await?;
        let mut errors = Vec::new();
        let region = parse_region(input.region.as_deref(), &mut errors);
        let mut changed = apply_input(&mut plain, &input, region, &schema, &mut errors);
        if plain.email.is_none() && plain.phone.is_none() {
            errors.push(FieldError::new("email", "a contact needs an email or a phone"));
        }
        if !errors.is_empty() {
            return Err(VaultError::Invalid(errors));
        }
        changed.sort();
        let cipher = ContactCipher::open(&keys, *row.id.as_bytes(), &row.contact_key)?;
        let base = ContactRow {
            updated_at: self.now(),
            ..row.clone()
        };
        let new_row = seal_row(&cipher, &keys, base, &plain)?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "contact.updated")
            .target(format!("contact:{id}"))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({ "fields": changed }));
        self.store.update_contact(new_row.clone(), draft).await?;
        self.audit_read(p, mode, "contact.read_unmasked", &[id]).await?;
        Ok(view(&new_row, &plain, mode))
    }

    /// Soft-deletes a contact (the erasure workflow will shred it).
    pub async fn delete_contact(&self, p: &Principal, id: Uuid) -> VaultResult<()> {
        p.require(Permission::ContactsWrite)?;
        self.store
            .find_contact(&p.workspace_id, id, &p.lists)
            .await?
            .ok_or(VaultError::NotFound("contact"))?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "contact.deleted")
            .target(format!("contact:{id}"))
            .ip_hash(p.ip_hash.clone());
        self.store.delete_contact(&p.workspace_id, id, self.now(), draft).await?;
        Ok(())
    }

    /// One page of contacts, optionally of one list; returns the next cursor.
    pub async fn list_contacts(
        &self,
        p: &Principal,
        list: Option<&str>,
        after: Option<Uuid>,
        limit: u32,
        mode: &ReadMode,
    ) -> VaultResult<(Vec<ContactView>, Option<Uuid>)> {
        p.require_contact_read()?;
        let keys = self.keys(&p.workspace_id).await?;
        let list_id = match list {
            Some(l) => Some(
                self.store
                    .find_list(&p.workspace_id, l, &p.lists)
                    .await?
                    .ok_or(VaultError::NotFound("list"))?
                    .id,
            ),
            None => None,
        };
        let limit = limit.clamp(1, 1000);
        let rows = self
            .store
            .list_contacts(&p.workspace_id, list_id.as_deref(), &p.lists, after, limit)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let plain = self.open_for(p, &keys, row).await?;
            out.push(view(row, &plain, mode));
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        self.audit_read(p, mode, "contacts.listed_unmasked", &ids).await?;
        let next = if rows.len() as u32 == limit {
            rows.last().map(|r| r.id)
        } else {
            None
        };
        Ok((out, next))
    }
}

/// Parses an optional region, recording a field error.
pub fn parse_region(raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<crate::domain::Region> {
    raw.filter(|r| !r.trim().is_empty())
        .and_then(|r| match crate::domain::Region::parse(r) {
            Ok(r) => Some(r),
            Err(m) => {
                errors.push(FieldError::new("region", m));
                None
            }
        })
}

/// Applies input values to a plaintext contact; returns the names of changed fields.
fn apply_input(
    plain: &mut ContactPlain,
    input: &ContactInput,
    region: Option<crate::domain::Region>,
    schema: &[AttributeDef],
    errors: &mut Vec<FieldError>,
) -> Vec<String> {
    let mut changed = Vec::new();
    if let Some(raw) = &input.email {
        changed.push("email".to_string());
        plain.email = if raw.trim().is_empty() {
            None
        } else {
            match EmailAddress::parse(raw) {
                Ok(e) => Some(e),
                Err(m) => {
                    errors.push(FieldError::new("email", m));
                    None
                }
            }
        };
    }
    if let Some(raw) = &input.phone {
        changed.push("phone".to_string());
        plain.phone = if raw.trim().is_empty() {
            None
        } else {
            match PhoneNumber::parse(raw, region) {
                Ok(p) => Some(p),
                Err(m) => {
                    errors.push(FieldError::new("phone", m));
                    None
                }
            }
        };
    }
    for (field, value, target) in [
        ("first_name", &input.first_name, &mut plain.first_name),
        ("last_name", &input.last_name, &mut plain.last_name),
    ] {
        if let Some(raw) = value {
            changed.push(field.to_string());
            match parse_text(raw) {
                Ok(v) => *target = v,
                Err(m) => errors.push(FieldError::new(field, m)),
            }
        }
    }
    let (identifying, segment) = split_attributes(schema, &input.attributes, errors);
    for (map, target) in [(identifying, &mut plain.identifying), (segment, &mut plain.segment)] {
        for (k, v) in map {
            changed.push(format!("attributes.{k}"));
            match v {
                Some(v) => target.insert(k, v),
                None => target.remove(&k),
            };
        }
    }
    changed
}
