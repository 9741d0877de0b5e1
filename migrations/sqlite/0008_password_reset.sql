-- "Reset all passwords": a user so marked must choose a new password right
-- after signing in and can do nothing else first.
ALTER TABLE users ADD COLUMN password_change_required INTEGER NOT NULL DEFAULT 0;
