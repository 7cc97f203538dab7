"""The native transmission phase under AddressSanitizer and UndefinedBehaviorSanitizer.

backend/native/fuzz_main.c runs each input through the very loop a connection
thread runs (conn_serve over a socketpair, a memfd as the LDEV); it is built
here with -fsanitize=address,undefined and no recovery, so a memory error or
undefined behaviour anywhere on the path aborts it. The inputs come from
hypothesis: pipelined requests of every command with offsets and lengths at
and past the edges, invalid flags, oversized writes, streams cut anywhere,
garbage tails, in every session kind (structured or not, read-only, with or
without a metadata context, plain, journaled or batched writes, growable, QoS holds).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NATIVE = Path(__file__).resolve().parents[3] / "backend" / "native"
SOURCES = ["fuzz_main.c", "conn.c", "gate.c", "journal_core.c", "journal_index.c", "crc32c.c", "nbd_wire.c"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
LDEV_BYTES = 1 << 20

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed: `make deps` installs it")


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    binary = tmp_path_factory.mktemp("fuzz") / "fuzz_main"
    subprocess.run(
        ["gcc", "-std=gnu11", "-g", "-O1", "-Wall", "-Wextra", "-Werror", *SANITIZE, "-I", str(NATIVE),
         *(str(NATIVE / source) for source in SOURCES), "-lpthread", "-lm", "-o", str(binary)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return binary


def test_the_sanitizers_are_on(harness):
    """The control: the harness's deliberate one-byte overflow must be caught."""
    run = subprocess.run([harness, "--self-check"], capture_output=True, text=True)
    assert run.returncode != 0
    assert "heap-buffer-overflow" in run.stderr


request_strategy = st.tuples(
    st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 0xFFFF]),  # every command, DISC among them, and unknown ones
    st.sampled_from([0, 1, 511, 4096, LDEV_BYTES // 2, LDEV_BYTES - 512, LDEV_BYTES, LDEV_BYTES + 1, 2**63, 2**64 - 1]),
    st.one_of(st.integers(0, 70_000), st.sampled_from([(32 << 20) + 1, 2**32 - 1])),
    st.integers(0, 0xFFFF),
)
input_strategy = st.tuples(
    st.integers(0, 127),  # the session kind (fuzz_main.c's config byte)
    st.lists(request_strategy, min_size=1, max_size=16),
    st.one_of(st.none(), st.integers(0, 1 << 20)),  # cut the stream here
    st.binary(max_size=64),  # garbage after it
)


def encode(config: int, requests: list[tuple[int, int, int, int]], cut: int | None, tail: bytes) -> bytes:
    stream = b""
    for cookie, (command, offset, length, flags) in enumerate(requests):
        stream += struct.pack(">IHHQQI", 0x25609513, flags, command, cookie, offset, length)
        if command == 1 and length <= 70_000:
            stream += bytes([cookie % 256]) * length
    if cut is not None:
        stream = stream[:cut]
    return bytes([config]) + stream + tail


def test_request_streams_of_every_kind_run_clean_under_the_sanitizers(harness, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    written: list[Path] = []

    @settings(max_examples=400, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(input_strategy)
    def collect(example):
        path = corpus / f"{len(written):04d}"
        path.write_bytes(encode(*example))
        written.append(path)

    collect()
    run = subprocess.run([harness, *written], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.startswith(f"inputs={len(written)} ")
    assert "runtime error" not in run.stderr  # UBSan's words, should recovery ever be turned on


def test_the_journal_index_runs_clean_under_the_sanitizers(harness, tmp_path):
    """Filing, trimming (which slides the live entries down), growing, runs and accounts, in any
    order (fuzz_main.c's run_index), each answer checked against what was filed."""
    corpus = tmp_path / "index"
    corpus.mkdir()
    written: list[Path] = []

    @settings(max_examples=200, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(min_size=4, max_size=16_000))
    def collect(example):
        path = corpus / f"{len(written):04d}"
        path.write_bytes(example)
        written.append(path)

    collect()
    many = corpus / "many"  # enough records to grow the index and slide it down after trims
    many.write_bytes((bytes([0, 0, 16, 0]) * 3000 + bytes([1, 200, 0, 0]) * 10 + bytes([2, 0, 255, 0])) * 3)
    run = subprocess.run([harness, "--index", *written, many], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.startswith(f"inputs={len(written) + 1} ")
