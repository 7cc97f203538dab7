"""Per-region digests of a snapshot's view, as online verify compares them
(backend.replication.verify), and the comparison itself.

A region's digest is BLAKE2b-128 of its bytes as the snapshot sees them. A hole
reads as zeroes, so a region the S-VOL never allocated and a zero-filled region
of its P-VOL are equal; a region that is holes only is not read, its digest is
that of its length of zeroes. Each array digests its own volumes: only the
digests cross the link, 16 bytes a region.

Everything here is pure but `snapshot_digests`, which reads a snapshot one region
at a time under its LDEV's lock (host writes slip in between regions).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from dataclasses import dataclass

from backend.diff_bitmap import REGION_BYTES as BITMAP_REGION_BYTES
from backend.errors import ArrayError, InvalidArgument
from backend.ldev_io import read_range
from backend.runtimes import LdevRuntime

log = logging.getLogger(__name__)

REGION_BYTES = 1 << 20
DIGEST_BYTES = 16
PART_REGIONS = 1 << 16  # digests in one answer of the backup: 1 MiB of them, 64 GiB of S-VOL
PROGRESS_EVERY = 2.0


class VerifyCancelled(ArrayError):
    """The verify this reading served ended (the other side failed): stop reading."""


class Progress:
    """Bytes digested so far, logged every PROGRESS_EVERY seconds as a long verify goes on."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done = what, total, 0
        self.cancelled = threading.Event()
        self._reported = time.monotonic()

    def add(self, nbytes: int) -> None:
        if self.cancelled.is_set():
            raise VerifyCancelled(f"verify {self.what}: cancelled")
        self.done += nbytes
        if time.monotonic() - self._reported > PROGRESS_EVERY:
            self._reported = time.monotonic()
            log.info("verify_progress %s bytes_done=%d bytes_total=%d", self.what, self.done, self.total)


def check_region_bytes(region_bytes: int) -> None:
    """A region is a power of two, whole differential-bitmap regions, 64 KiB to 64 MiB."""
    if region_bytes & (region_bytes - 1) or not BITMAP_REGION_BYTES <= region_bytes <= 64 << 20:
        raise InvalidArgument(f"a verify region is a power of two from 64 KiB to 64 MiB, not {region_bytes}")


def region_count(size: int, region_bytes: int) -> int:
    return -(-size // region_bytes)


def region_span(region: int, size: int, region_bytes: int) -> tuple[int, int]:
    """(offset, length) of a region, the last one clipped to the LDEV's size."""
    offset = region * region_bytes
    return offset, max(0, min(region_bytes, size - offset))


def digest(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()


@functools.cache
def zeroes_digest(length: int) -> bytes:
    return digest(bytes(length))


def snapshot_digests(
    runtime: LdevRuntime, gen: int, size: int, region_bytes: int, first: int, count: int, progress: Progress
) -> bytes:
    """The digests of regions [first, first + count) of snapshot `gen` of the LDEV, back to back."""
    out = bytearray()
    for region in range(first, min(first + count, region_count(size, region_bytes))):
        offset, length = region_span(region, size, region_bytes)
        out += region_digest(runtime, gen, offset, length)
        progress.add(length)
    return bytes(out)


def region_digest(runtime: LdevRuntime, gen: int, offset: int, length: int) -> bytes:
    """One region of the snapshot's view: its bytes read under the LDEV's lock (the view holds
    still meanwhile), holes not read; hashed outside it."""
    cow, file = runtime.cow, runtime.file
    assert cow is not None, "a snapshot's LDEV has a copy-on-write store"
    pieces: list[bytes | int] = []  # bytes read, or a number of zeroes
    with runtime.lock:
        for _, step, where in cow.located_runs(file, gen, offset, length):
            hole = where is None or (where[0] == file.fd and file.is_hole(where[1], step))
            pieces.append(step if hole else read_range(where[0], where[1], step))
    if all(isinstance(piece, int) for piece in pieces):
        return zeroes_digest(length)
    hasher = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for piece in pieces:
        hasher.update(bytes(piece) if isinstance(piece, int) else piece)
    return hasher.digest()


def marked_regions(bits: bytes, size: int, region_bytes: int) -> set[int]:
    """The verify regions holding a marked differential-bitmap region (backend.diff_bitmap bits)."""
    per_region = region_bytes // BITMAP_REGION_BYTES
    last = region_count(size, region_bytes)
    found = set()
    for index, byte in enumerate(bits):
        if byte:
            found.update((index * 8 + bit) // per_region for bit in range(8) if byte >> bit & 1)
    return {r for r in found if r < last}


def differing(ours: bytes, theirs: bytes, skipped: set[int]) -> list[int]:
    """Regions whose digests differ, in order, leaving out `skipped`; a region only one side
    has (the sizes differ) differs."""
    regions = max(len(ours), len(theirs)) // DIGEST_BYTES
    return [
        region
        for region in range(regions)
        if region not in skipped
        and ours[region * DIGEST_BYTES : (region + 1) * DIGEST_BYTES]
        != theirs[region * DIGEST_BYTES : (region + 1) * DIGEST_BYTES]
    ]


@dataclass(frozen=True)
class Comparison:
    """One P-VOL against its S-VOL: the regions that differ, and how much was compared."""

    differing: list[tuple[int, int]]  # (offset, length)
    compared: int  # regions
    skipped: int  # regions marked in either bitmap: not compared
    compared_bytes: int


def compare(
    ours: bytes, our_size: int, our_changed: bytes, theirs: bytes, their_size: int, their_changed: bytes,
    region_bytes: int,
) -> Comparison:  # fmt: skip
    """Compare two volumes' digests, leaving out the regions either side's bitmap marks."""
    size = max(our_size, their_size)
    skipped = marked_regions(our_changed, size, region_bytes) | marked_regions(their_changed, size, region_bytes)
    regions = region_count(size, region_bytes)
    found = [region_span(r, size, region_bytes) for r in differing(ours, theirs, skipped)]
    compared_bytes = sum(region_span(r, size, region_bytes)[1] for r in range(regions) if r not in skipped)
    return Comparison(found, regions - len(skipped), len(skipped), compared_bytes)
