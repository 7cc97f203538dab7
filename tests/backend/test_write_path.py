"""The one write path and host sessions, on a real pool (no server)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from backend.array import Array
from backend.errors import FailedPrecondition, NotFound
from backend.journal_record import RecordKind
from backend.ldev_io import LdevFile, create_sparse
from backend.pool import Pool
from backend.write_path import CopySource, HostWrite, WriteKind, WriteRefused

MIB = 1 << 20


@pytest.fixture
def array(tmp_path: Path):
    a = Array(Pool(tmp_path / "pool", serial=1))
    yield a
    a.close()


def test_write_read_trim_zero(array: Array):
    array.create_ldev("vol", 8 * MIB, open_to_all=True)
    session = array.sessions.open("vol")
    data = os.urandom(MIB)
    session.write(HostWrite(WriteKind.DATA, MIB, MIB, data, fua=True))
    assert session.read(MIB, MIB) == data
    assert [e.is_hole for e in session.extents(0, 8 * MIB)] == [True, False, True]

    session.write(HostWrite(WriteKind.TRIM, MIB, MIB))
    assert session.read(MIB, MIB) == bytes(MIB)
    assert all(e.is_hole for e in session.extents(0, 8 * MIB))

    session.write(HostWrite(WriteKind.DATA, 0, MIB, data))
    session.write(HostWrite(WriteKind.ZEROES, 0, MIB, keep_allocated=True))
    assert session.read(0, MIB) == bytes(MIB)
    assert not next(iter(session.extents(0, MIB))).is_hole  # NO_HOLE keeps it allocated
    session.close()


def test_refusals_touch_nothing(array: Array):
    array.create_ldev("ro", 4 * MIB, read_only=True, open_to_all=True)
    array.create_ldev("rw", 4 * MIB, open_to_all=True)
    ro, rw = array.sessions.open("ro"), array.sessions.open("rw")
    with pytest.raises(WriteRefused) as refused:
        ro.write(HostWrite(WriteKind.DATA, 0, 4096, bytes(4096)))
    assert refused.value.errno == errno.EPERM
    with pytest.raises(WriteRefused) as refused:
        rw.write(HostWrite(WriteKind.DATA, 4 * MIB - 512, 4096, b"x" * 4096))
    assert refused.value.errno == errno.ENOSPC
    with pytest.raises(WriteRefused) as refused:
        rw.write(HostWrite(WriteKind.DATA, 0, 4096, b"short"))
    assert refused.value.errno == errno.EINVAL
    # The refused writes changed neither content nor size.
    assert os.stat(array.pool.ldev_path(rw.ldev_id)).st_size == 4 * MIB
    assert array.allocated_bytes(rw.ldev_id) == 0
    ro.close()
    rw.close()


def test_ldev_with_open_sessions_cannot_be_deleted(array: Array):
    record = array.create_ldev("vol", MIB, open_to_all=True)
    session = array.sessions.open("vol")
    assert array.runtimes.open_sessions(record.id) == 1
    with pytest.raises(FailedPrecondition):
        array.delete_ldev(record.id)
    session.close()
    session.close()  # closing twice is harmless
    array.delete_ldev(record.id)
    with pytest.raises(NotFound):
        array.sessions.open("vol")


def test_sessions_share_one_file_so_any_flush_covers_all(array: Array):
    array.create_ldev("vol", MIB, open_to_all=True)
    a, b = array.sessions.open("vol"), array.sessions.open("vol")
    assert a.runtime.file is b.runtime.file
    a.write(HostWrite(WriteKind.DATA, 0, 3, b"abc"))
    assert b.read(0, 3) == b"abc"
    a.close()
    b.close()


def test_a_copy_takes_its_bytes_from_another_file_and_is_journaled_as_a_write(array: Array, tmp_path: Path):
    """A clone's or restore's copy (WriteKind.COPY) lands like a write of the same bytes,
    and a journal, when there is one, records those bytes."""
    ldev = array.create_ldev("vol", 8 * MIB, open_to_all=True)
    group = array.journal_groups.create("g", 64 * MIB)
    array.journal_groups.add_member(group.id, ldev.id)
    source = tmp_path / "source"
    data = os.urandom(3 * MIB)
    source.write_bytes(data)
    fd = os.open(source, os.O_RDONLY)
    session = array.sessions.open("vol")
    try:
        session.write(HostWrite(WriteKind.COPY, 2 * MIB, 2 * MIB, source=CopySource(fd, MIB)))
        with pytest.raises(WriteRefused) as refused:
            session.write(HostWrite(WriteKind.COPY, 0, MIB))
        assert refused.value.errno == errno.EINVAL
        with pytest.raises(WriteRefused) as refused:
            session.write(HostWrite(WriteKind.DATA, 0, 4, b"data", source=CopySource(fd, 0)))
        assert refused.value.errno == errno.EINVAL
    finally:
        os.close(fd)
        session.close()
    (record,) = array.journal_groups.journals[group.id].read(1, 1 << 30)
    assert (record.kind, record.offset, record.length, record.data) == (RecordKind.WRITE, 2 * MIB, 2 * MIB, data[MIB:])
    session = array.sessions.open("vol")
    assert session.read(0, 8 * MIB) == bytes(2 * MIB) + data[MIB:] + bytes(4 * MIB)
    session.close()


@pytest.mark.parametrize("kernel_copy", [True, False], ids=["copy_file_range", "without it"])
def test_copy_from_reads_zeroes_past_the_source_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_copy):
    """Past its end a source reads as zeroes, whether the kernel copies or (EXDEV, ENOSYS)
    Python does: the old bytes of the target range never show through."""
    if not kernel_copy:

        def refuse(*_args):
            raise OSError(errno.EXDEV, "cross-device copy")

        monkeypatch.setattr(os, "copy_file_range", refuse)
    (tmp_path / "source").write_bytes(b"s" * 5000)
    create_sparse(tmp_path / "target", 3 * 4096)
    target = LdevFile(tmp_path / "target")
    target.write(0, b"t" * (3 * 4096))
    fd = os.open(tmp_path / "source", os.O_RDONLY)
    try:
        target.copy_from(fd, 1000, 100, 3 * 4096 - 200)
    finally:
        os.close(fd)
    assert target.read(0, 3 * 4096) == b"t" * 100 + b"s" * 4000 + bytes(3 * 4096 - 4200) + b"t" * 100
    target.close()
