-- Schema version 2: cron jobs (scheduled workflows) and their history.
--
-- SHIPPED once released: never edit this file; add a new numbered migration
-- instead. Conventions as in 001_initial.sql.

CREATE TABLE cron_jobs (
    namespace      TEXT NOT NULL REFERENCES namespaces (name),
    name           TEXT NOT NULL,
    schedule       TEXT NOT NULL,    -- cron expression, as the user gave it
    timezone       TEXT,             -- IANA zone name; NULL = UTC
    repo           TEXT NOT NULL,
    branch         TEXT,
    retries        INTEGER NOT NULL, -- retries of a failed run
    history_limit  INTEGER NOT NULL, -- workflow runs kept
    created        TEXT NOT NULL,
    last_scheduled TEXT,             -- the newest scheduled time dealt with (run, caught up or skipped)
    PRIMARY KEY (namespace, name)
) STRICT;

-- One row per workflow run started for a cron job (every retry is its own
-- run), and one per scheduled time skipped because a run was still going.
CREATE TABLE cron_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace   TEXT NOT NULL,
    job         TEXT NOT NULL,
    scheduled   TEXT NOT NULL,    -- the time the run was due (for a manual run: when asked)
    kind        TEXT NOT NULL,    -- scheduled | catch_up | manual
    attempt     INTEGER NOT NULL, -- 1 = first try, 2 = first retry, ...
    run_id      INTEGER REFERENCES runs (id) ON DELETE SET NULL, -- NULL when skipped
    skipped     INTEGER NOT NULL, -- 1: not started, a run was still going
    skipped_for INTEGER,          -- the run that was still going (no foreign key: it may be pruned)
    created     TEXT NOT NULL,
    FOREIGN KEY (namespace, job) REFERENCES cron_jobs (namespace, name) ON DELETE CASCADE
) STRICT;
CREATE INDEX cron_runs_by_job ON cron_runs (namespace, job, id);
CREATE INDEX cron_runs_by_run ON cron_runs (run_id);
