-- Where an API key was last used from: the client address, sealed under a key
-- of its own (sealed by the workspace's data-encryption key) and bound to the
-- API key's id, so it is never on disk in clear.
ALTER TABLE api_keys ADD COLUMN last_used_from BYTEA;
