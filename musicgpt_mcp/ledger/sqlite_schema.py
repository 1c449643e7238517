"""The SQLite ledger's schema, as numbered migrations: `PRAGMA user_version` says how far a file has come.
Released entries never change; a new release adds one (sqlite.py applies them)."""

from __future__ import annotations

from typing import Final

# Each entry moves the schema one version up; `PRAGMA user_version` says how far a file has come.
# Never edit an entry once released: add one.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        account TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('submitting', 'submitted', 'unknown')),
        task_id TEXT,
        conversion_id TEXT,
        submitted_at REAL NOT NULL,
        heartbeat_at REAL,
        source_kind TEXT NOT NULL,
        source_name TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        stems TEXT NOT NULL,
        stems_key TEXT NOT NULL,
        options TEXT NOT NULL,
        options_key TEXT NOT NULL,
        eta INTEGER,
        credit_estimate REAL,
        status TEXT,
        status_message TEXT,
        conversion_cost REAL,
        finished_at REAL,
        stem_urls TEXT,
        note TEXT
    );
    CREATE INDEX jobs_by_request ON jobs (owner, account, fingerprint, stems_key, options_key, submitted_at);
    CREATE INDEX jobs_by_owner_time ON jobs (owner, submitted_at);
    CREATE INDEX jobs_by_task ON jobs (task_id);
    CREATE TABLE downloads (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        stem TEXT NOT NULL,
        path TEXT NOT NULL,
        format TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX downloads_by_job ON downloads (job_id);
    CREATE TABLE fingerprints (
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (dev, ino)
    );
    """,
    # 2: what a claim counts against the daily credit limit until MusicGPT states a figure. Jobs recorded before
    # it count at the documented assumption (1.5 a stem, 0.5 a clean-up option), never as free.
    """
    ALTER TABLE jobs ADD COLUMN reserved REAL;
    UPDATE jobs SET reserved = 1.5 * json_array_length(stems) + 0.5 * json_array_length(options)
    """,
    # 3: consent answers already spent on a submission (a digest of the sealed state that carried each).
    """
    CREATE TABLE answers (token TEXT PRIMARY KEY, spent_at REAL NOT NULL);
    CREATE INDEX answers_by_time ON answers (spent_at)
    """,
    # 4: a cached hash holds only while the ctime is the one it was taken at too (base.FileKey says why).
    # Rows from before have none, so they never match and the file is hashed once more.
    """
    ALTER TABLE fingerprints ADD COLUMN ctime_ns INTEGER;
    """,
    # 5: the hash of each saved stem, so a repeated download_stems can skip a file still on disk as saved.
    """
    ALTER TABLE downloads ADD COLUMN sha256 TEXT;
    """,
    # 6: the studio: quotes a user approves in the view before a job is paid for, and songs the view uploads
    # (their bytes in chunks, so any process sharing the ledger can send them). One open quote per request.
    """
    CREATE TABLE quotes (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        account TEXT NOT NULL,
        identity TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'approving', 'approved', 'cancelled', 'expired')),
        taken_at REAL,
        job_id INTEGER,
        task_id TEXT
    );
    CREATE UNIQUE INDEX quotes_one_open ON quotes (owner, account, identity) WHERE state = 'open';
    CREATE INDEX quotes_by_owner ON quotes (owner, created_at);
    CREATE TABLE uploads (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        spec TEXT NOT NULL,
        file_name TEXT,
        total_bytes INTEGER,
        received INTEGER NOT NULL DEFAULT 0,
        sha256 TEXT,
        state TEXT NOT NULL CHECK (state IN ('receiving', 'complete')),
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX uploads_by_owner ON uploads (owner, created_at);
    CREATE TABLE upload_chunks (
        upload_id TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
        start INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (upload_id, start)
    )
    """,
    # 7: the server's own webhook (hooks.py). Whether the submit carried it; when an authentic delivery last came,
    # and whether one came that no status read has answered yet; and the job's next status read, shared by its
    # waiters: when it was last taken, and until when the one who took it may finish it (see watching.py).
    """
    ALTER TABLE jobs ADD COLUMN server_webhook INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN delivered_at REAL;
    ALTER TABLE jobs ADD COLUMN unconfirmed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN read_at REAL;
    ALTER TABLE jobs ADD COLUMN reading_until REAL;
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
