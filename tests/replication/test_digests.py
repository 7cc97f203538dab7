"""The pure part of verify (backend/replication/digests.py): which regions a bitmap
covers, what differs, holes and zeroes equal."""

from __future__ import annotations

import pytest

from backend.array import Array
from backend.diff_bitmap import REGION_BYTES as BITMAP_REGION
from backend.errors import InvalidArgument
from backend.pool import Pool
from backend.replication.digests import (
    DIGEST_BYTES,
    REGION_BYTES,
    check_region_bytes,
    compare,
    differing,
    digest,
    marked_regions,
    region_digest,
    zeroes_digest,
)
from backend.write_path import HostWrite, WriteKind

MIB = 1 << 20


def bits_with(*bitmap_regions: int, size: int) -> bytes:
    regions = -(-size // BITMAP_REGION)
    bits = bytearray(-(-regions // 8))
    for region in bitmap_regions:
        bits[region >> 3] |= 1 << (region & 7)
    return bytes(bits)


def test_a_marked_bitmap_region_covers_the_verify_region_it_lies_in():
    per = REGION_BYTES // BITMAP_REGION
    bits = bits_with(0, per - 1, 3 * per + 5, size=8 * MIB)
    assert marked_regions(bits, 8 * MIB, REGION_BYTES) == {0, 3}
    assert marked_regions(b"", 8 * MIB, REGION_BYTES) == set()


def test_differing_regions_skip_the_marked_and_count_what_one_side_lacks():
    a = [digest(bytes([i]) * 10) for i in range(4)]
    ours = b"".join(a)
    theirs = b"".join([a[0], digest(b"other"), a[2], digest(b"other")])
    assert differing(ours, theirs, set()) == [1, 3]
    assert differing(ours, theirs, {3}) == [1]
    assert differing(ours, theirs[: 2 * DIGEST_BYTES], {1}) == [2, 3]


def test_compare_reports_offsets_and_what_was_compared():
    size = 3 * MIB + 4096  # the last region is short
    ours = b"".join(zeroes_digest(n) for n in (MIB, MIB, MIB, 4096))
    theirs = b"".join([zeroes_digest(MIB), digest(b"x"), zeroes_digest(MIB), digest(b"y")])
    found = compare(ours, size, bits_with(2 * (REGION_BYTES // BITMAP_REGION), size=size), theirs, size, b"", MIB)
    assert found.differing == [(MIB, MIB), (3 * MIB, 4096)]
    assert (found.compared, found.skipped, found.compared_bytes) == (3, 1, 2 * MIB + 4096)


def test_zeroes_have_the_digest_of_zeroes():
    assert zeroes_digest(MIB) == digest(bytes(MIB)) != digest(b"\x01" + bytes(MIB - 1))
    assert len(zeroes_digest(MIB)) == DIGEST_BYTES


@pytest.mark.parametrize("region", [0, 4096, 3 * MIB, 128 * MIB])
def test_a_region_size_is_a_power_of_two_of_whole_bitmap_regions(region):
    with pytest.raises(InvalidArgument):
        check_region_bytes(region)
    check_region_bytes(BITMAP_REGION)
    check_region_bytes(MIB)


def test_a_snapshot_region_of_data_live_holes_and_preserved_holes_hashes_as_its_bytes(tmp_path):
    """Chunk 0 data, chunk 1 a hole when the snapshot was cut and written since (a preserved
    hole), the rest a hole in the live LDEV: the digest is that of the bytes the snapshot shows."""
    array = Array(Pool(tmp_path / "pool", serial=1))
    try:
        ldev = array.create_ldev("sales", MIB, open_to_all=True).id
        session = array.sessions.open("sales")
        session.write(HostWrite(WriteKind.DATA, 0, 4096, b"\x07" * 4096))
        snapshot = array.snapshots.create_snapshot("before", ldev)
        session.write(HostWrite(WriteKind.DATA, 64 << 10, 4096, b"\x09" * 4096))
        session.close()
        runtime = array.runtimes.get(ldev)
        seen = b"\x07" * 4096 + bytes(MIB - 4096)
        assert region_digest(runtime, snapshot.id, 0, MIB) == digest(seen)
        assert region_digest(runtime, snapshot.id, MIB // 2, MIB // 2) == zeroes_digest(MIB // 2)
        array.snapshots.delete_snapshot(snapshot.id)
    finally:
        array.close()
