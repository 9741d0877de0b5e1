//! The consent ledger services: record a grant, withdrawal or objection (append-only),
//! read the ledger with the current state, and build a self-contained proof that ties
//! each event to its audit event, hash and the latest signed checkpoint.

use super::contacts::ContactPlain;
use super::{FieldError, Vault, VaultError, VaultResult};
use crate::access::{Permission, Principal, ReadMode};
use crate::audit::{AuditDraft, AuditEvent, Checkpoint};
use crate::clock::{parse_timestamp, rfc3339};
use crate::crypto::{ContactCipher, FieldName};
use crate::domain::consent::parse_source;
use crate::domain::mask::mask_text;
use crate::domain::{Channel, ConsentAction, ConsentMethod, Purpose};
use crate::store::{ConsentEventRow, ContactRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A consent to record.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    pub channel: Channel,
    /// What the consent is for; `marketing` when left out.
    pub purpose: Option<String>,
    /// `granted` when left out.
    pub action: Option<ConsentAction>,
    /// `api` when left out.
    pub method: Option<ConsentMethod>,
    /// Where and how the consent was obtained (required).
    pub source: String,
    /// When it was given (RFC 3339); now when left out.
    pub occurred_at: Option<String>,
    /// IP address the consent came from (stored encrypted).
    pub ip: Option<String>,
    /// User agent the consent came from (stored encrypted).
    pub user_agent: Option<String>,
    /// Version of the privacy notice shown.
    pub notice_version: Option<String>,
}

/// One ledger event as returned.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsentEventView {
    pub id: Uuid,
    pub contact_id: Uuid,
    pub channel: String,
    pub purpose: String,
    pub action: String,
    pub method: String,
    pub source: String,
    /// Non-personal evidence (import job, file hash, notice version, ...).
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    /// IP address of the consent, masked unless unmasking was allowed.
    pub ip: Option<String>,
    /// User agent of the consent, masked unless unmasking was allowed.
    pub user_agent: Option<String>,
    pub actor: String,
    pub occurred_at: String,
    pub recorded_at: String,
    /// Sequence number of the audit event that recorded it.
    pub audit_seq: i64,
}

/// Current state for one channel and purpose.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsentState {
    pub channel: String,
    pub purpose: String,
    pub action: String,
    pub since: String,
    pub event_id: Uuid,
}

/// The ledger of a contact and its derived state.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsentLedger {
    pub contact_id: Uuid,
    pub events: Vec<ConsentEventView>,
    pub state: Vec<ConsentState>,
}

/// A self-contained consent proof: the events, the audit events that recorded them
/// (whose hashes can be recomputed from their fields), the latest signed checkpoint
/// and the key to check it with.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsentProof {
    pub workspace_id: String,
    pub contact_id: Uuid,
    pub generated_at: String,
    pub events: Vec<ConsentEventView>,
    pub audit_events: Vec<AuditEvent>,
    pub checkpoint: Option<Checkpoint>,
    /// Ed25519 public key (hex) that signs the workspace's checkpoints.
    pub audit_public_key: String,
    /// How to check this proof.
    pub how_to_verify: String,
}

#[derive(Serialize, Deserialize)]
struct PrivateEvidence {
    ip: Option<String>,
    user_agent: Option<String>,
}

