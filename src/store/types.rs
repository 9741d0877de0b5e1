//! Records exchanged with the store. Identifying values appear only sealed
//! (`*_ct`, opened by `crypto::ContactCipher`) or as blind indexes (`*_bidx`).

use crate::crypto::WrappedKey;
use crate::domain::AttributeClass;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A workspace to create, with its wrapped keys.
pub struct NewWorkspace {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub audit_public_key: Vec<u8>,
    pub keys: Vec<WrappedKey>,
}

/// A stored workspace.
#[derive(Clone)]
pub struct WorkspaceRecord {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub audit_public_key: Vec<u8>,
    pub keys: Vec<WrappedKey>,
}

/// A stored API key (only the hash of its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub scopes: Vec<String>,
    /// Lists the key is limited to; empty means all lists.
    pub list_ids: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// Addresses (CIDR blocks) the key may be used from; empty means any.
    pub allowlist: Vec<String>,
    /// The client address of the last use, sealed (see `vault::api_keys`).
    pub last_used_from: Option<Vec<u8>>,
}

/// Whether a user may sign in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserStatus {
    /// Invited; has not chosen a password yet.
    Invited,
    Active,
    /// Signs in no more; their keys were revoked when disabled.
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Invited => "invited",
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "invited" => Some(UserStatus::Invited),
            "active" => Some(UserStatus::Active),
            "disabled" => Some(UserStatus::Disabled),
            _ => None,
        }
    }
}

/// A stored user: the email address only sealed and as a blind index, the
/// password only as an Argon2id PHC string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: Uuid,
    pub workspace_id: String,
    pub email_bidx: Vec<u8>,
    /// The user's own key, sealed by the workspace's data-encryption key.
    pub user_key: Vec<u8>,
    pub email_ct: Vec<u8>,
    /// A role name or a comma-separated set of permissions (as for API keys).
    pub role: String,
    /// Lists the user is limited to; empty means all lists.
    pub list_ids: Vec<String>,
    pub password_hash: Option<String>,
    pub status: UserStatus,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Addresses (CIDR blocks) the user may sign in and work from; empty means any.
    pub allowlist: Vec<String>,
    /// The user must choose a new password before doing anything else.
    pub password_change_required: bool,
}

/// A single-use invitation (only a keyed hash of its token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvitationRecord {
    pub token_hash: Vec<u8>,
    pub workspace_id: String,
    pub user_id: Uuid,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A signed-in user's session (only the hash of its token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: Uuid,
    pub token_hash: Vec<u8>,
    pub workspace_id: String,
    pub user_id: Uuid,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// The absolute end, whatever the activity.
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    pub ip_hash: Option<String>,
    /// The user had a second factor at sign-in: the session is usable only once
    /// `factor_verified_at` is set.
    pub factor_required: bool,
    pub factor_verified_at: Option<i64>,
    /// The workspace requires a second factor and the user had none at sign-in:
    /// the session may only enrol one.
    pub enrolment_required: bool,
}

/// A user's TOTP authenticator (the seed only sealed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotpRecord {
    pub user_id: Uuid,
    pub workspace_id: String,
    pub secret_ct: Vec<u8>,
    pub created_at: i64,
    /// Set once the user proved the authenticator works; until then it is not a factor.
    pub confirmed_at: Option<i64>,
    /// The last time step whose code was accepted (each code works once).
    pub last_step: i64,
}

/// A user's WebAuthn passkey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: Uuid,
    pub workspace_id: String,
    pub user_id: Uuid,
    /// Keyed hash of the credential id: one credential, one user per workspace.
    pub credential_hash: Vec<u8>,
    /// The credential (public key, id, counter), sealed under the user's key.
    pub credential_ct: Vec<u8>,
    /// The name its user gave it, sealed under the user's key.
    pub name_ct: Vec<u8>,
    /// Assertions accepted so far (the compare-and-set token of `use_passkey`).
    pub uses: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// What a WebAuthn ceremony is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CeremonyKind {
    /// A signed-in user registers a passkey.
    Register,
    /// A session's second-factor check (completing a sign-in, or a step-up).
    Factor,
    /// A sign-in with a passkey alone.
    SignIn,
}

impl CeremonyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CeremonyKind::Register => "register",
            CeremonyKind::Factor => "factor",
            CeremonyKind::SignIn => "sign_in",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "register" => Some(CeremonyKind::Register),
            "factor" => Some(CeremonyKind::Factor),
            "sign_in" => Some(CeremonyKind::SignIn),
            _ => None,
        }
    }
}

/// A WebAuthn ceremony between its challenge and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeremonyRecord {
    pub id: Uuid,
    pub workspace_id: String,
    pub kind: CeremonyKind,
    /// The user it was started for (none for a sign-in with a passkey alone).
    pub user_id: Option<Uuid>,
    /// The session it was started with, which alone may answer it.
    pub session_id: Option<Uuid>,
    /// The verifier's state, sealed under a key bound to the ceremony's id.
    pub state_ct: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Failed sign-ins counted for one account or one client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignInFailures {
    pub failures: i64,
    pub first_at: i64,
    pub last_at: i64,
}

/// One attribute of a workspace schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttributeDef {
    pub name: String,
    pub class: AttributeClass,
}

/// Which contacts a caller can see: all, or only members of some lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListScope {
    All,
    Lists(Vec<String>),
}

impl ListScope {
    pub fn allows_list(&self, list_id: &str) -> bool {
        match self {
            ListScope::All => true,
            ListScope::Lists(ids) => ids.iter().any(|l| l == list_id),
        }
    }
}

/// Which identifier a blind index was computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentifierKind {
    Email,
    Phone,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
        }
    }
}

