-- WebAuthn passkeys. A credential (public key, id, signature counter) is kept
-- only sealed under its user's key and bound to its row; `credential_hash`, a
-- keyed hash of the credential id, refuses one credential for two users of a
-- workspace. `uses` counts accepted assertions: recording one is a
-- compare-and-set on it, so that of two servers answering with the same stored
-- credential (and its signature counter) at once, one refuses.
CREATE TABLE user_passkeys (
    id BYTEA PRIMARY KEY,
    user_id BYTEA NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    credential_hash BYTEA NOT NULL,
    credential_ct BYTEA NOT NULL,
    name_ct BYTEA NOT NULL,
    uses BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    CONSTRAINT user_passkeys_credential UNIQUE (workspace_id, credential_hash)
);
CREATE INDEX user_passkeys_user ON user_passkeys (user_id, created_at);

-- A registration or sign-in ceremony between its challenge and its answer:
-- the verifier's state, sealed under a key of its own bound to the ceremony's
-- id, used once (deleted when answered) and only until it expires.
CREATE TABLE webauthn_ceremonies (
    id BYTEA PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('register', 'factor', 'sign_in')),
    user_id BYTEA,
    session_id BYTEA,
    state_ct BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_at);

-- Passkey sign-in challenges asked for per client address are counted beside
-- the failed sign-ins (each costs a row until it expires).
ALTER TABLE sign_in_failures DROP CONSTRAINT sign_in_failures_scope_check;
ALTER TABLE sign_in_failures ADD CONSTRAINT sign_in_failures_scope_check
    CHECK (scope IN ('account', 'address', 'passkey_challenge'));
