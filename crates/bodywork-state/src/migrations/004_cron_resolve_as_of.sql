-- Schema version 4: what a cron job's runs resolve their requirements as
-- of (`cronjob create --resolve-as-of now|DATE`, issue 22).
--
-- SHIPPED once released: never edit this file; add a new numbered migration
-- instead. Conventions as in 001_initial.sql.

ALTER TABLE cron_jobs ADD COLUMN resolve_as_of TEXT; -- NULL = each run's commit date; `now` or an RFC 3339 time in UTC
