"""The metadata schema, as the list of its migrations: the database's PRAGMA user_version
says how many ran. Only ever append: a pool made by any earlier version opens by running
the ones it lacks (tests/backend/test_store_migrations.py opens one of every version).
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: LDEVs and their labels.
    """
    CREATE TABLE array_setting (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE ldev (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL CHECK (size > 0),
        state TEXT NOT NULL,
        read_only INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE ldev_label (
        ldev_id INTEGER NOT NULL REFERENCES ldev(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (ldev_id, key)
    );
    """,
    # 2: snapshots (their id is their generation: later snapshots have larger ids),
    #    snapshot groups, per-LDEV chunk size, clone sources.
    """
    ALTER TABLE ldev ADD COLUMN chunk_size INTEGER NOT NULL DEFAULT 65536;
    ALTER TABLE ldev ADD COLUMN clone_source INTEGER;
    CREATE TABLE snapshot_group (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL
    );
    CREATE TABLE snapshot (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        ldev_id INTEGER NOT NULL REFERENCES ldev(id),
        group_id INTEGER REFERENCES snapshot_group(id),
        size INTEGER NOT NULL,
        state TEXT NOT NULL,
        hidden INTEGER NOT NULL DEFAULT 0,
        labels TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL
    );
    CREATE INDEX snapshot_by_ldev ON snapshot(ldev_id);
    CREATE INDEX snapshot_by_group ON snapshot(group_id);
    """,
    # 3: host access control (publications) and per-LDEV QoS limits.
    """
    ALTER TABLE ldev ADD COLUMN require_publication INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE ldev ADD COLUMN max_iops INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE ldev ADD COLUMN max_mbps INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE publication (
        token TEXT PRIMARY KEY,
        ldev_id INTEGER NOT NULL REFERENCES ldev(id) ON DELETE CASCADE,
        host_id TEXT NOT NULL,
        read_only INTEGER NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (ldev_id, host_id)
    );
    """,
    # 4: publications may advertise growth headroom (online expansion on hosts).
    """
    ALTER TABLE publication ADD COLUMN max_size INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: journal groups (consistency groups of asynchronous remote copy).
    """
    CREATE TABLE journal_group (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        capacity INTEGER NOT NULL,
        confirmed_seq INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE journal_member (
        ldev_id INTEGER PRIMARY KEY REFERENCES ldev(id) ON DELETE CASCADE,
        group_id INTEGER NOT NULL REFERENCES journal_group(id)
    );
    """,
    # 6: pairs of asynchronous remote copy; a journal group is on the main
    #    (P-VOL) side or the backup (S-VOL) side, where it records what it applied.
    """
    ALTER TABLE journal_group ADD COLUMN role TEXT NOT NULL DEFAULT 'main';
    ALTER TABLE journal_group ADD COLUMN applied_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE journal_group ADD COLUMN remote_serial INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE pair (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id INTEGER NOT NULL REFERENCES journal_group(id),
        role TEXT NOT NULL,
        local_ldev INTEGER NOT NULL UNIQUE REFERENCES ldev(id),
        remote_ldev INTEGER NOT NULL,
        remote_serial INTEGER NOT NULL,
        state TEXT NOT NULL,
        base_snapshot INTEGER,
        created_at REAL NOT NULL
    );
    """,
    # 7: a split journal group (split_seq not NULL): the main array stopped journaling
    #    after split_seq; the backup applies through it, then its S-VOLs are split
    #    (writable if asked).
    """
    ALTER TABLE journal_group ADD COLUMN split_seq INTEGER;
    ALTER TABLE journal_group ADD COLUMN svol_writable INTEGER NOT NULL DEFAULT 0;
    """,
    # 8: what a takeover gave up: writes acknowledged at the main site, never applied here.
    """
    ALTER TABLE journal_group ADD COLUMN given_up TEXT;
    """,
    # 9: synchronous groups (TrueCopy style): a P-VOL write is acknowledged once applied at the backup.
    """
    ALTER TABLE journal_group ADD COLUMN synchronous INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: inflow control: when the journal is full, host writes wait up to the data
    #     overflow watch time for room before the group suspends (PFUS).
    """
    ALTER TABLE journal_group ADD COLUMN inflow_control INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE journal_group ADD COLUMN overflow_watch REAL NOT NULL DEFAULT 60;
    """,
    # 11: the declared recovery point objective of a group (status and metrics only; 0: none).
    """
    ALTER TABLE journal_group ADD COLUMN rpo_seconds REAL NOT NULL DEFAULT 0;
    """,
    # 12: a main-side group fenced (demoted): its P-VOLs refuse host writes until the other
    #     site takes over (then a failback turns it around) or it is promoted again.
    """
    ALTER TABLE journal_group ADD COLUMN fenced INTEGER NOT NULL DEFAULT 0;
    """,
    # 13: hosts (the nodes a CSI node plugin registers): who may be published to, and how many
    #     LDEVs each may hold at once (0: no limit).
    """
    CREATE TABLE host (
        host_id TEXT PRIMARY KEY,
        max_volumes INTEGER NOT NULL DEFAULT 0,
        registered_at REAL NOT NULL
    );
    """,
    # 14: the backup's own view of its lag (backend/replication/lag.py): journal bytes applied in all
    #     and the main-site time of the newest write applied (the recovery point), made
    #     durable with applied_seq; and the main array's latest account (JSON of Heard).
    """
    ALTER TABLE journal_group ADD COLUMN applied_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE journal_group ADD COLUMN applied_write_ns INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE journal_group ADD COLUMN heard TEXT;
    """,
    # 15: how long host writes waited at the barrier when a snapshot group was taken, kept so
    #     that showing the group later reports what its creation did.
    """
    ALTER TABLE snapshot_group ADD COLUMN stall_micros INTEGER NOT NULL DEFAULT 0;
    """,
    # 16: host access is deny-by-default; an LDEV reachable by every host says so. LDEVs made
    #     before (without "requires publication") stay open, so existing pools keep working.
    """
    ALTER TABLE ldev ADD COLUMN open_to_all INTEGER NOT NULL DEFAULT 0;
    UPDATE ldev SET open_to_all = 1 - require_publication;
    ALTER TABLE ldev DROP COLUMN require_publication;
    """,
    # 17: the last verify of each journal group that ran to its end (backend/replication/verify.py):
    #     when, at which sequence, how many regions compared, differing and skipped, repaired or not.
    """
    CREATE TABLE journal_group_verify (
        group_id INTEGER PRIMARY KEY REFERENCES journal_group(id) ON DELETE CASCADE,
        verified_at REAL NOT NULL,
        seq INTEGER NOT NULL,
        at_split INTEGER NOT NULL,
        region_bytes INTEGER NOT NULL,
        regions_compared INTEGER NOT NULL,
        regions_differing INTEGER NOT NULL,
        regions_skipped INTEGER NOT NULL,
        bytes_compared INTEGER NOT NULL,
        repaired INTEGER NOT NULL,
        seconds REAL NOT NULL
    );
    """,
)
