"""`ccopy demo` on a failure: a one-line verdict, and nothing it made left behind (issue 29,
item 7). `make demo` once ended in three chained tracebacks when an unmount stayed busy and
left its FUSE mounts and loop devices. The demo runs for real up to a chosen step, where a
failure is injected; the second test also keeps a file system busy, as a process that still
holds a file does."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from ccopy import demo
from tests.conftest import require_root, require_tools, wait_for


def ours(work: Path) -> dict[str, list[str]]:
    """What of the demo's is still there: mounts, loop devices, nbdfuse and array processes."""
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines() if str(work) in line]
    loops = [line for line in subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout.splitlines()
             if str(work) in line]  # fmt: skip
    processes = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if str(work) in argv and ("nbdfuse" in argv or "nbdkit" in argv or " array serve " in argv):
            processes.append(argv)
    return {"mounts": mounts, "loops": loops, "processes": processes}


def verdict(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("verdict: FAIL: "), lines
    assert not any("Traceback" in line for line in lines), lines
    return lines[-1]


def test_the_whole_demo_passes_and_leaves_nothing(tmp_path, capsys):
    """`make demo` as a user runs it (a shorter order loop): its verdict PASS, and nothing of it left."""
    require_root()
    require_tools("openssl", "nbdfuse", "nbdkit", "losetup", "mkfs.ext4", "fusermount3")
    work = tmp_path / "work"
    assert demo.run_demo(argparse.Namespace(workdir=work, seconds=3.0)) == 0, capsys.readouterr().err[-3000:]
    said = capsys.readouterr()
    assert "verdict: PASS: " in said.out + said.err, (said.out + said.err)[-3000:]
    assert "undo_failed" not in said.err, said.err[-3000:]
    assert ours(work) == {"mounts": [], "loops": [], "processes": []}


def test_a_failed_step_ends_in_one_line_and_the_arrays_are_stopped(tmp_path, capsys, monkeypatch):
    require_root()
    require_tools("openssl")
    started: list[demo.Demo] = []

    def failing(self: demo.Demo) -> int:
        started.append(self)
        raise RuntimeError("injected: a step failed")

    monkeypatch.setattr(demo.Demo, "business", failing)
    work = tmp_path / "work"
    assert demo.run_demo(argparse.Namespace(workdir=work, seconds=1.0)) == 1
    assert verdict(capsys) == "verdict: FAIL: injected: a step failed; everything it made is undone"
    (made,) = started
    assert made.main.process is None and made.backup.process is None, "both arrays stopped"
    assert ours(work) == {"mounts": [], "loops": [], "processes": []}


def test_an_unmount_that_stays_busy_fails_the_demo_and_still_undoes_everything(tmp_path, capsys, monkeypatch):
    require_root()
    require_tools("openssl", "nbdfuse", "nbdkit", "losetup", "mkfs.ext4", "fusermount3", "sleep")
    holders: list[subprocess.Popen[bytes]] = []

    def busy_then_failing(self: demo.Demo, stock, sales, mounts: dict[str, Path]) -> bool:
        # A process keeps the stock database's file system busy, as a straggler of the order loop would.
        (mounts["stock-db"] / "held").write_text("held")
        holders.append(subprocess.Popen(["sleep", "600"], cwd=mounts["stock-db"], stdin=subprocess.DEVNULL))
        raise RuntimeError("injected: the orders failed")

    monkeypatch.setattr(demo, "BUSY_FOR", 1.0)
    monkeypatch.setattr(demo.Demo, "orders_and_backup", busy_then_failing)
    work = tmp_path / "work"
    try:
        assert demo.run_demo(argparse.Namespace(workdir=work, seconds=1.0)) == 1
        line = verdict(capsys)
        assert line.startswith("verdict: FAIL: injected: the orders failed; undone by force: the mount "), line
        assert "on nbdfuse stock-db" in line and "LEFT BEHIND" not in line, line
        # Nothing left where a person looks, while the straggler still holds its file system.
        left = ours(work)
        assert left["mounts"] == [] and left["processes"] == [], left
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    # The loop device lets go with the file system's last user.
    assert wait_for(lambda: ours(work)["loops"] == [], timeout=60), ours(work)

