//! The audit log: what an event holds, how the per-workspace hash chain is computed,
//! how checkpoints are signed, and how a chain is verified. Storage lives in `store/`;
//! this module is pure so that verification can run offline over any copy.
//!
//! An event's hash is `SHA-256(prev_hash || canonical bytes)`, where the canonical
//! bytes are a fixed-order JSON rendering of every stored column except the hashes.
//! Checkpoints sign `(workspace, seq, hash, time)` with the workspace's Ed25519 key.

pub mod verify;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Hash of the event before the first one.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a caller asks to be recorded. It holds no personal data: subjects are
/// referred to by id, client IPs by keyed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    pub workspace_id: String,
    pub actor: String,
    pub action: &'static str,
    pub target: Option<String>,
    pub purpose: Option<String>,
    pub ip_hash: Option<String>,
    pub outcome: Outcome,
    pub details: serde_json::Value,
}

impl AuditDraft {
    pub fn new(workspace_id: &str, actor: &str, action: &'static str) -> Self {
        AuditDraft {
            workspace_id: workspace_id.to_string(),
            actor: actor.to_string(),
            action,
            target: None,
            purpose: None,
            ip_hash: None,
            outcome: Outcome::Success,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn purpose(mut self, purpose: Option<&str>) -> Self {
        self.purpose = purpose.map(str::to_string);
        self
    }

    pub fn ip_hash(mut self, ip_hash: Option<String>) -> Self {
        self.ip_hash = ip_hash;
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// How the audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

/// An event as stored, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub workspace_id: String,
    pub seq: i64,
    /// Microseconds since the Unix epoch.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub purpose: Option<String>,
    pub ip_hash: Option<String>,
    pub outcome: String,
    /// JSON text of the details, exactly as hashed.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Serialize)]
struct Canonical<'a> {
    v: u8,
    workspace_id: &'a str,
    seq: i64,
    at: i64,
    actor: &'a str,
    action: &'a str,
    target: Option<&'a str>,
    purpose: Option<&'a str>,
    ip_hash: Option<&'a str>,
    outcome: &'a str,
    details: &'a str,
}

impl AuditEvent {
    /// Builds the next event of a chain from a draft.
    pub fn chain(draft: &AuditDraft, seq: i64, at: i64, prev_hash: &str) -> AuditEvent {
        let mut event = AuditEvent {
            workspace_id: draft.workspace_id.clone(),
            seq,
            at,
            actor: draft.actor.clone(),
            action: draft.action.to_string(),
            target: draft.target.clone(),
            purpose: draft.purpose.clone(),
            ip_hash: draft.ip_hash.clone(),
            outcome: draft.outcome.as_str().to_string(),
            details: draft.details.to_string(),
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        event
    }

    /// The canonical bytes the hash covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let c = Canonical {
            v: 1,
            workspace_id: &self.workspace_id,
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            action: &self.action,
            target: self.target.as_deref(),
            purpose: self.purpose.as_deref(),
            ip_hash: self.ip_hash.as_deref(),
            outcome: &self.outcome,
            details: &self.details,
        };
        serde_json::to_vec(&c).unwrap_or_default()
    }

    /// `SHA-256(prev_hash || canonical bytes)`, hex.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(self.canonical_bytes());
        hex::encode(h.finalize())
    }
}

/// A signed statement that the chain of a workspace had `hash` at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    pub workspace_id: String,
    pub seq: i64,
    pub hash: String,
    pub at: i64,
    /// Ed25519 signature, hex.
    pub signature: String,
}

impl Checkpoint {
    pub fn message(workspace_id: &str, seq: i64, hash: &str, at: i64) -> Vec<u8> {
        format!("consentry:checkpoint:v1:{workspace_id}:{seq}:{hash}:{at}").into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_every_field() {
        let d = AuditDraft::new("ws", "key:1", "contact.created").target("contact:1");
        let e = AuditEvent::chain(&d, 1, 10, GENESIS_HASH);
        let mut altered = e.clone();
        altered.actor = "key:2".into();
        assert_ne!(altered.compute_hash(), e.hash);
        let mut moved = e.clone();
        moved.seq = 2;
        assert_ne!(moved.compute_hash(), e.hash);
        assert_eq!(e.compute_hash(), e.hash);
    }
}
