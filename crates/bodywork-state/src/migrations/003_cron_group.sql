-- Schema version 3: the secrets group a cron job's runs copy into its
-- namespace (Bodywork 3's `create cronjob --group G`).
--
-- SHIPPED once released: never edit this file; add a new numbered migration
-- instead. Conventions as in 001_initial.sql.

ALTER TABLE cron_jobs ADD COLUMN secrets_group TEXT; -- NULL = the project's own pipeline.secrets_group
