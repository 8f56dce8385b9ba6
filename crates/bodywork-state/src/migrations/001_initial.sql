-- Schema version 1: namespaces, secrets, workflow runs, stage attempts,
-- deployments (services) and their replicas.
--
-- SHIPPED: never edit this file; add a new numbered migration instead.
--
-- Conventions: timestamps are RFC 3339 UTC text with millisecond precision
-- ("2026-01-31T12:00:00.000Z"); JSON columns hold serde_json text; statuses
-- are lower-case words checked by the Rust enums, not by CHECK constraints, so
-- adding a status never needs a table rebuild. "commit", "trigger" and
-- "index" are SQL keywords and are always quoted.

CREATE TABLE namespaces (
    name    TEXT NOT NULL PRIMARY KEY,
    created TEXT NOT NULL
) STRICT;

CREATE TABLE secrets (
    namespace TEXT NOT NULL REFERENCES namespaces (name) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    data      TEXT NOT NULL, -- JSON object: key -> value
    created   TEXT NOT NULL,
    updated   TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
) STRICT;

CREATE TABLE runs (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL, -- '' until known; runs are recorded before their namespace may exist
    project   TEXT,          -- known once the project config is read
    repo      TEXT NOT NULL,
    branch    TEXT,
    "commit"  TEXT,
    "trigger" TEXT NOT NULL, -- "cli", "cron:<job>", ...
    status    TEXT NOT NULL, -- running | succeeded | failed | cancelled
    error     TEXT,
    log_path  TEXT NOT NULL,
    started   TEXT NOT NULL,
    finished  TEXT
) STRICT;
CREATE INDEX runs_by_namespace ON runs (namespace, id);
CREATE INDEX runs_by_status ON runs (status);

CREATE TABLE stage_attempts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id         INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    stage          TEXT NOT NULL,
    attempt        INTEGER NOT NULL, -- 1-based
    status         TEXT NOT NULL,    -- running | succeeded | failed | timed_out | cancelled
    exit_code      INTEGER,
    pid            INTEGER,
    pid_start_time INTEGER,          -- field 22 of /proc/<pid>/stat
    message        TEXT,
    started        TEXT NOT NULL,
    finished       TEXT,
    UNIQUE (run_id, stage, attempt)
) STRICT;
CREATE INDEX stage_attempts_by_status ON stage_attempts (status);

CREATE TABLE deployments (
    namespace  TEXT NOT NULL REFERENCES namespaces (name),
    name       TEXT NOT NULL,
    project    TEXT NOT NULL,
    stage      TEXT NOT NULL,
    repo       TEXT NOT NULL,
    branch     TEXT,
    "commit"   TEXT,
    run_id     INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    spec       TEXT NOT NULL,    -- JSON: the daemon's stage plan
    checkout   TEXT NOT NULL,
    generation INTEGER NOT NULL, -- bumped on each rollout
    created    TEXT NOT NULL,
    updated    TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
) STRICT;

-- No foreign key to deployments: a rollout records its new replicas before
-- the deployment row moves to the new generation, and removes them itself.
CREATE TABLE replicas (
    namespace      TEXT NOT NULL REFERENCES namespaces (name),
    service        TEXT NOT NULL,
    generation     INTEGER NOT NULL,
    "index"        INTEGER NOT NULL,
    pid            INTEGER,
    pid_start_time INTEGER,
    address        TEXT NOT NULL,    -- pod address on 127.0.0.0/8
    port           INTEGER NOT NULL,
    restarts       INTEGER NOT NULL,
    status         TEXT NOT NULL,    -- starting | ready | crashed | draining | stopped
    log_path       TEXT NOT NULL,
    started        TEXT NOT NULL,
    updated        TEXT NOT NULL,
    PRIMARY KEY (namespace, service, generation, "index")
) STRICT;
