-- Schema version 6: what a workflow run was started with beyond its
-- repository and branch, so that it can be run again as it was (the
-- dashboard's Redeploy, issue 24). Never a secret's value or a key.
--
-- SHIPPED once released: never edit this file; add a new numbered migration
-- instead. Conventions as in 001_initial.sql.

ALTER TABLE runs ADD COLUMN ssh_key TEXT;       -- NULL = none given; else the `--ssh` key file's absolute path (never the key)
ALTER TABLE runs ADD COLUMN secrets_group TEXT; -- NULL = the project's own pipeline.secrets_group
ALTER TABLE runs ADD COLUMN python TEXT;        -- NULL = the default; else a version (3.10) or an interpreter's path
ALTER TABLE runs ADD COLUMN resolve_as_of TEXT; -- NULL = the commit's date; `now` or an RFC 3339 time in UTC
