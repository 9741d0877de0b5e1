-- People who sign in: one row per person per workspace. The email address exists
-- only as ciphertext (sealed under the user's own key, like a contact's fields)
-- and as a blind index for sign-in. Only an Argon2id PHC string of the password.

CREATE TABLE users (
    id BLOB PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    email_bidx BLOB NOT NULL,
    user_key BLOB NOT NULL,
    email_ct BLOB NOT NULL,
    role TEXT NOT NULL,
    list_ids TEXT NOT NULL,
    password_hash TEXT,
    status TEXT NOT NULL CHECK (status IN ('invited', 'active', 'disabled')),
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK (status = 'invited' OR password_hash IS NOT NULL)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX users_email ON users(email_bidx);
CREATE INDEX users_workspace ON users(workspace_id);

-- Single-use invitations: only a keyed hash of the token.
CREATE TABLE user_invitations (
    token_hash BLOB PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    user_id BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX user_invitations_user ON user_invitations(user_id);
