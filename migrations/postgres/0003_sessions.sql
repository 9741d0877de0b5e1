-- Server-side sessions of signed-in users: only the SHA-256 of the 256-bit token
-- is kept. A session ends at its absolute expiry, after being idle too long, when
-- its user signs out or ends it, and when the user is disabled or removed.

CREATE TABLE sessions (
    id BYTEA PRIMARY KEY,
    token_hash BYTEA NOT NULL,
    workspace_id TEXT NOT NULL,
    user_id BYTEA NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    ip_hash TEXT
);
CREATE UNIQUE INDEX sessions_token ON sessions(token_hash);
CREATE INDEX sessions_user ON sessions(user_id);
