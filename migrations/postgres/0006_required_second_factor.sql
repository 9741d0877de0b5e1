-- A workspace may require a second factor of every user: a user without one
-- must enrol right after signing in and can do nothing else first.
CREATE TABLE workspace_security (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces(id),
    second_factor_required BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL
);

ALTER TABLE sessions ADD COLUMN enrolment_required BOOLEAN NOT NULL DEFAULT FALSE;
