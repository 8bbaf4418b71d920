"""Schema of the state database and its migrations.

One row per stored copy of a message, keyed by folder, UIDVALIDITY and UID.
`pending` holds a batch between "bodies fetched" and "bodies durable on
disk": its rows are committed before any mail file is written, so after a
crash the next run can tell a finished write (file present, hash matches:
promote the row) from a torn one (remove it, fetch again).

Version 2 adds `uploads`: what a restore or migration put on which target
server, account and folder (see migrate.py).  A row is written as `pending`
before its APPEND is sent and becomes `uploaded` (with the target's UID when
the server tells it) after, so a run killed in between knows which messages
to look for on the target before sending anything again.  It is keyed by the
archived copy's row id (`message_row`): the backup engine may move a copy to a
new UIDVALIDITY generation (`move_to_generation`), which changes its UID but
not its row.

Version 3 adds `messages_live_generations`, a partial index of the live
copies by folder and UIDVALIDITY: asking whether a folder holds live copies
of another generation (every sync of every folder asks) was a walk over the
whole folder, 0.26 s at 100,000 messages; through the index it is two
lookups whatever the folder's size.
"""

from __future__ import annotations

SCHEMA_VERSION = 3

MESSAGE_COLUMNS = """
    folder_id INTEGER NOT NULL REFERENCES folders(id),
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    internaldate TEXT NOT NULL,
    flags TEXT NOT NULL DEFAULT '',
    message_id TEXT,
    subject TEXT,
    sender TEXT,
    location TEXT,
    mbox_offset INTEGER,
    mbox_length INTEGER,
    saved_at TEXT NOT NULL
"""

MIGRATIONS: dict[int, str] = {
    1: f"""
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE folders (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        delimiter TEXT,
        local_path TEXT NOT NULL UNIQUE,
        path_key TEXT NOT NULL UNIQUE,
        uidvalidity INTEGER,
        uidnext INTEGER,
        highestmodseq INTEGER,
        server_messages INTEGER,
        generation INTEGER NOT NULL DEFAULT 0,
        mbox_committed INTEGER NOT NULL DEFAULT 0,
        last_sync TEXT,
        gone_at TEXT
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        {MESSAGE_COLUMNS},
        gone_at TEXT,
        verified_at TEXT,
        UNIQUE (folder_id, uidvalidity, uid)
    );
    CREATE INDEX messages_by_hash ON messages (folder_id, sha256);
    CREATE TABLE pending (
        seq INTEGER PRIMARY KEY,
        {MESSAGE_COLUMNS}
    );
    CREATE TABLE failures (
        folder_id INTEGER NOT NULL REFERENCES folders(id),
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        error TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 1,
        last_at TEXT NOT NULL,
        PRIMARY KEY (folder_id, uidvalidity, uid)
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        command TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT,
        messages INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        detail TEXT
    );
    """,
    2: """
    CREATE TABLE uploads (
        id INTEGER PRIMARY KEY,
        message_row INTEGER NOT NULL REFERENCES messages(id),
        folder_id INTEGER NOT NULL REFERENCES folders(id),
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        target_server TEXT NOT NULL,
        target_account TEXT NOT NULL,
        target_folder TEXT NOT NULL,
        target_uidvalidity INTEGER,
        target_uid INTEGER,
        status TEXT NOT NULL,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        uploaded_at TEXT,
        updated_at TEXT NOT NULL,
        UNIQUE (target_server, target_account, message_row)
    );
    CREATE INDEX uploads_by_folder ON uploads (target_server, target_account, folder_id);
    """,
    3: """
    CREATE INDEX messages_live_generations ON messages (folder_id, uidvalidity) WHERE gone_at IS NULL;
    """,
}
