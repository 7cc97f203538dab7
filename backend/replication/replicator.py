"""The backup side's apply loop, one thread per backup journal group.

Each round: first the initial copy of any pair still in COPY (the P-VOL's base
snapshot, allocated data only); only when every pair of the group holds its
base does it apply the journal, strictly in sequence order:

1. pull records from the last one received + 1 (a long poll at the main
   array), telling it the durable applied_seq so it may trim its journal;
   the pull of the next batch is already on its way while this one applies;
2. check every record's CRC (end to end: written by the main array's write
   path), then apply each, in order, through the write path to its S-VOL (one
   record at a time, so a snapshot group taken here falls on a sequence
   boundary);
3. make the touched S-VOLs durable (fdatasync);
4. record applied_seq, with the journal bytes applied, the newest write's
   main-site time and the main array's latest account (backend/replication/lag.py), in
   one SQLite transaction (durable); the next pull confirms it.

A crash between 3 and 4 re-applies records the S-VOLs already hold: writes
are absolute (offset, data), so applying them again in the same order gives
the same state. A cut link, a damaged batch or a restarted array drops the
batch in flight and starts again from the durable applied_seq.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from backend.errors import NotFound
from backend.journal_record import JournalRecord, RecordKind, decode_all
from backend.model import PairRecord, PairState
from backend.replication.lag import Applied, Heard, applied_of, heard_from
from backend.replication.pair_ops import PairOperations
from backend.replication.pair_states import PairOp, next_state
from backend.replication.remote import BaseChunk, JournalBatch, RemoteArray, RemoteLink
from backend.services import ArrayServices
from backend.write_path import HostWrite, WriteKind

log = logging.getLogger(__name__)

PULL_BYTES = 4 << 20
# An initial copy or resync reads the base in parts this big, this many reads at once.
PART_BYTES = 64 << 20
READ_AHEAD = 3
MIN_PULL_BYTES = 64 << 10  # enough to learn the main side's state
POLL_WAIT = 0.5
# After a small batch the next pull waits this long, so that records travel
# and are made durable in batches rather than one by one: a little lag bought
# back as CPU for the hosts' writes at the main site.
LINGER = 0.02
BACKOFF_MAX = 0.5
# While the main array has nothing new to say, its account (the time of last contact) is
# made durable this often: a takeover after a disaster reports contact this fresh at worst.
HEARD_EVERY = 1.0
# How the main side was split -> the operation that splits the backup's side the same way.
SUSPENSIONS = {"PSUS": PairOp.SPLIT, "PSUE": PairOp.SUSPEND_ERROR, "PFUS": PairOp.JOURNAL_FULL}
_KINDS = {RecordKind.WRITE: WriteKind.DATA, RecordKind.TRIM: WriteKind.TRIM, RecordKind.ZEROES: WriteKind.ZEROES}


class BaseReader:
    """Reads of a base snapshot for the initial copy or a resync, READ_AHEAD at a time, so the
    main array reads and sends while this array writes. The base is cut into parts of
    PART_BYTES read side by side (each in order, PULL_BYTES per call); answers come back in
    the order asked, which is not the order of the offsets: a copy's order does not matter,
    only that it ends whole."""

    def __init__(
        self, executor: ThreadPoolExecutor, remote: RemoteArray, pvol_id: int, snapshot_id: int, size: int
    ) -> None:
        self.executor, self.remote = executor, remote
        self.pvol_id, self.snapshot_id, self.size = pvol_id, snapshot_id, size
        self.parts = iter(range(0, size, PART_BYTES))
        self.asked: collections.deque[Future[tuple[int, BaseChunk]]] = collections.deque()
        self._fill()

    def next(self) -> BaseChunk | None:
        """The next answer; None once every part was read to its end."""
        if not self.asked:
            return None
        end, chunk = self.asked.popleft().result()
        if chunk.next_offset:
            self._ask(chunk.next_offset, end)  # the rest of that part
        self._fill()
        return chunk

    def _fill(self) -> None:
        while len(self.asked) < READ_AHEAD:
            start = next(self.parts, None)
            if start is None:
                return
            self._ask(start, min(start + PART_BYTES, self.size))

    def _ask(self, offset: int, end: int) -> None:
        def read() -> tuple[int, BaseChunk]:
            return end, self.remote.read_base(self.pvol_id, self.snapshot_id, offset, PULL_BYTES, end)

        self.asked.append(self.executor.submit(read))


class Replicator(threading.Thread):
    def __init__(self, services: ArrayServices, link: RemoteLink, pair_ops: PairOperations, group_id: int) -> None:
        super().__init__(name=f"replicator-{group_id}", daemon=True)
        self.store = services.store
        self.runtimes = services.runtimes
        self.write_path = services.write_path
        self.link = link
        self.pair_ops = pair_ops
        self.group_id = group_id
        self.stopping = threading.Event()
        self.kick = threading.Event()
        self.last_error = ""
        self.transferred_bytes = 0  # write payload applied since this loop started: the transfer rate
        self.started_at = time.monotonic()
        self.heard_kept: Heard | None = None  # the main array's account as last made durable
        # Pair id -> (bytes copied, bytes to copy) of its latest initial copy or resync.
        self.copy_progress: dict[int, tuple[int, int]] = {}
        self.puller = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pull-{group_id}")
        # Reads of a base snapshot (initial copy, resync), ahead of the one being written.
        self.reader = ThreadPoolExecutor(max_workers=READ_AHEAD, thread_name_prefix=f"base-{group_id}")
        self.in_flight: tuple[int, Applied, Future[JournalBatch]] | None = None  # (from_seq, applied then, pull)

    def stop(self) -> None:
        self.stopping.set()
        self.kick.set()

    def status(self) -> dict[str, float]:
        """The transfer rate of this loop; the lag itself is the store's (backend.replication.lag)."""
        elapsed = max(time.monotonic() - self.started_at, 1e-6)
        return {"transfer_bytes_per_second": self.transferred_bytes / elapsed}

    def run(self) -> None:
        backoff = 0.05
        while not self.stopping.is_set():
            try:
                worked = self.round()
                self.last_error = ""
                backoff = 0.05
                if not worked:
                    self.kick.wait(0.05)
                    self.kick.clear()
            except Exception as exc:
                self.in_flight = None  # start again from the durable applied_seq
                if self.last_error != str(exc):
                    log.warning("replication_retry group=%d error=%s", self.group_id, exc)
                self.last_error = str(exc)
                self.kick.wait(backoff)
                self.kick.clear()
                backoff = min(backoff * 2, BACKOFF_MAX)
        self.puller.shutdown(wait=False, cancel_futures=True)
        self.reader.shutdown(wait=False, cancel_futures=True)

    def round(self) -> bool:
        """One step of work; False when there was nothing to do."""
        remote = self.link.get()
        group = self.store.get_journal_group(self.group_id)
        if group.role != "backup":
            return False  # this array became the main side (failback)
        pairs = self.store.list_pairs(self.group_id)
        copying = [p for p in pairs if p.state is PairState.COPY]
        if copying:
            ready = [p for p in copying if p.base_snapshot is not None]
            for pair in ready:
                if not self.initial_copy(group.name, pair):
                    return True  # the main array suspended the group mid-copy: followed
            if ready and all(p.state is not PairState.COPY for p in self.store.list_pairs(self.group_id)):
                self.pair_ops.resync_finished(self.group_id)
            return bool(ready)
        by_pvol = {p.remote_ldev: p for p in pairs if p.state is PairState.PAIR}
        if not by_pvol:
            return False  # split or suspended: idle until a resync wakes it
        if any(p.base_snapshot is not None for p in by_pvol.values()):
            self.complete_owed(group.name)  # the copies finished in an earlier round or life
            if len(by_pvol) == len(pairs):
                self.pair_ops.resync_finished(self.group_id)
        held = applied_of(group)
        applied = held.seq
        if self.in_flight is None or self.in_flight[0] <= applied:
            self._pull(remote, group.name, applied + 1, held)
        from_seq, held_at_pull, pull = self.in_flight
        batch = pull.result()
        heard = heard_from(batch.unapplied, held_at_pull)
        records = decode_all(batch.records)  # a record damaged on the way raises Corrupt: pulled again
        if from_seq != applied + 1 or (records and records[0].seq != from_seq):
            self.in_flight = None  # applied_seq moved under us (restart, resync): pull again
            return True
        if not records:
            self.keep_heard(heard)
        if not records and batch.split_seq is not None and applied >= batch.split_seq:
            self.in_flight = None
            self.split_like_main(batch)  # applied through the split point
            return True
        following = records[-1].seq + 1 if records else from_seq
        if batch.synchronous:
            # Writers wait for the applied sequence: the next pull carries it as soon as it is durable.
            self.in_flight = None
        else:
            small = 0 < len(batch.records) < PULL_BYTES // 2
            self._pull(remote, group.name, following, held, linger=LINGER if small else 0.0)
        if not records:
            return batch.synchronous  # synchronous: poll again at once
        journal_bytes = self.apply(records, by_pvol, applied)
        self.store.set_applied(
            self.group_id, records[-1].seq, held.bytes + journal_bytes, records[-1].timestamp_ns, heard.to_json()
        )
        self.heard_kept = heard
        return True

    def keep_heard(self, heard: Heard) -> None:
        """Make the main array's account durable when it says something new, and at least
        every HEARD_EVERY seconds while it says nothing new (the time of last contact)."""
        kept = self.heard_kept
        unchanged = kept is not None and replace(heard, contact_ns=kept.contact_ns) == kept
        if unchanged and heard.contact_ns - kept.contact_ns <= HEARD_EVERY * 1e9:  # type: ignore[union-attr]
            return  # nothing new, and the contact kept is recent enough
        self.store.set_heard(self.group_id, heard.to_json())
        self.heard_kept = heard

    def _pull(self, remote: RemoteArray, group_name: str, from_seq: int, held: Applied, linger: float = 0.0) -> None:
        """Send the next pull ahead: it travels while the current batch is applied."""

        def pull() -> JournalBatch:
            if linger:
                time.sleep(linger)
            return remote.pull_journal(group_name, from_seq, held.seq, PULL_BYTES, POLL_WAIT)

        self.in_flight = (from_seq, held, self.puller.submit(pull))

    def apply(self, records: list[JournalRecord], by_pvol: dict[int, PairRecord], applied: int) -> int:
        """Apply the records in order and make the S-VOLs durable; the journal bytes they took
        (every record counts, applied or not: the main array counts them so)."""
        touched = {}
        journal_bytes = 0
        self._copy_ahead(records, by_pvol)
        for record in records:
            if record.seq != applied + 1:
                raise RuntimeError(f"journal gap: expected {applied + 1}, got {record.seq}")
            journal_bytes += record.encoded_size
            pair = by_pvol.get(record.ldev_id)
            if pair is None:  # its pair was deleted after the record was journaled: nothing to apply it to
                applied = record.seq
                continue
            runtime = self.runtimes.get(pair.local_ldev)
            op = HostWrite(
                _KINDS[record.kind], record.offset, record.length, record.data or None,
                keep_allocated=record.keep_allocated,
            )  # fmt: skip
            # Replication writes reach the S-VOL although hosts may only read it.
            self.write_path.apply(runtime, op, runtime.size or self.store.get_ldev(pair.local_ldev).size, False)
            touched[pair.local_ldev] = runtime
            applied = record.seq
            self.transferred_bytes += record.length if record.kind is RecordKind.WRITE else 0
        for runtime in touched.values():
            runtime.file.sync()
        return journal_bytes

    def _copy_ahead(self, records: list[JournalRecord], by_pvol: dict[int, PairRecord]) -> None:
        """S-VOLs with snapshots (consistent copies taken at the backup while replication goes
        on) preserve what the batch overwrites with one sync each, not one per record."""
        kept = {pvol: pair.local_ldev for pvol, pair in by_pvol.items()
                if self.runtimes.get(pair.local_ldev).has_snapshots}  # fmt: skip
        if not kept:  # the usual case: no work per record
            return
        ranges: dict[int, list[tuple[int, int]]] = {}
        for record in records:
            if record.ldev_id in kept:
                ranges.setdefault(kept[record.ldev_id], []).append((record.offset, record.length))
        for svol, svol_ranges in ranges.items():
            self.write_path.copy_ahead(self.runtimes.get(svol), svol_ranges)

    def initial_copy(self, group_name: str, pair: PairRecord) -> bool:
        """Copy the P-VOL's base snapshot; False if the main array suspended the group meanwhile."""
        remote = self.link.get()
        assert pair.base_snapshot is not None
        runtime = self.runtimes.get(pair.local_ldev)
        size = self.store.get_ldev(pair.local_ldev).size
        copied, total, last_report = 0, 0, time.monotonic()
        reader = BaseReader(self.reader, remote, pair.remote_ldev, pair.base_snapshot, size)
        while True:
            try:
                chunk = reader.next()
            except NotFound:
                if self.follow_suspension(remote, group_name):
                    return False
                raise
            if chunk is None:
                break
            total = chunk.total_bytes or total  # told with the answer for offset 0
            # A resync writes over S-VOLs that a snapshot keeps (the backup's point to go back to).
            self.write_path.copy_ahead(runtime, ((start, len(data)) for start, data in chunk.pieces))
            for start, data in chunk.pieces:
                self.write_path.apply(runtime, HostWrite(WriteKind.DATA, start, len(data), data), size, False)
                copied += len(data)
            self.copy_progress[pair.id] = (copied, total)
            if time.monotonic() - last_report > 2.0:
                last_report = time.monotonic()
                log.info("initial_copy_progress pair=%d copied=%d total=%d", pair.id, copied, total)
        runtime.file.sync()
        # PAIR here, with the base still named until the main array heard it (complete_owed).
        self.store.update_pair(pair.id, state=next_state(pair.state, PairOp.COPY_DONE))
        self.complete_owed(group_name)
        log.info("initial_copy_done pair=%d svol=%06x bytes=%d", pair.id, pair.local_ldev, copied)
        return True

    def complete_owed(self, group_name: str) -> None:
        """Tell the main array of every copy done here that it has not heard of yet: an S-VOL
        that is PAIR and still names its base. Asked again after a lost call or a restart,
        else the main side's pair would stay COPY, keeping its base, and refuse a split."""
        for pair in self.store.list_pairs(self.group_id):
            if pair.state is PairState.PAIR and pair.base_snapshot is not None:
                self.link.get().complete_initial_copy(group_name, pair.remote_ldev)
                self.store.update_pair(pair.id, clear_base=True)

    def follow_suspension(self, remote: RemoteArray, group_name: str) -> bool:
        """The base snapshot went away under an initial copy: if the main array suspended the
        group (a path watch while this array was down), suspend this side the same way, so a
        resync can start over instead of this loop asking for the base forever."""
        applied = self.store.get_journal_group(self.group_id).applied_seq
        batch = remote.pull_journal(group_name, applied + 1, applied, MIN_PULL_BYTES, 0.0)
        if batch.split_seq is None:
            return False
        log.warning("initial_copy_suspended group=%d state=%s", self.group_id, batch.split_state)
        self.split_like_main(batch)
        return True

    def split_like_main(self, batch: JournalBatch) -> None:
        """Split or suspend this side's pairs the way the main array did (PSUS, PSUE, PFUS)."""
        why = SUSPENSIONS.get(batch.split_state, PairOp.SPLIT)
        self.pair_ops.split_secondary(self.group_id, batch.svol_writable, why)


class Replicators:
    """The apply loops of this array's backup journal groups."""

    def __init__(self, services: ArrayServices, link: RemoteLink, pair_ops: PairOperations) -> None:
        self.services = services
        self.store = services.store
        self.link = link
        self.pair_ops = pair_ops
        self.threads: dict[int, Replicator] = {}

    def start(self) -> None:
        for group in self.store.list_journal_groups():
            if group.role == "backup":
                self.ensure(group.id)

    def ensure(self, group_id: int) -> Replicator:
        thread = self.threads.get(group_id)
        if thread is None or not thread.is_alive():
            thread = Replicator(self.services, self.link, self.pair_ops, group_id)
            self.threads[group_id] = thread
            thread.start()
        return thread

    def wake(self, group_id: int) -> None:
        self.ensure(group_id).kick.set()

    def get(self, group_id: int) -> Replicator | None:
        return self.threads.get(group_id)

    def halt(self, group_id: int) -> None:
        """Stop a group's apply loop and wait until no record is being applied (takeover)."""
        thread = self.threads.get(group_id)
        if thread is not None:
            thread.stop()
            thread.join(30)

    def stop(self) -> None:
        for thread in self.threads.values():
            thread.stop()
        for thread in self.threads.values():
            thread.join(10)
