-- Second factors. A user's TOTP seed exists only sealed under the user's key;
-- `last_step` makes every code usable once. Recovery codes are kept only as
-- SHA-256 hashes. A session made for a user with a second factor is usable only
-- once the factor was checked.

CREATE TABLE user_totp (
    user_id BLOB PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    secret_ct BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    confirmed_at INTEGER,
    last_step INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

CREATE TABLE user_recovery_codes (
    user_id BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash BLOB NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user_id, code_hash)
) STRICT, WITHOUT ROWID;

ALTER TABLE sessions ADD COLUMN factor_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN factor_verified_at INTEGER;
-- Wrong codes given for the session; it ends at the fifth.
ALTER TABLE sessions ADD COLUMN factor_failures INTEGER NOT NULL DEFAULT 0;
