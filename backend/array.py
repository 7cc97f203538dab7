"""The array: the pool's LDEVs plus the host sessions open on them.

This is the object both servers share. The gRPC API calls the lifecycle
methods; the NBD server opens a `Session` per connection. All sessions of one
LDEV share one open backing file, so a FLUSH on any connection makes the
writes of every connection durable (NBD_FLAG_CAN_MULTI_CONN is honest).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from backend.errors import FailedPrecondition, NotFound
from backend.ldev_id import format_ldev_id
from backend.ldev_io import Extent, LdevFile
from backend.locks import KeyLocks
from backend.metadata import LdevRecord, LdevState
from backend.pool import Pool, PoolCapacity, validate_labels
from backend.write_path import HostWrite, LdevTarget, WritePath

log = logging.getLogger(__name__)


@dataclass
class _OpenLdev:
    record: LdevRecord
    file: LdevFile
    sessions: int = 0


@dataclass
class Session:
    """One host's view of one LDEV, fixed at open: size and protection do not
    change under a connected host (an expanded LDEV shows on the next open)."""

    array: Array
    ldev: _OpenLdev
    size: int
    read_only: bool
    closed: bool = field(default=False)
    target: LdevTarget = field(init=False)

    def __post_init__(self) -> None:
        self.target = LdevTarget(self.ldev.record.id, self.ldev.file, self.size, self.read_only)

    @property
    def ldev_id(self) -> int:
        return self.ldev.record.id

    @property
    def name(self) -> str:
        return self.ldev.record.name

    def read(self, offset: int, length: int) -> bytes:
        return self.ldev.file.read(offset, length)

    def write(self, op: HostWrite) -> None:
        self.array.write_path.apply(self.target, op)

    def flush(self) -> None:
        self.ldev.file.sync()

    def extents(self, offset: int, length: int) -> Iterator[Extent]:
        return self.ldev.file.extents(offset, length)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.array._close_session(self)


class Array:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.serial = pool.serial
        self.write_path = WritePath()
        self._open: dict[int, _OpenLdev] = {}
        self._sessions_lock = threading.Lock()
        self._name_locks = KeyLocks("LDEV name")
        self._id_locks = KeyLocks("LDEV")

    def close(self) -> None:
        with self._sessions_lock:
            for ldev in self._open.values():
                ldev.file.sync()
                ldev.file.close()
            self._open.clear()
        self.pool.close()

    # -- lifecycle (control path) ------------------------------------------
    def create_ldev(
        self, name: str, size: int, labels: Mapping[str, str] | None = None, read_only: bool = False
    ) -> LdevRecord:
        with self._name_locks.hold(name):
            record = self.pool.create_ldev(name, size, dict(labels or {}), read_only)
        log.info("ldev_created ldev=%s name=%s size=%d", record.display_id, record.name, record.size)
        return record

    def delete_ldev(self, ldev_id: int) -> None:
        with self._id_locks.hold(ldev_id):
            record = self.get_ldev(ldev_id)
            with self._sessions_lock:
                if ldev_id in self._open:
                    sessions = self._open[ldev_id].sessions
                    raise FailedPrecondition(f"LDEV {record.display_id} has {sessions} open NBD session(s)")
                # From here new sessions are refused: the state is no longer NORMAL.
                self.pool.store.update_ldev(ldev_id, state=LdevState.DELETING)
            self.pool.delete_ldev(record)
        log.info("ldev_deleted ldev=%s name=%s", record.display_id, record.name)

    def expand_ldev(self, ldev_id: int, new_size: int) -> LdevRecord:
        with self._id_locks.hold(ldev_id):
            record = self.pool.expand_ldev(self.get_ldev(ldev_id), new_size)
        log.info("ldev_expanded ldev=%s size=%d", record.display_id, record.size)
        return record

    def update_labels(self, ldev_id: int, set_labels: Mapping[str, str], remove: list[str]) -> LdevRecord:
        with self._id_locks.hold(ldev_id):
            record = self.get_ldev(ldev_id)
            merged = {k: v for k, v in record.labels.items() if k not in remove} | dict(set_labels)
            validate_labels(merged)
            return self.pool.store.update_labels(ldev_id, set_labels, remove)

    def get_ldev(self, ldev_id: int) -> LdevRecord:
        return self.pool.store.get_ldev(ldev_id)

    def get_ldev_by_name(self, name: str) -> LdevRecord:
        record = self.pool.store.find_ldev_by_name(name)
        if record is None:
            raise NotFound(f"LDEV named {name!r} not found")
        return record

    def list_ldevs(
        self, after_id: int = -1, limit: int | None = None, label_selector: Mapping[str, str] | None = None
    ) -> list[LdevRecord]:
        return self.pool.store.list_ldevs(after_id, limit, label_selector)

    def capacity(self) -> PoolCapacity:
        return self.pool.capacity()

    def allocated_bytes(self, ldev_id: int) -> int:
        return self.pool.allocated_bytes(ldev_id)

    def open_sessions(self, ldev_id: int) -> int:
        with self._sessions_lock:
            ldev = self._open.get(ldev_id)
            return 0 if ldev is None else ldev.sessions

    # -- sessions (data path) ----------------------------------------------
    def export_names(self) -> list[str]:
        return [r.name for r in self.pool.store.list_ldevs() if r.state is LdevState.NORMAL]

    def describe_export(self, name: str) -> LdevRecord:
        """The LDEV behind an export name, without opening it."""
        record = self.pool.store.find_ldev_by_name(name)
        if record is None or record.state is not LdevState.NORMAL:
            raise NotFound(f"no export named {name!r}")
        return record

    def open_session(self, name: str) -> Session:
        with self._sessions_lock:
            record = self.describe_export(name)
            ldev = self._open.get(record.id)
            if ldev is None:
                ldev = _OpenLdev(record, LdevFile(self.pool.ldev_path(record.id), writable=True))
                self._open[record.id] = ldev
            ldev.sessions += 1
        log.info("session_opened ldev=%s name=%s sessions=%d", format_ldev_id(record.id), name, ldev.sessions)
        return Session(self, ldev, size=record.size, read_only=record.read_only)

    def _close_session(self, session: Session) -> None:
        with self._sessions_lock:
            ldev = session.ldev
            ldev.sessions -= 1
            if ldev.sessions == 0:
                # Closing must not lose acknowledged writes: sync before the fd goes.
                ldev.file.sync()
                ldev.file.close()
                del self._open[ldev.record.id]
        log.info("session_closed ldev=%s sessions=%d", format_ldev_id(ldev.record.id), ldev.sessions)
