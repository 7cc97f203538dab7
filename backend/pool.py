"""The LDEV pool: a folder of sparse backing files plus the metadata store.

Layout of a pool folder:
    pool.db           SQLite metadata (backend.store owns the schema)
    ldevs/NNNNNN.ldev one sparse file per LDEV, named by its number in hex

Creating and deleting an LDEV are two-step (metadata state, then file) so a
crash at any point is finished by `recover()` on the next start: a CREATING
LDEV gets its file and becomes NORMAL (the caller's retry finds it by name), a
DELETING one loses its file and row, a file without a row is removed.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from backend import ldev_io
from backend.errors import AlreadyExists, FailedPrecondition, InvalidArgument, OutOfRange, ResourceExhausted
from backend.model import LdevRecord, LdevState
from backend.store import MetadataStore

log = logging.getLogger(__name__)

SECTOR = 512
NAME_MAX_BYTES = 128
LABEL_KEY_MAX_BYTES = 316  # a Kubernetes qualified name: 253-byte prefix, '/', 63-byte name
LABEL_VALUE_MAX_BYTES = 4096
LABELS_MAX = 64


@dataclass(frozen=True)
class LdevAllocation:
    record: LdevRecord
    allocated_bytes: int


@dataclass(frozen=True)
class PoolCapacity:
    path: str
    total_bytes: int
    free_bytes: int
    provisioned_bytes: int
    allocated_bytes: int
    ldevs: list[LdevAllocation]


def validate_name(name: str) -> None:
    encoded = name.encode("utf-8", "surrogatepass")
    if not 1 <= len(encoded) <= NAME_MAX_BYTES:
        raise InvalidArgument(f"LDEV name must be 1 to {NAME_MAX_BYTES} bytes, got {len(encoded)}")
    if "/" in name or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise InvalidArgument(f"LDEV name {name!r} contains '/' or a control character")


MAX_LDEV_BYTES = (1 << 63) - SECTOR  # off_t and SQLite INTEGER are signed 64-bit


def validate_size(size: int) -> None:
    if size <= 0 or size % SECTOR:
        raise InvalidArgument(f"LDEV size must be a positive multiple of {SECTOR} bytes, got {size}")
    if size > MAX_LDEV_BYTES:
        raise OutOfRange(f"LDEV size {size} exceeds {MAX_LDEV_BYTES} bytes")


def validate_labels(labels: Mapping[str, str]) -> None:
    if len(labels) > LABELS_MAX:
        raise InvalidArgument(f"at most {LABELS_MAX} labels per LDEV, got {len(labels)}")
    for key, value in labels.items():
        if not 1 <= len(key.encode()) <= LABEL_KEY_MAX_BYTES:
            raise InvalidArgument(f"label key {key!r} must be 1 to {LABEL_KEY_MAX_BYTES} bytes")
        if len(value.encode()) > LABEL_VALUE_MAX_BYTES:
            raise InvalidArgument(f"label {key!r} value is longer than {LABEL_VALUE_MAX_BYTES} bytes")


class Pool:
    """LDEV lifecycle and capacity. Callers serialise operations per LDEV."""

    def __init__(self, root: Path, serial: int) -> None:
        self.root = root
        self.ldev_dir = root / "ldevs"
        self.ldev_dir.mkdir(parents=True, exist_ok=True)
        self.store = MetadataStore(root / "pool.db")
        self.serial = self._claim(serial)
        self.recover()

    def close(self) -> None:
        self.store.close()

    def _claim(self, serial: int) -> int:
        """A pool belongs to one array serial for life: its S-VOL pairs and ids name it."""
        stored = self.store.setting("serial")
        if stored is None:
            self.store.set_setting("serial", str(serial))
        elif int(stored) != serial:
            raise FailedPrecondition(f"pool {self.root} belongs to array serial {stored}, not {serial}")
        return serial

    def ldev_path(self, ldev_id: int) -> Path:
        return self.ldev_dir / f"{ldev_id:06x}.ldev"

    def recover(self) -> None:
        for record in self.store.list_ldevs():
            if record.state is LdevState.CREATING:
                self._materialise(record)
                log.info("recovered event=ldev_create_finished ldev=%s name=%s", record.display_id, record.name)
            elif record.state is LdevState.DELETING:
                self._destroy(record)
                log.info("recovered event=ldev_delete_finished ldev=%s", record.display_id)
        known = {self.ldev_path(r.id).stem for r in self.store.list_ldevs()}
        for path in [path for kind in ("ldev", "cow", "bits", "resync") for path in self.ldev_dir.glob(f"*.{kind}")]:
            if path.stem not in known:
                ldev_io.remove(path)
                log.warning("recovered event=orphan_file_removed path=%s", path)

    def create_ldev(
        self,
        name: str,
        size: int,
        labels: Mapping[str, str],
        read_only: bool,
        chunk_size: int = 65536,
        clone_source: int | None = None,
        open_to_all: bool = False,
        qos: tuple[int, int] = (0, 0),
    ) -> LdevRecord:
        """Durable (metadata and file) when it returns. Same name and size: the existing LDEV.

        With `clone_source` (a snapshot id) the LDEV is left COPYING for the cloner. A repeat
        may close an existing LDEV to the hosts it is published to, never open it: an LDEV
        left open by an older array that crashed between two commits is closed by the retry.
        """
        validate_name(name)
        validate_size(size)
        validate_labels(labels)
        existing = self.store.find_ldev_by_name(name)
        if existing is not None:
            if existing.open_to_all and not open_to_all:
                existing = self.store.set_ldev_access(existing.id, open_to_all=False)
            return self._same_or_conflict(existing, size)
        record = self.store.insert_ldev(
            name, size, read_only, labels, chunk_size, clone_source, open_to_all, qos
        )
        return self._materialise(record)

    def _same_or_conflict(self, existing: LdevRecord, size: int) -> LdevRecord:
        if existing.size != size:
            raise AlreadyExists(
                f"LDEV {existing.display_id} named {existing.name!r} exists with size {existing.size}, not {size}"
            )
        if existing.state is LdevState.DELETING:
            raise FailedPrecondition(f"LDEV {existing.display_id} named {existing.name!r} is being deleted")
        if existing.state is LdevState.CREATING:
            return self._materialise(existing)
        return existing

    def _materialise(self, record: LdevRecord) -> LdevRecord:
        try:
            ldev_io.create_sparse(self.ldev_path(record.id), record.size)
        except OSError as exc:
            self.store.delete_ldev(record.id)
            ldev_io.remove(self.ldev_path(record.id))
            raise _pool_error(exc, f"creating LDEV {record.display_id}") from exc
        final = LdevState.COPYING if record.clone_source is not None else LdevState.NORMAL
        return self.store.update_ldev(record.id, state=final)

    def delete_ldev(self, record: LdevRecord) -> None:
        """Gone from metadata and disk when it returns; finished on restart if interrupted."""
        self.store.update_ldev(record.id, state=LdevState.DELETING)
        self._destroy(record)

    def _destroy(self, record: LdevRecord) -> None:
        ldev_io.remove(self.ldev_path(record.id))
        self.store.delete_ldev(record.id)

    def expand_ldev(self, record: LdevRecord, new_size: int) -> LdevRecord:
        validate_size(new_size)
        if new_size < record.size:
            raise OutOfRange(f"LDEV {record.display_id} cannot shrink from {record.size} to {new_size} bytes")
        if new_size == record.size:
            return record
        try:
            ldev_io.resize(self.ldev_path(record.id), new_size)
        except OSError as exc:
            raise _pool_error(exc, f"expanding LDEV {record.display_id}") from exc
        return self.store.update_ldev(record.id, size=new_size)

    def capacity(self) -> PoolCapacity:
        stats = os.statvfs(self.root)
        ldevs = [LdevAllocation(r, self.allocated_bytes(r.id)) for r in self.store.list_ldevs()]
        return PoolCapacity(
            path=str(self.root),
            total_bytes=stats.f_blocks * stats.f_frsize,
            free_bytes=stats.f_bavail * stats.f_frsize,
            provisioned_bytes=sum(a.record.size for a in ldevs),
            allocated_bytes=sum(a.allocated_bytes for a in ldevs),
            ldevs=ldevs,
        )

    def allocated_bytes(self, ldev_id: int) -> int:
        try:
            return os.stat(self.ldev_path(ldev_id)).st_blocks * 512
        except FileNotFoundError:
            return 0


def _pool_error(exc: OSError, doing: str) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceExhausted(f"{doing}: pool is full")
    if exc.errno == errno.EFBIG:
        return OutOfRange(f"{doing}: size exceeds the pool file system's largest file")
    return exc
