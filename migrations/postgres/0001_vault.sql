-- The encrypted contact vault, PostgreSQL dialect: the same tables, columns and
-- rules as migrations/sqlite/0001_vault.sql. Identifying values exist here only as
-- AES-256-GCM ciphertext (columns ending in _ct) or HMAC blind indexes (_bidx).

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    audit_public_key BYTEA NOT NULL
);

CREATE TABLE workspace_keys (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    purpose TEXT NOT NULL,
    version BIGINT NOT NULL,
    wrapped BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, purpose, version)
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    scopes TEXT NOT NULL,
    list_ids TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_keys_workspace ON api_keys(workspace_id);

CREATE TABLE attributes (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    class TEXT NOT NULL CHECK (class IN ('identifying', 'segmentable')),
    created_at BIGINT NOT NULL,
    CONSTRAINT attributes_pkey PRIMARY KEY (workspace_id, name)
);

CREATE TABLE contacts (
    id BYTEA PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    email_bidx BYTEA,
    phone_bidx BYTEA,
    contact_key BYTEA NOT NULL,
    email_ct BYTEA,
    phone_ct BYTEA,
    first_name_ct BYTEA,
    last_name_ct BYTEA,
    attributes_ct BYTEA,
    segment_attributes TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT,
    CHECK (deleted_at IS NOT NULL OR email_ct IS NOT NULL OR phone_ct IS NOT NULL)
);
-- Blind indexes are keyed per workspace, so the unique indexes need no workspace column.
CREATE UNIQUE INDEX contacts_email ON contacts(email_bidx) WHERE email_bidx IS NOT NULL;
CREATE UNIQUE INDEX contacts_phone ON contacts(phone_bidx) WHERE phone_bidx IS NOT NULL;

CREATE TABLE lists (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT lists_workspace_name UNIQUE (workspace_id, name)
);

CREATE TABLE list_members (
    list_id TEXT NOT NULL,
    contact_id BYTEA NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (list_id, contact_id)
);
CREATE INDEX list_members_contact ON list_members(contact_id);

CREATE TABLE consent_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id BYTEA NOT NULL,
    workspace_id TEXT NOT NULL,
    contact_id BYTEA NOT NULL,
    channel TEXT NOT NULL,
    purpose TEXT NOT NULL,
    action TEXT NOT NULL,
    method TEXT NOT NULL,
    source TEXT NOT NULL,
    evidence TEXT NOT NULL,
    private_evidence_ct BYTEA,
    actor TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    audit_seq BIGINT NOT NULL
);
CREATE INDEX consent_events_contact ON consent_events(contact_id, seq);

-- The ledger is append-only: the database itself refuses edits, deletions and truncation.
CREATE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent events are append-only';
END
$$;
CREATE TRIGGER consent_events_no_change BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only();

-- Current state per contact x channel x purpose, derived from the ledger.
CREATE TABLE consent_state (
    contact_id BYTEA NOT NULL,
    channel TEXT NOT NULL,
    purpose TEXT NOT NULL,
    action TEXT NOT NULL,
    event_seq BIGINT NOT NULL,
    PRIMARY KEY (contact_id, channel, purpose)
);

CREATE TABLE suppressions (
    workspace_id TEXT NOT NULL,
    bidx BYTEA NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, bidx)
);

CREATE TABLE imports (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    file_hash TEXT NOT NULL,
    options_hash TEXT NOT NULL,
    uploader TEXT NOT NULL,
    list_id TEXT NOT NULL,
    source TEXT,
    status TEXT NOT NULL,
    rows_done BIGINT NOT NULL DEFAULT 0,
    read_count BIGINT NOT NULL DEFAULT 0,
    created_count BIGINT NOT NULL DEFAULT 0,
    updated_count BIGINT NOT NULL DEFAULT 0,
    unchanged_count BIGINT NOT NULL DEFAULT 0,
    suppressed_count BIGINT NOT NULL DEFAULT 0,
    rejected_count BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX imports_resume ON imports(workspace_id, file_hash, options_hash, status);

CREATE TABLE import_rejections (
    import_id TEXT NOT NULL,
    row_number BIGINT NOT NULL,
    column_name TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (import_id, row_number, column_name)
);

CREATE TABLE exports (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    purpose TEXT NOT NULL,
    list_id TEXT NOT NULL,
    format TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE audit_events (
    workspace_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
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
);

CREATE TABLE audit_checkpoints (
    workspace_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    at BIGINT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (workspace_id, seq)
);
