-- Failed sign-ins per account and per client address, shared by every server on
-- the database. Keys are keyed hashes (of the address typed, of the client IP),
-- never the values; an account key exists whether or not the account does.

CREATE TABLE sign_in_failures (
    workspace_id TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('account', 'address')),
    key BLOB NOT NULL,
    failures INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, scope, key)
) STRICT, WITHOUT ROWID;
