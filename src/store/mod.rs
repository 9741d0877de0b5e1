//! The `Store` trait: use-case-sized operations, each one transaction with its audit
//! row inside, over records that hold only ciphertext, blind indexes and non-personal
//! values. Backends live in sub-folders (`sqlite/`, `postgres/`) and pass
//! the same conformance suite. Nothing here knows about HTTP or crypto keys.

pub mod identifiers;
pub mod postgres;
pub mod recent;
pub mod sqlite;
mod types;

pub use types::*;

/// What a damaged stored list (scopes, lists, allowlist) reads as: one entry
/// that names no permission, no list and no address, so that damage narrows
/// what a key or a workspace may do (never "every list" or "any address").
pub const UNREADABLE: &str = "(unreadable)";

/// A stored JSON list of strings; a damaged one reads as `[UNREADABLE]`.
pub(crate) fn stored_strings(raw: &str, what: &str) -> Vec<String> {
    serde_json::from_str(raw).unwrap_or_else(|_| {
        tracing::warn!(what, "a stored list does not parse; it is read as allowing nothing");
        vec![UNREADABLE.to_string()]
    })
}

use crate::audit::{AuditDraft, AuditEvent, Checkpoint};
use async_trait::async_trait;
use thiserror::Error;
use uuid::Uuid;

