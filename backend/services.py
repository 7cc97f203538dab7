"""What the array's managers (snapshots, clones, replication) share, all of it below
them: the pool and its store, the open LDEVs, the one write path and the per-key
locks. A manager gets these and the peers it needs, never the array itself, so
no manager module imports the array's (backend.array composes them)."""

from __future__ import annotations

from dataclasses import dataclass

from backend.pool import Pool
from backend.runtimes import Runtimes
from backend.store import MetadataStore
from backend.write_path import WritePath
from ccopy_common.locks import KeyLocks


@dataclass(frozen=True)
class ArrayServices:
    pool: Pool
    runtimes: Runtimes
    write_path: WritePath
    # Operations on one name (an LDEV, a snapshot, a journal group) or one LDEV number: a second is Busy.
    name_locks: KeyLocks
    id_locks: KeyLocks

    @property
    def store(self) -> MetadataStore:
        return self.pool.store
