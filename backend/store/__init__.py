"""The array's one metadata store: SQLite in WAL mode inside the pool folder, split by
aggregate (LDEVs and their access, snapshots, replication, verify results) over one connection.

Every change is one transaction, committed with synchronous=FULL; a change of
several rows opens one around them (`transaction()` nests), so it commits once.
"""

from __future__ import annotations

from backend.store.ldevs import LdevRows
from backend.store.replication import ReplicationRows
from backend.store.snapshots import SnapshotRows
from backend.store.verifications import VerifyRows


class MetadataStore(LdevRows, SnapshotRows, ReplicationRows, VerifyRows):
    """Every aggregate's rows, over one database (backend.store.database)."""
