"""Undo what a run made (array processes, nbdfuse mounts, loop devices, file system mounts),
whatever ended it.

Each thing made is held by a `with teardown.holding(...)` block and undone, in reverse order,
when its block ends. An undo that fails gets its fallback (a lazy unmount, a kill), and the
next undo runs either way. While a failure is on its way out, what could not be undone is
noted, never raised: the failure that ended the run stays the one a person reads, in one
line, instead of a chain of tracebacks from every step of the way out. On a normal end a
failed undo does raise, after its fallback cleaned up: the run cannot go on as if it had
worked (an unmount that needed force may not have written everything back).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

Undo = Callable[[], object]


class TeardownError(Exception):
    """An undo failed on a normal end of its block (its fallback, if any, was run)."""


class Teardown:
    def __init__(self) -> None:
        self.left_behind: list[str] = []  # what neither the undo nor its fallback undid
        self.forced: list[str] = []  # what only the fallback undid

    @contextmanager
    def holding(self, what: str, undo: Undo, fallback: Undo | None = None) -> Iterator[None]:
        """Undo `what` when the block ends, with `fallback` if `undo` fails."""
        try:
            yield
        except BaseException:
            self._undo(what, undo, fallback, failing=True)
            raise
        self._undo(what, undo, fallback, failing=False)

    def _undo(self, what: str, undo: Undo, fallback: Undo | None, failing: bool) -> None:
        try:
            undo()
            return
        except Exception as exc:
            problem = one_line(exc)
        log.warning("undo_failed what=%r problem=%r", what, problem)
        if fallback is not None:
            try:
                fallback()
                self.forced.append(what)
            except Exception as exc:
                problem += f"; then {one_line(exc)}"
                self.left_behind.append(f"{what} ({problem})")
        else:
            self.left_behind.append(f"{what} ({problem})")
        if not failing:
            raise TeardownError(f"could not undo {what} cleanly: {problem}")

    def summary(self) -> str:
        """What the way out could not do cleanly, for the end of a verdict line; empty if nothing."""
        parts = [f"undone by force: {', '.join(self.forced)}"] if self.forced else []
        parts += [f"LEFT BEHIND: {'; '.join(self.left_behind)}"] if self.left_behind else []
        return "; ".join(parts)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
