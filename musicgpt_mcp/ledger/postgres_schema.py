"""The PostgreSQL ledger's schema, as numbered migrations recorded in `musicgpt_mcp_schema`, applied once under
an advisory lock when replicas start together (postgres.py). Released entries never change; a release only adds
to the schema, so replicas of the previous release keep running on it during a rolling upgrade."""

from __future__ import annotations

from typing import Final

# Each entry moves the schema one version up. Never edit an entry once released: add one.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE musicgpt_mcp_jobs (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        owner text NOT NULL,
        account text NOT NULL,
        state text NOT NULL CHECK (state IN ('submitting', 'submitted', 'unknown')),
        task_id text,
        conversion_id text,
        submitted_at double precision NOT NULL,
        heartbeat_at double precision,
        source_kind text NOT NULL,
        source_name text NOT NULL,
        fingerprint text NOT NULL,
        stems text[] NOT NULL,
        stems_key text NOT NULL,
        options text[] NOT NULL,
        options_key text NOT NULL,
        eta integer,
        credit_estimate double precision,
        status text,
        status_message text,
        conversion_cost double precision,
        finished_at double precision,
        stem_urls text,
        note text
    );
    CREATE INDEX musicgpt_mcp_jobs_by_request
        ON musicgpt_mcp_jobs (owner, account, fingerprint, stems_key, options_key, submitted_at);
    CREATE INDEX musicgpt_mcp_jobs_by_owner_time ON musicgpt_mcp_jobs (owner, submitted_at);
    CREATE INDEX musicgpt_mcp_jobs_by_owner_task ON musicgpt_mcp_jobs (owner, task_id);
    CREATE TABLE musicgpt_mcp_downloads (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_id bigint NOT NULL REFERENCES musicgpt_mcp_jobs (id) ON DELETE CASCADE,
        stem text NOT NULL,
        path text NOT NULL,
        format text NOT NULL,
        bytes bigint NOT NULL,
        at double precision NOT NULL
    );
    CREATE INDEX musicgpt_mcp_downloads_by_job ON musicgpt_mcp_downloads (job_id);
    -- Keyed by host too: device and inode numbers mean nothing on another machine.
    CREATE TABLE musicgpt_mcp_fingerprints (
        host text NOT NULL,
        dev bigint NOT NULL,
        ino bigint NOT NULL,
        size bigint NOT NULL,
        mtime_ns bigint NOT NULL,
        sha256 text NOT NULL,
        PRIMARY KEY (host, dev, ino)
    );
    -- One row per call counted by a PostgresRateLimiter, pruned as the window slides.
    CREATE TABLE musicgpt_mcp_rate_calls (
        bucket text NOT NULL,
        at double precision NOT NULL
    );
    CREATE INDEX musicgpt_mcp_rate_calls_by_bucket ON musicgpt_mcp_rate_calls (bucket, at);
    """,
    # 2: what a claim counts against the daily credit limit until MusicGPT states a figure. Jobs recorded before
    # it count at the documented assumption (1.5 a stem, 0.5 a clean-up option), never as free.
    """
    ALTER TABLE musicgpt_mcp_jobs ADD COLUMN reserved double precision;
    UPDATE musicgpt_mcp_jobs
        SET reserved = 1.5 * coalesce(array_length(stems, 1), 0) + 0.5 * coalesce(array_length(options, 1), 0);
    """,
    # 3: consent answers already spent on a submission (a digest of the sealed state that carried each).
    """
    CREATE TABLE musicgpt_mcp_answers (token text PRIMARY KEY, spent_at double precision NOT NULL);
    CREATE INDEX musicgpt_mcp_answers_by_time ON musicgpt_mcp_answers (spent_at);
    """,
    # 4: a cached hash holds only while the ctime is the one it was taken at too (base.FileKey says why).
    # Rows from before have none, so they never match. A replica of the previous release, during a rolling
    # upgrade, updates a row's hash without its ctime_ns: that leaves an older ctime behind, which a
    # file's current ctime never equals again, so it is a miss, never a wrong hash.
    """
    ALTER TABLE musicgpt_mcp_fingerprints ADD COLUMN ctime_ns bigint;
    """,
    # 5: the hash of each saved stem, so a repeated download_stems can skip a file still on disk as saved.
    """
    ALTER TABLE musicgpt_mcp_downloads ADD COLUMN sha256 text;
    """,
    # 6: the studio: quotes a user approves in the view before a job is paid for, and songs the view uploads
    # (their bytes in chunks, so any replica can send them). One open quote per request.
    """
    CREATE TABLE musicgpt_mcp_quotes (
        id text PRIMARY KEY,
        owner text NOT NULL,
        account text NOT NULL,
        identity text NOT NULL,
        spec text NOT NULL,
        created_at double precision NOT NULL,
        expires_at double precision NOT NULL,
        state text NOT NULL CHECK (state IN ('open', 'approving', 'approved', 'cancelled', 'expired')),
        taken_at double precision,
        job_id bigint,
        task_id text
    );
    CREATE UNIQUE INDEX musicgpt_mcp_quotes_one_open ON musicgpt_mcp_quotes (owner, account, identity)
        WHERE state = 'open';
    CREATE INDEX musicgpt_mcp_quotes_by_owner ON musicgpt_mcp_quotes (owner, created_at);
    CREATE TABLE musicgpt_mcp_uploads (
        id text PRIMARY KEY,
        owner text NOT NULL,
        spec text NOT NULL,
        file_name text,
        total_bytes bigint,
        received bigint NOT NULL DEFAULT 0,
        sha256 text,
        state text NOT NULL CHECK (state IN ('receiving', 'complete')),
        created_at double precision NOT NULL,
        expires_at double precision NOT NULL
    );
    CREATE INDEX musicgpt_mcp_uploads_by_owner ON musicgpt_mcp_uploads (owner, created_at);
    CREATE TABLE musicgpt_mcp_upload_chunks (
        upload_id text NOT NULL REFERENCES musicgpt_mcp_uploads (id) ON DELETE CASCADE,
        start bigint NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (upload_id, start)
    );
    """,
    # 7: the server's own webhook (hooks.py). Whether the submit carried it; when an authentic delivery last came,
    # and whether one came that no status read has answered yet; and the job's next status read, shared by its
    # waiters across replicas: when it was last taken, and until when the one who took it may finish it (see
    # watching.py). A replica of the previous release never sets them: its jobs carry no server webhook and are
    # polled, as that release polls them.
    """
    ALTER TABLE musicgpt_mcp_jobs
        ADD COLUMN server_webhook boolean NOT NULL DEFAULT false,
        ADD COLUMN delivered_at double precision,
        ADD COLUMN unconfirmed boolean NOT NULL DEFAULT false,
        ADD COLUMN read_at double precision,
        ADD COLUMN reading_until double precision;
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
