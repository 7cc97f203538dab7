"""Clones: a new, independent LDEV holding a snapshot's (or an LDEV's) data.

Sparse-aware: only the chunks the source view holds data in are copied
(the LDEV's allocated extents, from SEEK_DATA/SEEK_HOLE, and the preserved
copies), so the clone stays thin. The kernel copies the bytes
(copy_file_range: a reflink where the file system shares blocks, an in-kernel
copy elsewhere), from the live LDEV or from the CoW store's slots. A clone
of an LDEV is a clone of a hidden snapshot taken for it (so writers may go on)
that is deleted when the copy ends.

The copy runs in the background: the new LDEV is COPYING (not exported) with
its progress in `progress(ldev_id)` and in the log, and becomes NORMAL when the
data is durable. A restart resumes every COPYING LDEV from its start.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from backend.errors import FailedPrecondition, InvalidArgument, OutOfRange
from backend.model import LdevRecord, LdevState, SnapshotRecord, SnapshotState
from backend.services import ArrayServices
from backend.snapshots import Snapshots
from backend.write_path import CopySource, HostWrite, WriteKind

log = logging.getLogger(__name__)

PROGRESS_EVERY = 2.0
BATCH_BYTES = 1 << 20


@dataclass
class CopyProgress:
    total_bytes: int = 0
    copied_bytes: int = 0
    started_at: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    cancelled: bool = False


class Cloner:
    def __init__(self, services: ArrayServices, snapshots: Snapshots) -> None:
        self.store = services.store
        self.pool = services.pool
        self.runtimes = services.runtimes
        self.write_path = services.write_path
        self.name_locks = services.name_locks
        self.snapshots = snapshots
        self._progress: dict[int, CopyProgress] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def clone(
        self,
        name: str,
        size: int | None,
        labels: Mapping[str, str],
        source_snapshot: int | None = None,
        source_ldev: int | None = None,
        open_to_all: bool = False,
        qos: tuple[int, int] = (0, 0),
    ) -> LdevRecord:
        """Start cloning; returns the new LDEV (COPYING, or NORMAL for a repeat call)."""
        if (source_snapshot is None) == (source_ldev is None):
            raise InvalidArgument("give exactly one clone source: a snapshot or an LDEV")
        with self.name_locks.hold(name):  # checked under the lock the create below takes
            existing = self.store.find_ldev_by_name(name)
            if existing is not None:  # idempotent by name, like create
                return self.pool.create_ldev(name, size or existing.size, labels, False, open_to_all=open_to_all)
        if source_ldev is not None:
            snapshot = self.snapshots.create_snapshot(
                f"clone-source-{uuid.uuid4().hex}", source_ldev, hidden=True
            )
        else:
            assert source_snapshot is not None
            snapshot = self.store.get_snapshot(source_snapshot)
            if snapshot.state is not SnapshotState.NORMAL or snapshot.hidden:
                raise FailedPrecondition(f"snapshot {source_snapshot} is not ready to clone")
        size = size or snapshot.size
        if size < snapshot.size:
            self._drop_hidden(snapshot)
            raise OutOfRange(f"clone of {size} bytes is smaller than its source's {snapshot.size}")
        source = self.store.get_ldev(snapshot.ldev_id)
        try:
            with self.name_locks.hold(name):
                record = self.pool.create_ldev(
                    name, size, labels, False, source.chunk_size, snapshot.id, open_to_all, qos
                )
        except BaseException:
            self._drop_hidden(snapshot)
            raise
        log.info("clone_started ldev=%s name=%s snapshot=%d size=%d", record.display_id, name, snapshot.id, size)
        self._start(record)
        return record

    def progress(self, ldev_id: int) -> CopyProgress | None:
        with self._lock:
            return self._progress.get(ldev_id)

    def wait(self, ldev_id: int, timeout: float | None = None) -> bool:
        progress = self.progress(ldev_id)
        return progress is None or progress.done.wait(timeout)

    def resume(self) -> None:
        for record in self.store.list_ldevs():
            if record.state is LdevState.COPYING:
                log.info("clone_resumed ldev=%s snapshot=%s", record.display_id, record.clone_source)
                self._start(record)

    def cancel(self, ldev_id: int) -> None:
        progress = self.progress(ldev_id)
        if progress is not None:
            progress.cancelled = True
        thread = self._threads.get(ldev_id)
        if thread is not None:
            thread.join()

    def stop(self) -> None:
        for ldev_id in list(self._threads):
            self.cancel(ldev_id)

    def _start(self, record: LdevRecord) -> None:
        progress = CopyProgress()
        thread = threading.Thread(target=self._run, args=(record, progress), name=f"clone-{record.id:06x}", daemon=True)
        with self._lock:
            self._progress[record.id] = progress
            self._threads[record.id] = thread
        thread.start()

    def _run(self, record: LdevRecord, progress: CopyProgress) -> None:
        try:
            assert record.clone_source is not None
            snapshot = self.store.get_snapshot(record.clone_source)
            self._copy(record, snapshot, progress)
            if progress.cancelled:
                return
            self.store.update_ldev(record.id, state=LdevState.NORMAL, clear_clone_source=True)
            self._drop_hidden(snapshot)
            log.info(
                "clone_finished ldev=%s bytes=%d seconds=%.3f",
                record.display_id,
                progress.copied_bytes,
                time.monotonic() - progress.started_at,
            )
        except Exception as exc:  # the LDEV stays COPYING; a restart retries
            progress.error = str(exc)
            log.exception("clone_failed ldev=%s error=%s", record.display_id, exc)
        finally:
            progress.done.set()
            with self._lock:
                self._threads.pop(record.id, None)

    def _copy(self, record: LdevRecord, snapshot: SnapshotRecord, progress: CopyProgress) -> None:
        source = self.runtimes.get(snapshot.ldev_id)
        target = self.runtimes.get(record.id)
        cow = source.cow
        assert cow is not None
        with source.lock:
            chunks = [c for c, _ in cow.chunk_states(source.file, snapshot.id, snapshot.size)]
        progress.total_bytes = len(chunks) * cow.chunk_size
        last_report = time.monotonic()
        for run_start, run_chunks in _runs(chunks, BATCH_BYTES // cow.chunk_size):
            if progress.cancelled:
                return
            offset = run_start * cow.chunk_size
            length = min(run_chunks * cow.chunk_size, snapshot.size - offset)
            # Under the source's lock no host write changes what the snapshot sees there.
            with source.lock:
                for start, step, where in cow.located_runs(source.file, snapshot.id, offset, length):
                    if where is not None:  # zeroes stay holes in the clone
                        op = HostWrite(WriteKind.COPY, start, step, source=CopySource(*where))
                        self.write_path.apply(target, op, record.size, False)
            progress.copied_bytes += run_chunks * cow.chunk_size
            if time.monotonic() - last_report > PROGRESS_EVERY:
                last_report = time.monotonic()
                log.info(
                    "clone_progress ldev=%s copied=%d total=%d", record.display_id, progress.copied_bytes,
                    progress.total_bytes,
                )  # fmt: skip
        target.file.sync()

    def _drop_hidden(self, snapshot: SnapshotRecord) -> None:
        if snapshot.hidden and self.store.find_snapshot(snapshot.id) is not None:
            self.snapshots.drop([snapshot], None)


def _runs(chunks: list[int], max_run: int):
    """Consecutive chunk numbers grouped into (first, count) runs of at most `max_run`."""
    start = count = None
    for chunk in chunks:
        if start is not None and count is not None and chunk == start + count and count < max_run:
            count += 1
            continue
        if start is not None:
            yield start, count
        start, count = chunk, 1
    if start is not None:
        yield start, count