/// Errors every backend maps its failures to, the same on all of them.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The row asked for does not exist (or is outside the caller's scope).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was broken; the payload names the field.
    #[error("{field} already exists")]
    Conflict { field: &'static str },
    /// The job is no longer running (finished or failed): it takes no more work.
    #[error("the {0} has already ended")]
    Ended(&'static str),
    /// The audit event could not be written, so the change was not made.
    #[error("the audit log could not be written")]
    AuditUnavailable(#[source] anyhow::Error),
    /// The store is not reachable or failed internally.
    #[error("storage failure")]
    Backend(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The SQL condition (both dialects) that limits contacts to members of the
/// scope's lists; empty for `ListScope::All`. List ids are quoted as literals.
pub(crate) fn scope_clause(scope: &ListScope, contact_col: &str) -> String {
    match scope {
        ListScope::All => String::new(),
        ListScope::Lists(ids) if ids.is_empty() => " AND FALSE".into(),
        ListScope::Lists(ids) => {
            let quoted: Vec<String> = ids.iter().map(|i| format!("'{}'", i.replace('\'', "''"))).collect();
            format!(
                " AND EXISTS (SELECT 1 FROM list_members m WHERE m.contact_id = {contact_col} AND m.list_id IN ({}))",
                quoted.join(",")
            )
        }
    }
}

/// How many of a workspace's newest audit events `Store::recent_audit` looks at.
pub const RECENT_AUDIT_SCAN: i64 = 100_000;

/// The current consent state, `(channel, purpose, action)` of the newest of a
/// contact's ledger events (given oldest first) for each channel and purpose.
pub(crate) fn current_consent(events: Vec<(String, String, String)>) -> Vec<(String, String, String)> {
    let mut state: Vec<(String, String, String)> = Vec::new();
    for (channel, purpose, action) in events {
        match state.iter_mut().find(|(c, p, _)| *c == channel && *p == purpose) {
            Some(entry) => entry.2 = action,
            None => state.push((channel, purpose, action)),
        }
    }
    state
}

/// Wall-clock time in microseconds since the Unix epoch, as stored.
pub fn now_micros() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

type PlanFn = Box<dyn FnMut(BatchFound) -> anyhow::Result<BatchWrites> + Send>;

/// Import planning: given what exists for a batch's identifiers, decide the
/// writes. A batch may be planned ahead of its turn on a look-up made ahead
/// (`BatchPrefetch::plan_ahead`) and planned again at its turn when that look-up
/// no longer holds. The store tells the planner when the batch has its turn
/// (`start`), which lets the importer hand over the next batch.
pub struct ImportPlanner {
    plan: PlanFn,
    on_start: Option<Box<dyn FnOnce() + Send>>,
}

impl ImportPlanner {
    pub fn new(plan: impl FnMut(BatchFound) -> anyhow::Result<BatchWrites> + Send + 'static) -> Self {
        ImportPlanner {
            plan: Box::new(plan),
            on_start: None,
        }
    }

    /// Called once, when the batch has its turn at the store.
    pub fn on_start(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_start = Some(Box::new(f));
        self
    }

    /// The batch has its turn.
    pub fn start(&mut self) {
        if let Some(f) = self.on_start.take() {
            f();
        }
    }

    /// Plans the batch at its turn.
    pub fn plan(&mut self, found: BatchFound) -> anyhow::Result<BatchWrites> {
        self.start();
        (self.plan)(found)
    }
}

impl BatchPrefetch {
    /// Plans the batch on this look-up ahead of its turn; the store uses the plan
    /// if the look-up still holds then. A plan that failed is made again at the
    /// batch's turn, on a look-up made then.
    pub fn plan_ahead(&mut self, planner: &mut ImportPlanner) {
        self.planned = Some((planner.plan)(std::mem::take(&mut self.found)));
    }

    /// The writes for the batch at its turn, once the store has checked that this
    /// look-up still holds: the plan made ahead, or one made now on the look-up.
    /// `None` when the plan made ahead failed: the batch is looked up again.
    pub fn writes_at_turn(self, planner: &mut ImportPlanner) -> Option<anyhow::Result<BatchWrites>> {
        match self.planned {
            Some(Ok(writes)) => {
                planner.start();
                Some(Ok(writes))
            }
            Some(Err(_)) => None,
            None => Some(planner.plan(self.found)),
        }
    }
}

/// The storage of the vault. Every write that touches personal data or security
/// takes its `AuditDraft` and commits it in the same transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short name of the backend, e.g. `sqlite`.
    fn backend(&self) -> &'static str;

    /// Whether the store answers (readiness).
    async fn ping(&self) -> StoreResult<()>;

    // Workspaces

    async fn create_workspace(&self, ws: NewWorkspace, audit: AuditDraft) -> StoreResult<()>;
    async fn list_workspaces(&self) -> StoreResult<Vec<WorkspaceRecord>>;

    // API keys

    async fn create_api_key(&self, key: ApiKeyRecord, audit: AuditDraft) -> StoreResult<()>;
    async fn find_api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// The key and its workspace's address allowlist (as `workspace_allowlist`
    /// reads it), in one statement: every request made with a key needs both.
    async fn find_api_key_with_allowlist(&self, id: &str) -> StoreResult<Option<(ApiKeyRecord, Vec<String>)>>;
    async fn list_api_keys(&self, workspace_id: &str) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revokes a key of the workspace; `NotFound` when it has no such key.
    /// Revokes a key with its audit event; `false` (and no event) when it was
    /// already revoked.
    async fn revoke_api_key(&self, workspace_id: &str, id: &str, at: i64, audit: AuditDraft) -> StoreResult<bool>;
    /// Rotates a live key: stores `new_key` and makes the old one expire at
    /// `old_expires_at` (or sooner, if it expired sooner anyway), with one event.
    /// `NotFound` when the old key is not in the workspace, revoked or expired.
    async fn rotate_api_key(
        &self,
        workspace_id: &str,
        old_id: &str,
        new_key: ApiKeyRecord,
        old_expires_at: i64,
        audit: AuditDraft,
    ) -> StoreResult<()>;
    /// Rotates several live keys at once (each `(old id, successor)`), every old
    /// key expiring at `old_expires_at` or sooner, with one event; `NotFound`
    /// (and nothing changed) when any old key is not live in the workspace.
    async fn rotate_api_keys(
        &self,
        workspace_id: &str,
        rotations: Vec<(String, ApiKeyRecord)>,
        old_expires_at: i64,
        audit: AuditDraft,
    ) -> StoreResult<()>;
    /// Records a key's last use and, when given, the sealed client address of
    /// it (best effort, not audited).
    async fn touch_api_key(&self, id: &str, at: i64, from: Option<Vec<u8>>) -> StoreResult<()>;

    // Users

    /// Creates an invited user with their invitation; `Conflict("email")` when
    /// the address already has a user.
    async fn create_user(&self, user: UserRecord, invitation: InvitationRecord, audit: AuditDraft) -> StoreResult<()>;
    async fn find_user(&self, workspace_id: &str, id: Uuid) -> StoreResult<Option<UserRecord>>;
    async fn find_user_by_email(&self, workspace_id: &str, email_bidx: &[u8]) -> StoreResult<Option<UserRecord>>;
    /// A workspace's users, oldest first.
    async fn list_users(&self, workspace_id: &str) -> StoreResult<Vec<UserRecord>>;
    /// An invitation by the keyed hash of its token, in any workspace.
    async fn find_invitation(&self, token_hash: &[u8]) -> StoreResult<Option<InvitationRecord>>;
    /// Uses an invitation once: sets the user's password and makes them active.
    /// `Ended("invitation")` when it was used, has expired, or its user is no
    /// longer invited.
    async fn accept_invitation(&self, token_hash: &[u8], password_hash: String, at: i64, audit: AuditDraft) -> StoreResult<()>;
    /// Disables or re-enables a user; disabling revokes every API key they
    /// created, in the same transaction. `false` (and no event) when the user
    /// already had that status.
    async fn set_user_status(&self, workspace_id: &str, id: Uuid, status: UserStatus, at: i64, audit: AuditDraft) -> StoreResult<bool>;
    /// Deletes a user, their invitations and their sealed email address, and
    /// revokes every API key they created.
    async fn remove_user(&self, workspace_id: &str, id: Uuid, at: i64, audit: AuditDraft) -> StoreResult<()>;

    /// Sets a new password hash chosen by the user and ends all their sessions.
    async fn change_password(
        &self,
        workspace_id: &str,
        user_id: Uuid,
        password_hash: String,
        at: i64,
        audit: AuditDraft,
    ) -> StoreResult<()>;
    /// "Reset all passwords": every user who has a password must choose a new
    /// one at their next sign-in, and every session of the workspace ends, with
    /// one event. Returns how many users were marked.
    async fn require_password_changes(&self, workspace_id: &str, at: i64, audit: AuditDraft) -> StoreResult<u64>;
    /// Replaces a user's password hash (a rehash with today's costs at sign-in).
    async fn update_password_hash(&self, workspace_id: &str, user_id: Uuid, password_hash: String, at: i64) -> StoreResult<()>;

    // Sessions

    async fn create_session(&self, session: SessionRecord, audit: AuditDraft) -> StoreResult<()>;
    /// A session by the hash of its token, with its user, in any workspace.
    async fn find_session(&self, token_hash: &[u8]) -> StoreResult<Option<(SessionRecord, UserRecord)>>;
    /// Records activity (best effort, not audited).
    async fn touch_session(&self, id: Uuid, at: i64) -> StoreResult<()>;
    /// A user's sessions that have not ended, newest first.
    async fn list_sessions(&self, workspace_id: &str, user_id: Uuid) -> StoreResult<Vec<SessionRecord>>;
    /// Ends one of a user's sessions; `false` (and no event) when it had ended.
    async fn end_session(&self, workspace_id: &str, user_id: Uuid, id: Uuid, at: i64, audit: AuditDraft) -> StoreResult<bool>;

    /// Marks a live session's second factor as checked at `at` (at sign-in or
    /// as a step-up) and gives the session a new token (by its hash): a
    /// privilege change. `Ended("session")` when the session has ended.
    async fn verify_session_factor(&self, session_id: Uuid, new_token_hash: Vec<u8>, at: i64, audit: AuditDraft) -> StoreResult<()>;
    /// Counts a wrong second-factor code for a session, with its event, and ends
    /// the session at the `limit`-th; returns whether it ended.
    async fn fail_session_factor(&self, session_id: Uuid, limit: i64, at: i64, audit: AuditDraft) -> StoreResult<bool>;

    // Second factors

    /// Stores a new, unconfirmed TOTP seed for a user (replacing an unconfirmed
    /// one); `Conflict("second factor")` when a confirmed one exists.
    async fn start_totp(&self, totp: TotpRecord, audit: AuditDraft) -> StoreResult<()>;
    async fn find_totp(&self, workspace_id: &str, user_id: Uuid) -> StoreResult<Option<TotpRecord>>;
    /// Confirms the pending TOTP with the step of a code that matched, replaces
    /// the recovery codes, and ends all the user's sessions (a factor change).
    /// `Ended("enrolment")` when none is pending.
    async fn confirm_totp(
        &self,
        workspace_id: &str,
        user_id: Uuid,
        step: i64,
        recovery_hashes: Vec<Vec<u8>>,
        at: i64,
        audit: AuditDraft,
    ) -> StoreResult<()>;
    /// Uses one time step of a confirmed TOTP: `false` when that step or a later
    /// one was used already (each code works once).
    async fn use_totp_step(&self, workspace_id: &str, user_id: Uuid, step: i64) -> StoreResult<bool>;
    /// Uses a recovery code once: `false` when unknown or used.
    async fn use_recovery_code(&self, workspace_id: &str, user_id: Uuid, code_hash: &[u8], at: i64) -> StoreResult<bool>;
    /// Removes a user's second factors (authenticator app, passkeys) and
    /// recovery codes and ends their sessions; `false` (and no event) when they
    /// had none.
    async fn remove_second_factors(&self, workspace_id: &str, user_id: Uuid, at: i64, audit: AuditDraft) -> StoreResult<bool>;

    /// Stores a user's new passkey and ends all their sessions (a factor
    /// change); with `recovery_hashes`, also replaces their recovery codes.
    /// `NotFound("user")` for a user not in the workspace; `Conflict("passkey")`
    /// when the workspace has the credential already; `Conflict("passkeys")` when
    /// the user holds `limit` passkeys already (counted in the same transaction,
    /// so registrations finishing together never pass it).
    async fn add_passkey(
        &self,
        passkey: PasskeyRecord,
        recovery_hashes: Option<Vec<Vec<u8>>>,
        limit: usize,
        audit: AuditDraft,
    ) -> StoreResult<()>;
    /// A user's passkeys, oldest first.
    async fn list_passkeys(&self, workspace_id: &str, user_id: Uuid) -> StoreResult<Vec<PasskeyRecord>>;
    /// Records an accepted assertion: the sealed credential with its new
    /// signature counter, only if the passkey's `uses` is still `expected_uses`
    /// (it becomes `expected_uses + 1`), so that of two uses racing one fails.
    /// Returns whether it was recorded.
    async fn use_passkey(&self, workspace_id: &str, id: Uuid, expected_uses: i64, credential_ct: Vec<u8>, at: i64) -> StoreResult<bool>;
    /// Removes one of a user's passkeys and ends their sessions; `false` (and
    /// no event) when they had no such passkey.
    async fn remove_passkey(&self, workspace_id: &str, user_id: Uuid, id: Uuid, at: i64, audit: AuditDraft) -> StoreResult<bool>;

    /// Stores a ceremony's state (and drops expired ones).
    async fn create_ceremony(&self, ceremony: CeremonyRecord) -> StoreResult<()>;
    /// Takes (deletes and returns) a ceremony of this kind that has not
    /// expired at `at`: each is answered once.
    async fn take_ceremony(&self, id: Uuid, kind: CeremonyKind, at: i64) -> StoreResult<Option<CeremonyRecord>>;

    /// Whether the workspace requires a second factor of every user.
    async fn second_factor_required(&self, workspace_id: &str) -> StoreResult<bool>;
    /// Sets that requirement; `false` (and no event) when it was so already.
    async fn set_second_factor_required(&self, workspace_id: &str, required: bool, at: i64, audit: AuditDraft) -> StoreResult<bool>;

    // Custom roles

    /// A workspace's custom roles, by name.
    async fn list_roles(&self, workspace_id: &str) -> StoreResult<Vec<RoleRecord>>;
    /// `Conflict("role name")` when the workspace has a role of that name.
    async fn create_role(&self, role: RoleRecord, audit: AuditDraft) -> StoreResult<()>;
    /// Replaces a role's permissions and ends every session of the users who
    /// hold it (a role change); `NotFound("role")` when there is no such role.
    async fn update_role(&self, workspace_id: &str, name: &str, permissions: Vec<String>, at: i64, audit: AuditDraft) -> StoreResult<()>;
    /// `NotFound("role")`, or `Conflict("role in use")` while a user holds it.
    async fn delete_role(&self, workspace_id: &str, name: &str, audit: AuditDraft) -> StoreResult<()>;
    /// Gives a user another role and lists, and ends all their sessions (a
    /// privilege change); `NotFound("user")` when not the workspace's.
    async fn set_user_role(
        &self,
        workspace_id: &str,
        user_id: Uuid,
        role: String,
        list_ids: Vec<String>,
        at: i64,
        audit: AuditDraft,
    ) -> StoreResult<()>;

    // Address allowlists

    /// The workspace's allowlist (canonical CIDR blocks; empty: any address).
    async fn workspace_allowlist(&self, workspace_id: &str) -> StoreResult<Vec<String>>;
    /// Replaces the allowlist of the workspace, one of its users or one of its
    /// keys; `NotFound` when the user or key is not the workspace's, `false` (and
    /// no event) when the list was this already.
    async fn set_allowlist(
        &self,
        workspace_id: &str,
        subject: AllowlistSubject,
        entries: Vec<String>,
        at: i64,
        audit: AuditDraft,
    ) -> StoreResult<bool>;

    // Sign-in throttling (shared by every server on the store)

    /// Failed sign-ins counted under `scope` (`account` or `address`; also
    /// `passkey_challenge`, sign-in challenges asked for) and `key`.
    async fn sign_in_failures(&self, workspace_id: &str, scope: &str, key: &[u8]) -> StoreResult<Option<SignInFailures>>;
    /// Counts a failed sign-in; a count whose first failure is older than
    /// `window` starts over. Returns the count after it.
    async fn record_sign_in_failure(
        &self,
        workspace_id: &str,
        scope: &str,
        key: &[u8],
        at: i64,
        window: i64,
    ) -> StoreResult<SignInFailures>;
    /// Forgets the failures of a key (after a successful sign-in).
    async fn clear_sign_in_failures(&self, workspace_id: &str, scope: &str, key: &[u8]) -> StoreResult<()>;

    // Attribute schema

    async fn list_attributes(&self, workspace_id: &str) -> StoreResult<Vec<AttributeDef>>;
    async fn create_attributes(&self, workspace_id: &str, defs: Vec<AttributeDef>, at: i64, audit: AuditDraft) -> StoreResult<()>;

    // Contacts

    async fn create_contact(&self, new: NewContact, audit: AuditDraft) -> StoreResult<AuditEvent>;
    async fn find_contact(&self, workspace_id: &str, id: Uuid, scope: &ListScope) -> StoreResult<Option<ContactRow>>;
    async fn find_contact_by_bidx(
        &self,
        workspace_id: &str,
        kind: IdentifierKind,
        bidx: &[u8],
        scope: &ListScope,
    ) -> StoreResult<Option<ContactRow>>;
    /// Replaces a contact's sealed fields and segmentable attributes.
    async fn update_contact(&self, row: ContactRow, audit: AuditDraft) -> StoreResult<()>;
    /// Soft-deletes: the row stays sealed but leaves every index and list.
    async fn delete_contact(&self, workspace_id: &str, id: Uuid, at: i64, audit: AuditDraft) -> StoreResult<()>;
    /// One page of live contacts in id order after `after`, optionally of one list.
    async fn list_contacts(
        &self,
        workspace_id: &str,
        list_id: Option<&str>,
        scope: &ListScope,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<ContactRow>>;

    // Consent ledger

    /// Appends a ledger event and updates the derived state; a withdrawal or
    /// objection also suppresses the given blind indexes.
    async fn append_consent(&self, event: ConsentEventRow, suppress: Vec<Vec<u8>>, audit: AuditDraft) -> StoreResult<AuditEvent>;
    async fn list_consents(&self, workspace_id: &str, contact_id: Uuid) -> StoreResult<Vec<ConsentEventRow>>;

    // Lists

    async fn create_list(&self, list: ListRecord, audit: AuditDraft) -> StoreResult<()>;
    async fn list_lists(&self, workspace_id: &str, scope: &ListScope) -> StoreResult<Vec<ListRecord>>;
    async fn find_list(&self, workspace_id: &str, id_or_name: &str, scope: &ListScope) -> StoreResult<Option<ListRecord>>;
    async fn rename_list(&self, workspace_id: &str, id: &str, name: &str, audit: AuditDraft) -> StoreResult<()>;
    async fn delete_list(&self, workspace_id: &str, id: &str, audit: AuditDraft) -> StoreResult<()>;
    /// Adds members; returns how many were new. Unknown contacts are `NotFound`.
    async fn add_list_members(
        &self,
        workspace_id: &str,
        list_id: &str,
        contacts: Vec<Uuid>,
        at: i64,
        audit: AuditDraft,
    ) -> StoreResult<u64>;
    async fn remove_list_members(&self, workspace_id: &str, list_id: &str, contacts: Vec<Uuid>, audit: AuditDraft) -> StoreResult<u64>;

    // Imports

    /// Starts an import, or returns the unfinished one with the same file and
    /// options so that a rerun resumes it.
    async fn begin_import(&self, job: ImportJob, audit: AuditDraft) -> StoreResult<ImportJob>;
    /// A filter of the identifiers that exist in the workspace (see
    /// `store::identifiers`), for an import of `new_rows` more rows, built from
    /// one snapshot; `None` when the store holds too many contacts beside the
    /// import for the filter to pay for itself.
    async fn identifier_filter(
        &self,
        workspace_id: &str,
        import_id: &str,
        new_rows: u64,
    ) -> StoreResult<Option<identifiers::IdentifierFilter>>;
    /// Looks a batch of a running import up ahead of its turn, in a snapshot of
    /// its own, so that the look-up can run while earlier batches still write;
    /// `apply_import_batch` uses it only if nothing written since concerns the
    /// batch. `None` when the backend looks batches up by itself.
    async fn prefetch_import_batch(&self, workspace_id: &str, import_id: &str, lookup: &BatchLookup) -> StoreResult<Option<BatchPrefetch>> {
        let _ = (workspace_id, import_id, lookup);
        Ok(None)
    }
    /// Looks up a batch's identifiers (or takes its prefetched look-up when that
    /// still holds), lets the planner decide, and applies its writes together with
    /// the job's progress in one transaction. Without an import id (a dry run)
    /// nothing is written and only the counts are returned. A backend may commit
    /// consecutive batches of one import together, so callers keep the next batch
    /// in flight; `last_batch` says none follows. The result is returned only once
    /// the batch is durable.
    async fn apply_import_batch(
        &self,
        workspace_id: &str,
        import_id: Option<&str>,
        lookup: BatchLookup,
        prefetched: Option<BatchPrefetch>,
        planner: ImportPlanner,
        last_batch: bool,
    ) -> StoreResult<ImportCounts>;
    async fn finish_import(
        &self,
        workspace_id: &str,
        import_id: &str,
        status: ImportStatus,
        error: Option<String>,
        at: i64,
        audit: AuditDraft,
    ) -> StoreResult<ImportJob>;
    async fn find_import(&self, workspace_id: &str, id: &str) -> StoreResult<Option<ImportJob>>;
    async fn list_import_rejections(&self, workspace_id: &str, id: &str, limit: u32) -> StoreResult<Vec<ImportRejection>>;

    // Exports

    async fn create_export(&self, record: ExportRecord, audit: AuditDraft) -> StoreResult<()>;
    async fn find_export(&self, workspace_id: &str, id: &str) -> StoreResult<Option<ExportRecord>>;

    // Audit

    /// Appends a standalone event (reads, failures); returns it once committed.
    async fn record_audit(&self, audit: AuditDraft) -> StoreResult<AuditEvent>;
    async fn list_audit(&self, workspace_id: &str, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditEvent>>;
    async fn find_audit(&self, workspace_id: &str, seqs: Vec<i64>) -> StoreResult<Vec<AuditEvent>>;
    async fn audit_head(&self, workspace_id: &str) -> StoreResult<Option<AuditEvent>>;
    /// The newest events with one of `actions` at or after `since`, newest
    /// first, at most `limit`; only the newest `RECENT_AUDIT_SCAN` events of the
    /// workspace are looked at, so the answer stays quick on any log.
    async fn recent_audit(&self, workspace_id: &str, actions: Vec<String>, since: i64, limit: u32) -> StoreResult<Vec<AuditEvent>>;
    async fn insert_checkpoint(&self, checkpoint: Checkpoint) -> StoreResult<()>;
    async fn list_checkpoints(&self, workspace_id: &str) -> StoreResult<Vec<Checkpoint>>;
}

/// A checkpoint for a sequence number that already has one is the same
/// checkpoint when it signs the same hash (two servers signing one head); with
/// another hash the chain was changed after the first was signed.
pub(crate) fn checkpoint_matches(cp: &crate::audit::Checkpoint, existing_hash: &str) -> StoreResult<()> {
    if existing_hash == cp.hash {
        return Ok(());
    }
    Err(StoreError::Backend(anyhow::anyhow!(
        "audit event {} of workspace {} already has a checkpoint with another hash: the audit chain was changed after it was signed; run `consentry audit verify`",
        cp.seq,
        cp.workspace_id
    )))
}
