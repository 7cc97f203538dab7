"""Handing a negotiated NBD connection to the native data path (backend/native/conn.c).

The handshake stays in Python (backend/nbd/handshake.py on the event loop):
once a client holds an LDEV export, its socket goes to a native thread that
serves the transmission phase without the interpreter: reads, block status,
QoS holds, and every write whose LDEV needs only its data step. A write the
write path must take (a journaled P-VOL, an LDEV with snapshots, a tracked
or fenced one) comes back here in a batch with the requests that arrived
with it, on that thread, and goes through `Session.write` as before; the
batch's copies for snapshots share one sync (`Session.copy_ahead`).

TLS connections and snapshot exports are still served by the event loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from backend import _nbdcore
from backend.errors import ArrayError
from backend.nbd.constants import Command, CommandFlag
from backend.nbd.errors import errno_for
from backend.nbd.handshake import Negotiated
from backend.sessions import Session
from backend.write_path import HostWrite, WriteKind
from ccopy_common.ldev_id import format_ldev_id

log = logging.getLogger(__name__)

_WRITE_KINDS = {Command.WRITE: WriteKind.DATA, Command.TRIM: WriteKind.TRIM, Command.WRITE_ZEROES: WriteKind.ZEROES}

# A batch entry as the native side hands it: (command, flags, offset, length, payload or None).
BatchEntry = tuple[int, int, int, int, bytes | None]


def host_write(command: int, flags: int, offset: int, length: int, payload: bytes | None) -> HostWrite:
    return HostWrite(
        kind=_WRITE_KINDS[Command(command)],
        offset=offset,
        length=length,
        data=payload,
        fua=bool(flags & CommandFlag.FUA),
        keep_allocated=bool(flags & CommandFlag.NO_HOLE),
    )


class WritePathBatches:
    """What a native connection hands back: its writes through the one write path, in order."""

    def __init__(self, session: Session, connection_id: int) -> None:
        self.session = session
        self.connection_id = connection_id

    def __call__(self, entries: list[BatchEntry]) -> list[int]:
        """The NBD error of each request (0: done), in order."""
        ops = [None if command == Command.FLUSH else host_write(command, flags, offset, length, payload)
               for command, flags, offset, length, payload in entries]  # fmt: skip
        self.session.copy_ahead([op for op in ops if op is not None])
        return [self._apply(op) for op in ops]

    def _apply(self, op: HostWrite | None) -> int:
        try:
            if op is None:
                self.session.flush()
            else:
                self.session.write(op)
        except (OSError, ArrayError) as exc:
            log.warning("nbd_request_failed conn=%d ldev=%s request=%s error=%s", self.connection_id,
                        format_ldev_id(self.session.ldev_id), op.kind.value if op else "flush", exc)  # fmt: skip
            return int(errno_for(exc))
        return 0


def serve_natively(
    fd: int,
    session: Session,
    negotiated: Negotiated,
    initial_out: bytes,
    initial_in: bytes,
    connection_id: int,
    closed: Callable[[str], None],
) -> Any:
    """Serve the connection on a native thread, which owns `fd` from now on (it is closed
    here if the thread cannot start: OSError). `closed(reason)` is called on that thread
    when the connection ends, after which the session is the caller's to close."""
    try:
        return _nbdcore.serve(
            fd=fd,
            gate=session.runtime.gate,
            export_size=session.size,
            read_only=session.read_only,
            structured_replies=negotiated.structured_replies,
            meta_contexts=len(negotiated.meta_contexts),
            growable=session.growable,
            initial_out=initial_out,
            initial_in=initial_in,
            write_batch=WritePathBatches(session, connection_id),
            closed=closed,
        )
    except BaseException:
        os.close(fd)
        raise
