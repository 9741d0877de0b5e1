-- Server-side sessions of signed-in users: only the SHA-256 of the 256-bit token
-- is kept. A session ends at its absolute expiry, after being idle too long, when
-- its user signs out or ends it, and when the user is disabled or removed.

CREATE TABLE sessions (
    id BLOB PRIMARY KEY,
    token_hash BLOB NOT NULL,
    workspace_id TEXT NOT NULL,
    user_id BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER,
    ip_hash TEXT
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX sessions_token ON sessions(token_hash);
CREATE INDEX sessions_user ON sessions(user_id);
