-- A workspace may require a second factor of every user: a user without one
-- must enrol right after signing in and can do nothing else first.
CREATE TABLE workspace_security (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces(id),
    second_factor_required INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
) STRICT;

ALTER TABLE sessions ADD COLUMN enrolment_required INTEGER NOT NULL DEFAULT 0;