impl Vault {
    /// Builds a ledger row from input for a contact (used on create and append).
    pub(crate) fn consent_row(
        &self,
        p: &Principal,
        cipher: &ContactCipher,
        plain: &ContactPlain,
        contact_id: Uuid,
        input: &ConsentInput,
        field: &str,
    ) -> VaultResult<ConsentEventRow> {
        let mut errors = Vec::new();
        let source = parse_source(&input.source)
            .map_err(|m| errors.push(FieldError::new(&format!("{field}.source"), m)))
            .ok();
        let purpose = match input.purpose.as_deref().map(Purpose::parse).transpose() {
            Ok(p) => p.unwrap_or_else(Purpose::marketing),
            Err(m) => {
                errors.push(FieldError::new(&format!("{field}.purpose"), m));
                Purpose::marketing()
            }
        };
        let has_identifier = if input.channel.uses_phone() {
            plain.phone.is_some()
        } else {
            plain.email.is_some()
        };
        if !has_identifier {
            errors.push(FieldError::new(
                &format!("{field}.channel"),
                format!(
                    "the contact has no {} for the {} channel",
                    if input.channel.uses_phone() { "phone" } else { "email" },
                    input.channel
                ),
            ));
        }
        let now = self.now();
        let occurred_at = match input.occurred_at.as_deref() {
            None => now,
            Some(raw) => parse_timestamp(raw).unwrap_or_else(|| {
                errors.push(FieldError::new(&format!("{field}.occurred_at"), "not an RFC 3339 timestamp"));
                now
            }),
        };
        if occurred_at > now + 300_000_000 {
            errors.push(FieldError::new(&format!("{field}.occurred_at"), "is in the future"));
        }
        if let Some(ip) = &input.ip {
            if ip.parse::<std::net::IpAddr>().is_err() {
                errors.push(FieldError::new(&format!("{field}.ip"), "not an IP address"));
            }
        }
        if input.user_agent.as_ref().is_some_and(|u| u.len() > 1000) || input.notice_version.as_ref().is_some_and(|n| n.len() > 200) {
            errors.push(FieldError::new(field, "user_agent or notice_version is too long"));
        }
        let Some(source) = source.filter(|_| errors.is_empty()) else {
            return Err(VaultError::Invalid(errors));
        };
        let id = Uuid::now_v7();
        let private_evidence_ct = if input.ip.is_some() || input.user_agent.is_some() {
            let json = serde_json::to_vec(&PrivateEvidence {
                ip: input.ip.clone(),
                user_agent: input.user_agent.clone(),
            })
            .map_err(|e| VaultError::Internal(e.into()))?;
            Some(cipher.seal(FieldName::ConsentEvidence(&id.to_string()), &json)?)
        } else {
            None
        };
        let mut evidence = serde_json::Map::new();
        if let Some(n) = &input.notice_version {
            evidence.insert("notice_version".into(), n.clone().into());
        }
        Ok(ConsentEventRow {
            id,
            workspace_id: p.workspace_id.clone(),
            contact_id,
            channel: input.channel.as_str().into(),
            purpose: purpose.as_str().into(),
            action: input.action.unwrap_or(ConsentAction::Granted).as_str().into(),
            method: input.method.unwrap_or(ConsentMethod::Api).as_str().into(),
            source,
            evidence: serde_json::Value::Object(evidence).to_string(),
            private_evidence_ct,
            actor: p.actor.clone(),
            occurred_at,
            recorded_at: now,
            audit_seq: 0,
        })
    }

    async fn contact_for_consent(&self, p: &Principal, id: Uuid) -> VaultResult<(ContactRow, ContactCipher, ContactPlain)> {
        let keys = self.keys(&p.workspace_id).await?;
        let row = self
            .store
            .find_contact(&p.workspace_id, id, &p.lists)
            .await?
            .ok_or(VaultError::NotFound("contact"))?;
        let plain = self.open_for(p, &keys, &row).await?;
        let cipher = ContactCipher::open(&keys, *row.id.as_bytes(), &row.contact_key)?;
        Ok((row, cipher, plain))
    }

