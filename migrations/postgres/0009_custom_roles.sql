-- Custom roles: a named set of permissions from the catalogue, per workspace.
-- Users refer to a role by name; API keys store the permissions they were given.
CREATE TABLE roles (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, name)
);
