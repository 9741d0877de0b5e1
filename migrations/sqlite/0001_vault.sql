-- The encrypted contact vault. Identifying values exist here only as AES-256-GCM
-- ciphertext (columns ending in _ct) or as HMAC blind indexes (ending in _bidx).

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    audit_public_key BLOB NOT NULL
) STRICT;

CREATE TABLE workspace_keys (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    purpose TEXT NOT NULL,
    version INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, purpose, version)
) STRICT;

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    scopes TEXT NOT NULL,
    list_ids TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    last_used_at INTEGER
) STRICT;
CREATE INDEX api_keys_workspace ON api_keys(workspace_id);

CREATE TABLE attributes (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    class TEXT NOT NULL CHECK (class IN ('identifying', 'segmentable')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE contacts (
    id BLOB PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    email_bidx BLOB,
    phone_bidx BLOB,
    contact_key BLOB NOT NULL,
    email_ct BLOB,
    phone_ct BLOB,
    first_name_ct BLOB,
    last_name_ct BLOB,
    attributes_ct BLOB,
    segment_attributes TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER,
    CHECK (deleted_at IS NOT NULL OR email_ct IS NOT NULL OR phone_ct IS NOT NULL)
) STRICT, WITHOUT ROWID;
-- Blind indexes are keyed per workspace, so equal values in two workspaces are a
-- 2^-128 event: the unique indexes need no workspace column, which halves them and
-- keeps them in the page cache for large contact bases.
CREATE UNIQUE INDEX contacts_email ON contacts(email_bidx) WHERE email_bidx IS NOT NULL;
CREATE UNIQUE INDEX contacts_phone ON contacts(phone_bidx) WHERE phone_bidx IS NOT NULL;

CREATE TABLE lists (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (workspace_id, name)
) STRICT;

CREATE TABLE list_members (
    list_id TEXT NOT NULL,
    contact_id BLOB NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (list_id, contact_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX list_members_contact ON list_members(contact_id);

CREATE TABLE consent_events (
    -- Rows are never deleted (see the triggers), so rowids only grow.
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL,
    workspace_id TEXT NOT NULL,
    contact_id BLOB NOT NULL,
    channel TEXT NOT NULL,
    purpose TEXT NOT NULL,
    action TEXT NOT NULL,
    method TEXT NOT NULL,
    source TEXT NOT NULL,
    evidence TEXT NOT NULL,
    private_evidence_ct BLOB,
    actor TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    audit_seq INTEGER NOT NULL
) STRICT;
CREATE INDEX consent_events_contact ON consent_events(contact_id, seq);

-- The ledger is append-only: the database itself refuses edits and deletions.
CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
BEGIN SELECT RAISE(ABORT, 'consent events are append-only'); END;
CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
BEGIN SELECT RAISE(ABORT, 'consent events are append-only'); END;

-- Current state per contact x channel x purpose, derived from the ledger.
CREATE TABLE consent_state (
    contact_id BLOB NOT NULL,
    channel TEXT NOT NULL,
    purpose TEXT NOT NULL,
    action TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    PRIMARY KEY (contact_id, channel, purpose)
) STRICT, WITHOUT ROWID;

CREATE TABLE suppressions (
    workspace_id TEXT NOT NULL,
    bidx BLOB NOT NULL,
    reason TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, bidx)
) STRICT, WITHOUT ROWID;

CREATE TABLE imports (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    file_hash TEXT NOT NULL,
    options_hash TEXT NOT NULL,
    uploader TEXT NOT NULL,
    list_id TEXT NOT NULL,
    source TEXT,
    status TEXT NOT NULL,
    rows_done INTEGER NOT NULL DEFAULT 0,
    read_count INTEGER NOT NULL DEFAULT 0,
    created_count INTEGER NOT NULL DEFAULT 0,
    updated_count INTEGER NOT NULL DEFAULT 0,
    unchanged_count INTEGER NOT NULL DEFAULT 0,
    suppressed_count INTEGER NOT NULL DEFAULT 0,
    rejected_count INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
) STRICT;
CREATE INDEX imports_resume ON imports(workspace_id, file_hash, options_hash, status);

CREATE TABLE import_rejections (
    import_id TEXT NOT NULL,
    row_number INTEGER NOT NULL,
    column_name TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (import_id, row_number, column_name)
) STRICT, WITHOUT ROWID;

CREATE TABLE exports (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    purpose TEXT NOT NULL,
    list_id TEXT NOT NULL,
    format TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_events (
    workspace_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    purpose TEXT,
    ip_hash TEXT,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (workspace_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE audit_checkpoints (
    workspace_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    at INTEGER NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (workspace_id, seq)
) STRICT, WITHOUT ROWID;
