"""The way out of a run (ccopy/teardown.py): everything made is undone in reverse order
whatever ended the run, a failed undo gets its fallback and does not stop the next undo, and
the failure that ended the run stays the one reported (the demo once ended in three chained
tracebacks and left its mounts behind)."""

from __future__ import annotations

import pytest

from ccopy.teardown import Teardown, TeardownError


class Made:
    """A log of undos, some of which fail."""

    def __init__(self, failing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.failing, self.done = failing, []

    def undo(self, what: str):
        def step() -> None:
            self.done.append(what)
            if what in self.failing:
                raise OSError(f"{what}: target is busy")

        return step


def test_everything_is_undone_in_reverse_even_when_a_step_fails_and_the_failure_stays_the_one_raised():
    made, teardown = Made(failing={"umount"}), Teardown()
    with (
        pytest.raises(RuntimeError, match=r"^injected$") as raised,
        teardown.holding("array", made.undo("stop array")),
        teardown.holding("loop", made.undo("losetup -d"), made.undo("losetup -d (lazy)")),
        teardown.holding("mount", made.undo("umount"), made.undo("umount --lazy")),
    ):
        raise RuntimeError("injected")
    assert made.done == ["umount", "umount --lazy", "losetup -d", "stop array"]
    assert raised.value.__context__ is None, "no undo's error is chained onto the failure"
    assert teardown.forced == ["mount"] and teardown.left_behind == []
    assert teardown.summary() == "undone by force: mount"


def test_what_neither_the_undo_nor_its_fallback_undid_is_named_not_raised():
    made, teardown = Made(failing={"umount", "umount --lazy", "stop array"}), Teardown()
    with (
        pytest.raises(KeyboardInterrupt),
        teardown.holding("array", made.undo("stop array")),
        teardown.holding("mount", made.undo("umount"), made.undo("umount --lazy")),
    ):
        raise KeyboardInterrupt
    assert made.done == ["umount", "umount --lazy", "stop array"]
    assert teardown.left_behind == [
        "mount (umount: target is busy; then umount --lazy: target is busy)",
        "array (stop array: target is busy)",
    ]
    assert teardown.summary().startswith("LEFT BEHIND: mount (umount: target is busy;")


def test_on_a_normal_end_a_forced_undo_fails_the_run_after_cleaning_up():
    """An unmount that needed force may not have written everything back: the run cannot go
    on as if it had worked, but the outer things are still undone."""
    made, teardown = Made(failing={"umount"}), Teardown()
    with (
        pytest.raises(TeardownError, match="could not undo mount cleanly: umount: target is busy"),
        teardown.holding("array", made.undo("stop array")),
        teardown.holding("mount", made.undo("umount"), made.undo("umount --lazy")),
    ):
        pass
    assert made.done == ["umount", "umount --lazy", "stop array"]
    assert teardown.forced == ["mount"] and teardown.left_behind == []


def test_control_a_clean_run_undoes_everything_once_and_reports_nothing():
    made, teardown = Made(), Teardown()
    with teardown.holding("array", made.undo("stop array")), teardown.holding("mount", made.undo("umount")):
        pass
    assert made.done == ["umount", "stop array"] and teardown.summary() == ""
