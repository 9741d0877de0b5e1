-- Address allowlists (JSON arrays of CIDRs; empty: any address) for the
-- workspace, each user and each API key. A sign-in or request must come from
-- an address that both the workspace's list and its user's or key's list allow.
ALTER TABLE workspace_security ADD COLUMN allowlist TEXT NOT NULL DEFAULT '[]';
ALTER TABLE users ADD COLUMN allowlist TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN allowlist TEXT NOT NULL DEFAULT '[]';
