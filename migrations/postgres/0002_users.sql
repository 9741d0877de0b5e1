-- People who sign in: one row per person per workspace. The email address exists
-- only as ciphertext (sealed under the user's own key, like a contact's fields)
-- and as a blind index for sign-in. Only an Argon2id PHC string of the password.

CREATE TABLE users (
    id BYTEA PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    email_bidx BYTEA NOT NULL,
    user_key BYTEA NOT NULL,
    email_ct BYTEA NOT NULL,
    role TEXT NOT NULL,
    list_ids TEXT NOT NULL,
    password_hash TEXT,
    status TEXT NOT NULL CHECK (status IN ('invited', 'active', 'disabled')),
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK (status = 'invited' OR password_hash IS NOT NULL)
);
CREATE UNIQUE INDEX users_email ON users(email_bidx);
CREATE INDEX users_workspace ON users(workspace_id);

-- Single-use invitations: only a keyed hash of the token.
CREATE TABLE user_invitations (
    token_hash BYTEA PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    user_id BYTEA NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX user_invitations_user ON user_invitations(user_id);
