-- WebAuthn passkeys. A credential (public key, id, signature counter) is kept
-- only sealed under its user's key and bound to its row; `credential_hash`, a
-- keyed hash of the credential id, refuses one credential for two users of a
-- workspace. `uses` counts accepted assertions: recording one is a
-- compare-and-set on it, so that of two servers answering with the same stored
-- credential (and its signature counter) at once, one refuses.
CREATE TABLE user_passkeys (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    credential_hash BLOB NOT NULL,
    credential_ct BLOB NOT NULL,
    name_ct BLOB NOT NULL,
    uses INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    UNIQUE (workspace_id, credential_hash)
) STRICT, WITHOUT ROWID;
CREATE INDEX user_passkeys_user ON user_passkeys (user_id, created_at);

-- A registration or sign-in ceremony between its challenge and its answer:
-- the verifier's state, sealed under a key of its own bound to the ceremony's
-- id, used once (deleted when answered) and only until it expires.
CREATE TABLE webauthn_ceremonies (
    id BLOB PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('register', 'factor', 'sign_in')),
    user_id BLOB,
    session_id BLOB,
    state_ct BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_at);

-- Passkey sign-in challenges asked for per client address are counted beside
-- the failed sign-ins (each costs a row until it expires).
CREATE TABLE sign_in_failures_new (
    workspace_id TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('account', 'address', 'passkey_challenge')),
    key BLOB NOT NULL,
    failures INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, scope, key)
) STRICT, WITHOUT ROWID;
INSERT INTO sign_in_failures_new SELECT workspace_id, scope, key, failures, first_at, last_at FROM sign_in_failures;
DROP TABLE sign_in_failures;
ALTER TABLE sign_in_failures_new RENAME TO sign_in_failures;
