-- Second factors. A user's TOTP seed exists only sealed under the user's key;
-- `last_step` makes every code usable once. Recovery codes are kept only as
-- SHA-256 hashes. A session made for a user with a second factor is usable only
-- once the factor was checked.

CREATE TABLE user_totp (
    user_id BYTEA PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    secret_ct BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    last_step BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE user_recovery_codes (
    user_id BYTEA NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash BYTEA NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

ALTER TABLE sessions ADD COLUMN factor_required BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sessions ADD COLUMN factor_verified_at BIGINT;
-- Wrong codes given for the session; it ends at the fifth.
ALTER TABLE sessions ADD COLUMN factor_failures BIGINT NOT NULL DEFAULT 0;