/// A contact as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactRow {
    pub id: Uuid,
    pub workspace_id: String,
    pub email_bidx: Option<Vec<u8>>,
    pub phone_bidx: Option<Vec<u8>>,
    pub contact_key: Vec<u8>,
    pub email_ct: Option<Vec<u8>>,
    pub phone_ct: Option<Vec<u8>>,
    pub first_name_ct: Option<Vec<u8>>,
    pub last_name_ct: Option<Vec<u8>>,
    pub attributes_ct: Option<Vec<u8>>,
    /// JSON object of segmentable attributes, in clear.
    pub segment_attributes: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A contact to create with its first consents and list memberships.
pub struct NewContact {
    pub row: ContactRow,
    pub consents: Vec<ConsentEventRow>,
    pub list_ids: Vec<String>,
}

/// One consent ledger event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentEventRow {
    pub id: Uuid,
    pub workspace_id: String,
    pub contact_id: Uuid,
    pub channel: String,
    pub purpose: String,
    pub action: String,
    pub method: String,
    pub source: String,
    /// JSON object of non-personal evidence (job id, file hash, notice version).
    pub evidence: String,
    /// Sealed JSON of personal evidence (IP address, user agent).
    pub private_evidence_ct: Option<Vec<u8>>,
    pub actor: String,
    pub occurred_at: i64,
    pub recorded_at: i64,
    /// Sequence of the audit event that recorded it; filled in by the store.
    pub audit_seq: i64,
}

/// A list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRecord {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub created_at: i64,
    /// Live members; counted by `list_lists` only (`find_list` is on the
    /// import, export and paging paths, where a count of a large list costs).
    pub member_count: Option<u64>,
}

/// State of an import job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    Running,
    Finished,
    Failed,
}

impl ImportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportStatus::Running => "running",
            ImportStatus::Finished => "finished",
            ImportStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "finished" => ImportStatus::Finished,
            "failed" => ImportStatus::Failed,
            _ => ImportStatus::Running,
        }
    }
}

/// Counts of an import (or of one batch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportCounts {
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub suppressed: u64,
    pub rejected: u64,
}

impl ImportCounts {
    pub fn add(&mut self, other: &ImportCounts) {
        self.read += other.read;
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.suppressed += other.suppressed;
        self.rejected += other.rejected;
    }
}

/// An import job and its progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportJob {
    pub id: String,
    pub workspace_id: String,
    pub file_hash: String,
    pub options_hash: String,
    pub uploader: String,
    pub list_id: String,
    pub source: Option<String>,
    pub status: ImportStatus,
    /// Data rows already committed; a resumed run skips them.
    pub rows_done: u64,
    pub counts: ImportCounts,
    pub error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// One rejected cell of an import; never repeats the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportRejection {
    /// Line of the data row in the file (the header is row 1).
    pub row: u64,
    pub column: String,
    pub reason: String,
}

/// Identifiers of one import batch, to look up before planning.
#[derive(Clone, Default)]
pub struct BatchLookup {
    pub email_bidx: Vec<Vec<u8>>,
    pub phone_bidx: Vec<Vec<u8>>,
    /// The list the import adds to, so membership can be reported.
    pub list_id: String,
    /// Data rows of the file before this batch: the job's progress the batch
    /// expects to find. A batch that finds another is refused, so batches apply
    /// strictly in file order and the progress never counts a row not written.
    pub first_row: u64,
    /// The import's identifier filter, if it has one: identifiers it reports
    /// absent need no look-up while its checks of the audit chain hold.
    pub filter: Option<std::sync::Arc<super::identifiers::IdentifierFilter>>,
}

/// A batch's look-up made ahead of its turn, in a snapshot of its own, with the
/// head of the workspace's audit chain in that snapshot (see `store::recent`).
pub struct BatchPrefetch {
    pub found: BatchFound,
    pub audit_head: i64,
    /// Ids of the contacts found (kept when `found` went into a plan made ahead).
    pub found_contacts: Vec<uuid::Uuid>,
    /// The writes planned ahead on `found` (`BatchPrefetch::plan_ahead`).
    pub planned: Option<anyhow::Result<BatchWrites>>,
}

/// What exists for a batch: live contacts matching any identifier, their consent
/// state and membership in the import's list, and suppressed identifiers.
#[derive(Default)]
pub struct BatchFound {
    pub contacts: Vec<ExistingContact>,
    pub suppressed: Vec<Vec<u8>>,
}

/// A live contact found for an import batch.
pub struct ExistingContact {
    pub row: ContactRow,
    pub in_list: bool,
    /// `(channel, purpose, action)` of the current consent state.
    pub consent: Vec<(String, String, String)>,
}

/// The writes of one import batch.
pub struct BatchWrites {
    pub inserts: Vec<ContactRow>,
    pub updates: Vec<ContactRow>,
    pub memberships: Vec<Uuid>,
    /// Consent events; the store sets their `audit_seq` to the batch's event.
    pub consents: Vec<ConsentEventRow>,
    pub rejections: Vec<ImportRejection>,
    pub counts: ImportCounts,
    /// Data rows this batch covers (added to the job's `rows_done`).
    pub rows: u64,
    pub audit: crate::audit::AuditDraft,
    pub at: i64,
}

/// A completed export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRecord {
    pub id: String,
    pub workspace_id: String,
    pub actor: String,
    pub purpose: String,
    pub list_id: String,
    pub format: String,
    pub row_count: u64,
    pub created_at: i64,
}

/// Whose address allowlist a change is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowlistSubject {
    Workspace,
    User(Uuid),
    Key(String),
}

/// A custom role: a named set of permissions of one workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleRecord {
    pub workspace_id: String,
    /// Lowercase letters, digits and hyphens; never a built-in role's name.
    pub name: String,
    /// Permission names (`contacts:read`, ...).
    pub permissions: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}
