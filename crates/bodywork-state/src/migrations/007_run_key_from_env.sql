-- Schema version 7: a run whose deploy key came from the CLI's
-- BODYWORK_GITHUB_SSH_PRIVATE_KEY (no `--ssh`) says so, rather than
-- recording the temporary file the key was written to for the run, which is
-- gone after it: a run again (the dashboard's Redeploy) cannot have that
-- key, and says why.
--
-- SHIPPED once released: never edit this file; add a new numbered migration
-- instead. Conventions as in 001_initial.sql.

ALTER TABLE runs ADD COLUMN ssh_key_from_env INTEGER NOT NULL DEFAULT 0; -- 1: the key came from BODYWORK_GITHUB_SSH_PRIVATE_KEY (ssh_key is NULL)
