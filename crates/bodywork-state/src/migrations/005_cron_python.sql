-- Schema version 5: the Python a cron job's runs build their stages'
-- environments with (`cronjob create --python VERSION|PATH`, issue 22).
--
-- SHIPPED once released: never edit this file; add a new numbered migration
-- instead. Conventions as in 001_initial.sql.

ALTER TABLE cron_jobs ADD COLUMN python TEXT; -- NULL = the default python3, or the one chosen for wheels; else a version (3.10) or an interpreter's path
