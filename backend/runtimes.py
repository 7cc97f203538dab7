"""The LDEVs open in this process: one `LdevRuntime` each, kept in one registry.

Every LDEV in use has one runtime: one open backing file (so a FLUSH on any
connection makes the writes of every connection durable and
NBD_FLAG_CAN_MULTI_CONN is honest), one gate (its write lock, which snapshot
barriers take, shared with the native threads that serve NBD; see
backend/native/gate.h) and, once it has snapshots, its copy-on-write store. The registry opens a
runtime on first use and is the one place that knows the files beside an
LDEV's data (its CoW store and its bitmaps).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from backend._nbdcore import ROUTE_JOURNAL, ROUTE_PLAIN, ROUTE_PYTHON, Gate
from backend.copy_batches import CopyBatches
from backend.cow_store import CowStore
from backend.diff_bitmap import DiffBitmap
from backend.errors import Busy
from backend.journal import Journal
from backend.ldev_io import LdevFile
from backend.model import SnapshotState
from backend.pool import Pool
from backend.qos import QosLimiter

# How long a barrier waits for in-flight writes to an LDEV to finish.
BARRIER_TIMEOUT = 5.0


class Revocable(Protocol):
    """A host session as the runtime knows it: unpublishing cuts it."""

    closed: bool

    def revoke(self) -> None: ...


# What decides where a write goes (LdevRuntime.gate's route).
_ROUTE_FIELDS = frozenset({"cow", "journal", "diff", "fenced"})


@dataclass
class LdevRuntime:
    """An LDEV open in this process."""

    ldev_id: int
    file: LdevFile
    cow: CowStore | None = None
    sessions: int = 0
    # Sessions per snapshot id: a snapshot in use cannot be deleted.
    snapshot_sessions: dict[int, int] = field(default_factory=dict)
    # Set while an operation (restore) needs the LDEV to itself.
    busy: str | None = None
    qos: QosLimiter = field(default_factory=QosLimiter)
    # The LDEV's current size; expansion updates it for sessions that may grow.
    size: int = 0
    # A P-VOL of a fenced (demoted) journal group: host writes are refused (pair_ops.fence).
    fenced: bool = False
    # Set while the LDEV is a P-VOL of a journal group: its writes are journaled.
    # Only backend.replication.journal_groups sets it (one owner of that decision).
    journal: Journal | None = None
    # Set while its pair is suspended or its S-VOL took over: writes mark regions for resync.
    diff: DiffBitmap | None = None
    # Makes the copies for snapshots of host writes waiting for them durable in batches
    # (made by backend.sessions on the first such write).
    copy_batches: CopyBatches | None = None
    # Sessions opened through each publication token, revoked on unpublish.
    by_token: dict[str, list[Revocable]] = field(default_factory=dict)
    # The write lock, the route and the request statistics, shared with native threads.
    gate: Gate = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gate", Gate(self.file.fd, self.size, self.qos, self.ldev_id))
        self._set_route()

    def __setattr__(self, name: str, value: object) -> None:
        """Keep the gate told where writes go: a native thread writes the data of an LDEV whose
        writes need nothing else, and journals then writes a P-VOL's; the rest take the write
        path. The route fields, and the CoW store's live generations (it tells through
        on_generations), change under the write lock (their owners' rule), so a native write
        either finished before the change or sees it."""
        super().__setattr__(name, value)
        if name == "cow" and value is not None:
            value.on_generations = self._set_route  # type: ignore[attr-defined]
        if name in _ROUTE_FIELDS and "gate" in self.__dict__:
            self._set_route()
        elif name == "size" and "gate" in self.__dict__:
            self.gate.size = value

    def _set_route(self) -> None:
        """Copy-on-write matters while a snapshot (a hidden one too: a pair's base) is live."""
        if self.has_snapshots or self.diff is not None or self.fenced:
            self.gate.set_route(ROUTE_PYTHON)
        elif self.journal is not None:
            self.gate.set_route(ROUTE_JOURNAL, self.journal.core)
        else:
            self.gate.set_route(ROUTE_PLAIN)

    @property
    def lock(self) -> Gate:
        """The LDEV's write lock (the gate, used as a threading.Lock)."""
        return self.gate

    @property
    def has_snapshots(self) -> bool:
        return self.cow is not None and bool(self.cow.live_gens)

    def close(self) -> None:
        self.file.close()
        if self.cow is not None:
            self.cow.close()
        if self.diff is not None:
            self.diff.close()


class Runtimes:
    """The registry. `route_on_open` says where a newly opened LDEV's writes go (the journal
    its writes are journaled in, if any, and whether they mark its differential bitmap):
    the journal groups decide that from the pair state, not the registry."""

    def __init__(self, pool: Pool, route_on_open: Callable[[int], tuple[Journal | None, bool]]) -> None:
        self.pool = pool
        self.store = pool.store
        self.ldev_dir = pool.ldev_dir
        self.route_on_open = route_on_open
        self._open: dict[int, LdevRuntime] = {}
        # Held while sessions are counted and runtimes opened or forgotten.
        self.guard = threading.RLock()

    def get(self, ldev_id: int) -> LdevRuntime:
        """The open runtime of an LDEV, opening its file and CoW store if needed."""
        with self.guard:
            runtime = self._open.get(ldev_id)
            if runtime is None:
                runtime = self._load(ldev_id)
                self._open[ldev_id] = runtime
            return runtime

    def _load(self, ldev_id: int) -> LdevRuntime:
        record = self.store.get_ldev(ldev_id)
        runtime = LdevRuntime(ldev_id, LdevFile(self.pool.ldev_path(ldev_id), writable=True))
        runtime.qos.update(record.max_iops, record.max_mbps)  # clones get theirs at creation
        runtime.size = record.size
        runtime.journal, tracked = self.route_on_open(ldev_id)
        pair = self.store.find_pair_by_ldev(ldev_id)
        if pair is not None and pair.role == "main":
            runtime.fenced = self.store.get_journal_group(pair.group_id).fenced
        live = [
            s.id
            for s in self.store.list_snapshots(ldev_id=ldev_id, include_hidden=True)
            if s.state is SnapshotState.NORMAL  # CREATING ones join at their barrier
        ]
        if live or self.cow_path(ldev_id).exists():
            runtime.cow = CowStore(self.cow_path(ldev_id), record.chunk_size, live)
        # A bitmap left while the route says otherwise is kept: its marks may still be owed to
        # a resync (an S-VOL's, handed over at the start of one whose answer was lost).
        if tracked or self.bitmap_path(ldev_id).exists():
            runtime.diff = DiffBitmap(self.bitmap_path(ldev_id), record.size)
        return runtime

    def find(self, ldev_id: int) -> LdevRuntime | None:
        """The runtime if the LDEV is open, without opening it."""
        with self.guard:
            return self._open.get(ldev_id)

    def all(self) -> list[LdevRuntime]:
        """The LDEVs with open files (in use since the array started): what metrics read."""
        with self.guard:
            return list(self._open.values())

    def open_sessions(self, ldev_id: int) -> int:
        runtime = self.find(ldev_id)
        return 0 if runtime is None else runtime.sessions

    @contextmanager
    def hold_writes(self, ldev_ids: Iterable[int]) -> Iterator[list[LdevRuntime]]:
        """A write barrier: new writes to every LDEV wait while in-flight ones finish.

        The write locks are taken in LDEV id order (no deadlock between two
        barriers); inside, nothing is written to any of them: one instant.
        """
        runtimes = [self.get(i) for i in sorted(set(ldev_ids))]
        with ExitStack() as held:
            for runtime in runtimes:
                if not runtime.lock.acquire(timeout=BARRIER_TIMEOUT):
                    raise Busy(f"writes to LDEV {runtime.ldev_id:06x} did not drain in {BARRIER_TIMEOUT}s")
                held.callback(runtime.lock.release)
            yield runtimes

    # -- the files beside an LDEV's data ------------------------------------------------
    def cow_path(self, ldev_id: int) -> Path:
        return self.ldev_dir / f"{ldev_id:06x}.cow"

    def bitmap_path(self, ldev_id: int) -> Path:
        return self.ldev_dir / f"{ldev_id:06x}.bits"

    def resync_path(self, ldev_id: int) -> Path:
        """The regions a running resync copies (a bitmap set aside when it started)."""
        return self.ldev_dir / f"{ldev_id:06x}.resync"

    def track_changes(self, runtime: LdevRuntime) -> DiffBitmap:
        """From now on writes to the LDEV mark its differential bitmap (call under its write lock)."""
        if runtime.diff is None:
            runtime.diff = DiffBitmap(self.bitmap_path(runtime.ldev_id), self.store.get_ldev(runtime.ldev_id).size)
        return runtime.diff

    def set_aside_for_resync(self, runtime: LdevRuntime) -> None:
        """The bitmap becomes the set of regions a resync copies; writes stop marking it (under the write lock).

        A resync set aside before and not finished (its start crashed before the pair was
        COPY, and the resync was asked again) is added to it, never replaced: its regions
        were marked nowhere else."""
        unfinished = self.resync_path(runtime.ldev_id)
        if unfinished.exists():
            previous = DiffBitmap(unfinished, self.store.get_ldev(runtime.ldev_id).size)
            self.track_changes(runtime).merge(previous.snapshot_bits())
            previous.close()
        os.replace(self.bitmap_path(runtime.ldev_id), self.resync_path(runtime.ldev_id))
        if runtime.diff is not None:
            runtime.diff.close()
            runtime.diff = None

    def stop_tracking_changes(self, runtime: LdevRuntime) -> None:
        if runtime.diff is not None:
            runtime.diff.discard()
            runtime.diff = None

    def ensure_cow(self, runtime: LdevRuntime, chunk_size: int) -> CowStore:
        if runtime.cow is None:
            runtime.cow = CowStore(self.cow_path(runtime.ldev_id), chunk_size, [])
        return runtime.cow

    def set_size(self, ldev_id: int, size: int) -> None:
        """An expansion: sessions that may grow see the new size."""
        runtime = self.find(ldev_id)
        if runtime is not None:
            runtime.size = size

    def forget(self, ldev_id: int) -> None:
        """The LDEV is being deleted: close its files and remove the ones beside its data."""
        with self.guard:
            runtime = self._open.pop(ldev_id, None)
        if runtime is not None:
            runtime.close()
        for path in (self.cow_path(ldev_id), self.bitmap_path(ldev_id), self.resync_path(ldev_id)):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        with self.guard:
            for runtime in self._open.values():
                runtime.file.sync()
                runtime.close()
            self._open.clear()