    /// Appends a consent event; a withdrawal or objection suppresses the address.
    pub async fn record_consent(&self, p: &Principal, id: Uuid, input: ConsentInput) -> VaultResult<ConsentEventView> {
        p.require(Permission::ContactsWrite)?;
        let (row, cipher, plain) = self.contact_for_consent(p, id).await?;
        let event = self.consent_row(p, &cipher, &plain, id, &input, "consent")?;
        let suppress = if ConsentAction::parse(&event.action).is_some_and(ConsentAction::suppresses) {
            let b = if input.channel.uses_phone() {
                row.phone_bidx.clone()
            } else {
                row.email_bidx.clone()
            };
            b.into_iter().collect()
        } else {
            Vec::new()
        };
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "consent.recorded")
            .target(format!("contact:{id}"))
            .ip_hash(p.ip_hash.clone())
            .details(serde_json::json!({
                "event": event.id, "channel": event.channel, "purpose": event.purpose,
                "action": event.action, "method": event.method,
            }));
        let audit = self.store.append_consent(event.clone(), suppress, draft).await?;
        let stored = ConsentEventRow {
            audit_seq: audit.seq,
            ..event
        };
        Ok(event_view(&cipher, &stored, &ReadMode::Masked))
    }

    /// The ledger and the current state of a contact.
    pub async fn consent_ledger(&self, p: &Principal, id: Uuid, mode: &ReadMode) -> VaultResult<ConsentLedger> {
        p.require_contact_read()?;
        let (_, cipher, _) = self.contact_for_consent(p, id).await?;
        let rows = self.store.list_consents(&p.workspace_id, id).await?;
        self.audit_read(p, mode, "consent.read_unmasked", &[id]).await?;
        let mut events: Vec<ConsentEventView> = rows.iter().map(|r| event_view(&cipher, r, mode)).collect();
        // Imported consents name their job; show what the job proves (file hash,
        // uploader, time) beside them.
        let mut jobs: std::collections::HashMap<String, Option<crate::store::ImportJob>> = Default::default();
        for e in &mut events {
            let Some(import_id) = e.evidence.get("import").and_then(|v| v.as_str()).map(str::to_string) else {
                continue;
            };
            if !jobs.contains_key(&import_id) {
                let job = self.store.find_import(&p.workspace_id, &import_id).await?;
                jobs.insert(import_id.clone(), job);
            }
            if let (Some(Some(job)), Some(obj)) = (jobs.get(&import_id), e.evidence.as_object_mut()) {
                obj.insert("file_sha256".into(), job.file_hash.clone().into());
                obj.insert("uploader".into(), job.uploader.clone().into());
                obj.insert("imported_at".into(), rfc3339(job.created_at).into());
            }
        }
        let mut state: Vec<ConsentState> = Vec::new();
        for e in &events {
            let s = ConsentState {
                channel: e.channel.clone(),
                purpose: e.purpose.clone(),
                action: e.action.clone(),
                since: e.occurred_at.clone(),
                event_id: e.id,
            };
            match state.iter_mut().find(|x| x.channel == e.channel && x.purpose == e.purpose) {
                Some(x) => *x = s,
                None => state.push(s),
            }
        }
        Ok(ConsentLedger {
            contact_id: id,
            events,
            state,
        })
    }

    /// A self-contained consent proof.
    pub async fn consent_proof(&self, p: &Principal, id: Uuid, mode: &ReadMode) -> VaultResult<ConsentProof> {
        let ledger = self.consent_ledger(p, id, mode).await?;
        let keys = self.keys(&p.workspace_id).await?;
        let mut seqs: Vec<i64> = ledger.events.iter().map(|e| e.audit_seq).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let audit_events = self.store.find_audit(&p.workspace_id, seqs.clone()).await?;
        let max_seq = seqs.last().copied().unwrap_or(0);
        let checkpoint = self
            .store
            .list_checkpoints(&p.workspace_id)
            .await?
            .into_iter()
            .find(|c| c.seq >= max_seq);
        Ok(ConsentProof {
            workspace_id: p.workspace_id.clone(),
            contact_id: id,
            generated_at: rfc3339(self.now()),
            events: ledger.events,
            audit_events,
            checkpoint,
            audit_public_key: hex::encode(keys.audit_public_key()),
            how_to_verify: "each audit event's hash is SHA-256 of prev_hash followed by its canonical JSON; \
                `consentry audit verify` recomputes the chain up to the signed checkpoint, whose Ed25519 signature \
                covers 'consentry:checkpoint:v1:{workspace}:{seq}:{hash}:{at}'"
                .into(),
        })
    }
}

fn event_view(cipher: &ContactCipher, r: &ConsentEventRow, mode: &ReadMode) -> ConsentEventView {
    let private = r.private_evidence_ct.as_ref().and_then(|ct| {
        let bytes = cipher.open_field(FieldName::ConsentEvidence(&r.id.to_string()), ct).ok()?;
        serde_json::from_slice::<PrivateEvidence>(&bytes).ok()
    });
    let (ip, user_agent) = match (private, mode) {
        (Some(p), ReadMode::Unmasked { .. }) => (p.ip, p.user_agent),
        (Some(p), ReadMode::Masked) => (p.ip.map(|_| "•••".to_string()), p.user_agent.map(|u| mask_text(&u))),
        (None, _) => (None, None),
    };
    ConsentEventView {
        id: r.id,
        contact_id: r.contact_id,
        channel: r.channel.clone(),
        purpose: r.purpose.clone(),
        action: r.action.clone(),
        method: r.method.clone(),
        source: r.source.clone(),
        evidence: serde_json::from_str(&r.evidence).unwrap_or(serde_json::Value::Null),
        ip,
        user_agent,
        actor: r.actor.clone(),
        occurred_at: rfc3339(r.occurred_at),
        recorded_at: rfc3339(r.recorded_at),
        audit_seq: r.audit_seq,
    }
}
