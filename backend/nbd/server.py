"""NBD server: moves bytes between sockets and the pure protocol machines.

One asyncio event loop runs every handshake. A plaintext connection to an LDEV
export is then handed to a native thread for its transmission phase
(backend/nbd/native.py). The event loop goes on serving the others (TLS
connections, snapshot exports): reads and non-FUA writes hit the page cache and
run inline (microseconds); anything that waits for stable storage (FLUSH, FUA
writes) runs in a thread pool so other requests and other clients keep
flowing. Replies may go out of order, as the protocol allows.

A malformed request ends only its own connection; errors inside one LDEV's
session never reach another.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from backend.array import Array
from backend.errors import ArrayError, PermissionDenied
from backend.host_access import ANONYMOUS
from backend.nbd.constants import BASE_ALLOCATION_ID, Command, CommandFlag, Errno
from backend.nbd.errors import errno_for
from backend.nbd.handshake import ExportInfo, ExportRefused, HandshakeError, Negotiated, ServerHandshake, TlsMode
from backend.nbd.native import serve_natively
from backend.nbd.transmission import (
    OversizedWrite,
    ProtocolError,
    Request,
    RequestParser,
    allocation_descriptors,
    block_status_reply,
    check_request,
    error_reply,
    simple_reply,
    structured_read_header,
)
from backend.sessions import Session, SnapshotSession, WriteMode
from backend.write_path import HostWrite, WriteKind
from ccopy_common.ldev_id import format_ldev_id

log = logging.getLogger(__name__)
_connection_ids = itertools.count(1)

_WRITE_KINDS = {Command.WRITE: WriteKind.DATA, Command.TRIM: WriteKind.TRIM, Command.WRITE_ZEROES: WriteKind.ZEROES}
_THROTTLED = (Command.READ, Command.WRITE, Command.TRIM, Command.WRITE_ZEROES)


@dataclass(frozen=True)
class NbdConfig:
    host: str = "127.0.0.1"
    port: int = 10809
    handshake_timeout: float = 30.0
    # Requests waiting on the thread pool per connection before we stop reading.
    max_pending: int = 64
    workers: int = 8
    # NBD over TLS (NBD_OPT_STARTTLS): the server's context (with the client CA when
    # client certificates are required) and whether plaintext clients are refused.
    tls_context: ssl.SSLContext | None = None
    tls_mode: TlsMode = TlsMode.OFF


def certificate_name(certificate: dict | None) -> str:
    """The common name of a verified peer certificate ("" without one): the host it names."""
    for rdn in (certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


class NbdConnection(asyncio.BufferedProtocol):
    def __init__(self, array: Array, config: NbdConfig, executor: ThreadPoolExecutor, live: set[NbdConnection]) -> None:
        self.array = array
        self.live = live
        self.config = config
        self.executor = executor
        self.id = next(_connection_ids)
        self.handshake = ServerHandshake(lookup=self._lookup, list_exports=self._list, tls=config.tls_mode)
        # The host this client is (backend/host_access.py): its verified certificate's name, once TLS is on.
        self.peer_certificate_name = ANONYMOUS
        self._tls_task: asyncio.Task[None] | None = None
        self.parser = RequestParser()
        self.negotiated: Negotiated | None = None
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.pending = 0
        self.closing = False
        self.lost = False  # the transport is gone (connection_lost ran)
        self.reading_paused = False
        self.writing_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._handshake_buffer = bytearray(64 * 1024)
        self._out: list[bytes | bytearray] = []
        # Requests held back by the LDEV's QoS limits: (release time, request), in order.
        self._held: collections.deque[tuple[float, Request]] = collections.deque()
        self._hold_timer: asyncio.TimerHandle | None = None
        self._failed = False  # the request being served got an error reply
        self.native: object | None = None  # the native thread's connection, once handed over

    # -- asyncio callbacks ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.live.add(self)
        self.peer = transport.get_extra_info("peername")
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.config.handshake_timeout, self._handshake_timed_out)
        transport.write(self.handshake.greeting())
        log.info("nbd_connected conn=%d peer=%s", self.id, self.peer)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.negotiated is None:
            return memoryview(self._handshake_buffer)
        return self.parser.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        if self.closing:
            return
        try:
            if self.negotiated is None:
                self._handshake(bytes(self._handshake_buffer[:nbytes]))
            else:
                self.parser.buffer_updated(nbytes)
                self._serve_requests()
        except OversizedWrite as exc:
            self._send(error_reply(exc.cookie, Errno.EINVAL, self._structured(), str(exc)))
            self._hang_up(f"protocol_error reason={exc}")
        except (HandshakeError, ProtocolError) as exc:
            self._hang_up(f"protocol_error reason={exc}")
        self._flush_out()

    def eof_received(self) -> bool | None:
        self._hang_up("client_eof")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.native is not None:  # the event loop let go of its socket: a native thread serves it
            return
        self.closing = self.lost = True
        self._held.clear()
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        if self._timer:
            self._timer.cancel()
        self._release_session_when_idle()
        log.info("nbd_disconnected conn=%d pending=%d", self.id, self.pending)

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._update_reading()

    # -- handshake -------------------------------------------------------------
    def _lookup(self, name: str) -> ExportInfo | None:
        try:
            view = self.array.sessions.describe(name, self.peer_certificate_name)
        except PermissionDenied as exc:
            log.warning("nbd_refused conn=%d peer=%s host=%s reason=%r", self.id, self.peer,
                        self.peer_certificate_name or "-", str(exc))  # fmt: skip
            raise ExportRefused(str(exc)) from exc
        except ArrayError:
            return None
        return ExportInfo(view.name, view.size, view.read_only, view.description)

    def _list(self) -> list[str]:
        return self.array.sessions.export_names(self.peer_certificate_name)

    def _handshake(self, data: bytes) -> None:
        out = self.handshake.receive(data)
        negotiated = self.handshake.result
        if negotiated is None:  # still negotiating, starting TLS, or aborted: the answers go out now
            if out:
                self._send(out)
                self._flush_out()
            if self.handshake.starting_tls:
                self._begin_tls()
            elif self.handshake.done:  # NBD_OPT_ABORT: soft disconnect
                self._hang_up("client_abort")
            return
        if self._timer:
            self._timer.cancel()
        # The session is open before the client hears its NBD_OPT_GO answer: once a host is
        # told it is connected, the array counts it (a delete is refused from then on).
        try:
            self.session = self.array.sessions.open(negotiated.export.name, self.peer_certificate_name)
        except ArrayError as exc:  # deleted between the option and now: the client hears nothing more
            self._hang_up(f"export_gone reason={exc}")
            return
        # The session's size is what the client was told; keep them equal.
        negotiated.export = ExportInfo(negotiated.export.name, self.session.size, self.session.read_only)
        self.negotiated = negotiated
        native = self._hand_over(out, negotiated)
        log.info(
            "nbd_transmission conn=%d ldev=%s export=%s structured=%s contexts=%d native=%s",
            self.id,
            format_ldev_id(self.session.ldev_id),
            negotiated.export.name,
            negotiated.structured_replies,
            len(negotiated.meta_contexts),
            native,
        )
        if native:
            return
        self._send(out)
        self._flush_out()
        loop = asyncio.get_running_loop()
        transport = self.transport
        assert transport is not None
        self.session.on_revoke = lambda: loop.call_soon_threadsafe(self._revoked, transport)
        self.parser.feed(self.handshake.leftover())
        self._serve_requests()

    def _hand_over(self, out: bytes, negotiated: Negotiated) -> bool:
        """Give the connection to a native thread when it may have it: a plaintext socket, an
        LDEV export, and nothing of ours left unsent. The thread sends `out` (the answer that
        completes the handshake) first; requests that came in with the last option go with it."""
        transport, session = self.transport, self.session
        assert transport is not None and session is not None
        if (
            self._tls_task is not None
            or isinstance(session, SnapshotSession)
            or transport.get_write_buffer_size()
            or self._out
        ):
            return False
        transport.pause_reading()
        fd = os.dup(transport.get_extra_info("socket").fileno())
        loop = asyncio.get_running_loop()
        try:
            self.native = serve_natively(
                fd, session, negotiated, out, self.handshake.leftover(), self.id,
                closed=lambda reason: self._native_closed(loop, reason),
            )  # fmt: skip
        except OSError as exc:
            log.warning("nbd_native_refused conn=%d error=%s", self.id, exc)
            transport.resume_reading()
            return False
        session.on_revoke = self.native.abort  # type: ignore[attr-defined]
        transport.abort()  # the event loop closes its copy of the socket; the thread keeps its own
        return True

    def _native_closed(self, loop: asyncio.AbstractEventLoop, reason: str) -> None:
        """On the native thread, once its connection ended: the session closes (its writes made
        durable) before the socket does, then the server forgets the connection."""
        if self.session is not None:
            self.session.close()
        log.info("nbd_disconnected conn=%d native=True reason=%s", self.id, reason)
        try:
            loop.call_soon_threadsafe(self.live.discard, self)
        except RuntimeError:  # the loop is closed: the server is gone already
            self.live.discard(self)

    def _begin_tls(self) -> None:
        """Once: the client's first options may come in before the TLS handshake is over; the
        handshake machine keeps them for when it is."""
        if self._tls_task is None:
            assert self.transport is not None
            self.transport.pause_reading()  # the next bytes are the client's TLS hello: not ours to read
            self._tls_task = asyncio.get_running_loop().create_task(self._start_tls())

    async def _start_tls(self) -> None:
        """Run the TLS handshake on this connection, then go on with the options inside it."""
        assert self.transport is not None and self.config.tls_context is not None
        plain = self.transport
        try:
            secured = await asyncio.get_running_loop().start_tls(
                plain, self, self.config.tls_context, server_side=True,
                ssl_handshake_timeout=self.config.handshake_timeout,
            )  # fmt: skip
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            # OpenSSL's words say which side failed (e.g. PEER_DID_NOT_RETURN_A_CERTIFICATE).
            secured, reason = None, f"{type(exc).__name__}:{getattr(exc, 'reason', None) or exc}"
        else:
            reason = "connection closed during the TLS handshake"
        if secured is None or self.lost:
            log.warning("nbd_tls_refused conn=%d peer=%s reason=%s", self.id, self.peer, reason)
            self.closing = True
            plain.abort()
            return
        self.transport = secured
        self.peer_certificate_name = certificate_name(secured.get_extra_info("peercert"))
        self.handshake.tls_started()
        log.info("nbd_tls conn=%d peer=%s certificate=%s", self.id, self.peer, self.peer_certificate_name or "-")
        # Options the client sent right behind its TLS handshake came in while it was finishing.
        self._handshake(b"")
        self._flush_out()

    def _handshake_timed_out(self) -> None:
        if self.negotiated is None:
            self._hang_up("handshake_timeout")

    # -- transmission ----------------------------------------------------------
    def _structured(self) -> bool:
        return self.negotiated is not None and self.negotiated.structured_replies

    def _serve_requests(self) -> None:
        while not self.closing:
            request = self.parser.next_request()
            if request is None:
                return
            self._admit(request)
            self._update_reading()

    def _admit(self, request: Request) -> None:
        """Serve now, or hold until the LDEV's QoS limits allow (keeping order)."""
        assert self.session is not None
        if request.command in _THROTTLED:
            now = time.monotonic()
            delay = self.session.throttle(request.length if request.command != Command.TRIM else 0, now)
            if delay > 0 or self._held:
                self._held.append((now + delay, request))
                self._schedule_held()
                return
        if self._held:  # FLUSH, DISC... wait behind held requests
            self._held.append((time.monotonic(), request))
            return
        self._serve(request)

    def _schedule_held(self) -> None:
        if self._hold_timer is None and self._held:
            delay = max(0.0, self._held[0][0] - time.monotonic())
            self._hold_timer = asyncio.get_running_loop().call_later(delay, self._release_held)

    def _release_held(self) -> None:
        self._hold_timer = None
        now = time.monotonic()
        while self._held and self._held[0][0] <= now and not self.closing:
            self._serve(self._held.popleft()[1])
        self._flush_out()
        self._update_reading()
        if self.closing:
            self._held.clear()
            self._close_when_idle()
        self._schedule_held()

    def _revoked(self, transport: asyncio.Transport) -> None:
        """Access to the LDEV was withdrawn (unpublish): the host is fenced off now."""
        log.info("nbd_fenced conn=%d", self.id)
        self.closing = True
        self._held.clear()
        transport.abort()

    def _serve(self, request: Request) -> None:
        """Answer one request, now or (FLUSH, FUA writes) from the thread pool; the observer
        hears of it when the reply is queued. An accepted DISC has no reply, so it is not
        observed: its connection may already have closed the session."""
        started, pending = time.perf_counter(), self.pending
        self._failed = False
        self._dispatch(request, started)
        if request.command == Command.DISC and not self._failed:
            return
        if self.pending == pending:  # answered already
            self._observe(request, started, self._failed)

    def _observe(self, request: Request, started: float, failed: bool) -> None:
        """Counted in the LDEV's gate, with the requests native threads serve (backend/api/metrics.py)."""
        assert self.session is not None
        self.session.runtime.gate.observe(request.command, time.perf_counter() - started, failed)

    def _fail(self, request: Request, error: int, message: str, structured: bool | None = None) -> None:
        self._failed = True
        structured = self._structured() if structured is None else structured
        self._send(error_reply(request.cookie, error, structured, message))

    def _dispatch(self, request: Request, started: float) -> None:
        assert self.negotiated is not None and self.session is not None
        error = check_request(request, self.negotiated)
        if error is not None:
            self._fail(request, error, "request refused")
            return
        command = request.command
        if command == Command.READ:
            self._read(request)
        elif command in _WRITE_KINDS:
            self._write(request, started)
        elif command == Command.FLUSH:
            self._in_pool(request, self.session.flush, started)
        elif command == Command.BLOCK_STATUS:
            self._block_status(request)
        elif command == Command.DISC:
            self.closing = True
            self._close_when_idle()

    def _read(self, request: Request) -> None:
        assert self.session is not None and self.transport is not None
        try:
            data = self.session.read(request.offset, request.length)
        except OSError as exc:
            self._fail(request, errno_for(exc), str(exc))
            return
        if self._structured():
            self._out.append(structured_read_header(request.cookie, request.offset, len(data)))
        else:
            self._out.append(simple_reply(request.cookie))
        self._out.append(data)

    def _write(self, request: Request, started: float) -> None:
        assert self.session is not None
        op = HostWrite(
            kind=_WRITE_KINDS[Command(request.command)],
            offset=request.offset,
            length=request.length,
            data=request.payload,
            fua=request.fua,
            keep_allocated=bool(request.flags & CommandFlag.NO_HOLE),
        )
        session = self.session
        mode = session.write_mode(op)
        if mode is WriteMode.BLOCKING:  # waits for stable storage or the backup: off the event loop
            self._in_pool(request, lambda: session.write(op), started)
            return
        if mode is WriteMode.AFTER_COPIES:  # its copies made durable with those of other writes, then here
            loop = asyncio.get_running_loop()
            self.pending += 1
            session.prepare_copies(
                op, lambda exc: loop.call_soon_threadsafe(self._copies_ready, request, op, exc, started)
            )
            return
        try:
            session.write(op)
        except (OSError, ArrayError) as exc:
            self._fail(request, errno_for(exc), str(exc))
            log.warning("nbd_write_failed conn=%d ldev=%s error=%s", self.id, format_ldev_id(session.ldev_id), exc)
            return
        self._send(simple_reply(request.cookie))

    def _copies_ready(self, request: Request, op: HostWrite, failed: BaseException | None, started: float) -> None:
        """The write's copies are durable: it writes now, on the loop. If they failed, or a
        snapshot taken since needs another copy, it takes the blocking way, which copies for
        itself and reports its own error."""
        session = self.session
        assert session is not None  # kept while requests are pending
        if failed is not None or session.write_mode(op) is not WriteMode.NOW:
            self.pending -= 1
            self._in_pool(request, lambda: session.write(op), started)
            return
        try:
            session.write(op)
        except (OSError, ArrayError) as exc:
            failed = exc
        self._blocking_done(request, failed, started)

    def _block_status(self, request: Request) -> None:
        assert self.session is not None
        req_one = bool(request.flags & CommandFlag.REQ_ONE)
        try:
            runs = ((e.length, e.is_hole) for e in self.session.extents(request.offset, request.length))
            descriptors = allocation_descriptors(runs, req_one)
        except OSError as exc:
            self._fail(request, errno_for(exc), str(exc), structured=True)
            return
        self._send(block_status_reply(request.cookie, BASE_ALLOCATION_ID, descriptors))

    def _in_pool(self, request: Request, work: object, started: float) -> None:
        """Run blocking work on the thread pool; reply when it finishes."""
        loop = asyncio.get_running_loop()
        self.pending += 1
        future = loop.run_in_executor(self.executor, work)  # type: ignore[arg-type]
        future.add_done_callback(lambda f: self._pool_done(request, f, started))

    def _pool_done(self, request: Request, future: asyncio.Future[object], started: float) -> None:
        self._blocking_done(request, future.exception(), started)

    def _blocking_done(self, request: Request, exc: BaseException | None, started: float) -> None:
        """Reply to a request that ran off the event loop, on the loop."""
        self.pending -= 1
        if exc is None:
            self._send(simple_reply(request.cookie))
        else:
            self._send(error_reply(request.cookie, errno_for(exc), self._structured(), str(exc)))
            log.warning("nbd_request_failed conn=%d command=%d error=%s", self.id, request.command, exc)
        if self.session is not None:
            self._observe(request, started, exc is not None)
        self._flush_out()
        if self.closing:
            self._close_when_idle()
            self._release_session_when_idle()
        else:
            self._update_reading()

    # -- flow control and teardown ---------------------------------------------
    def _send(self, data: bytes) -> None:
        """Queue a reply; `_flush_out` sends all queued replies in one go."""
        self._out.append(data)

    def _flush_out(self) -> None:
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(self._out)
        self._out = []

    def _update_reading(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        held = len(self._held) >= self.config.max_pending
        want_pause = self.writing_paused or held or self.pending >= self.config.max_pending
        if want_pause and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True
        elif not want_pause and self.reading_paused:
            self.transport.resume_reading()
            self.reading_paused = False

    def _hang_up(self, reason: str) -> None:
        if not self.closing:
            log.info("nbd_hang_up conn=%d %s", self.id, reason)
        self.closing = True
        self._close_when_idle()

    def _close_when_idle(self) -> None:
        """Close after every outstanding request got its reply (NBD_CMD_DISC rule).

        The export is released before the socket closes: a client that saw the
        close after its DISC may delete the LDEV or snapshot at once.
        """
        self._flush_out()
        if self.pending == 0 and self.transport is not None and not self.transport.is_closing():
            self._release_session_when_idle()
            self.transport.close()

    def _release_session_when_idle(self) -> None:
        """Once no request is in flight: close the session, and once gone, leave the live set."""
        if self.pending:
            return
        if self.session is not None:
            self.session.close()
            self.session = None
        if self.lost:
            self.live.discard(self)


class NbdServer:
    """Listens on one TCP address and serves every LDEV of the array."""

    def __init__(self, array: Array, config: NbdConfig) -> None:
        self.array = array
        self.config = config
        self.executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="nbd-sync")
        self._server: asyncio.base_events.Server | None = None
        self._live: set[NbdConnection] = set()

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: NbdConnection(self.array, self.config, self.executor, self._live),
            self.config.host,
            self.config.port,
            reuse_address=True,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        log.info("nbd_listening address=%s:%d", host, port)
        return host, port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._live):
                if connection.native is not None:
                    connection.native.abort()  # type: ignore[attr-defined]
                elif connection.transport is not None:
                    connection.transport.abort()
            await self._server.wait_closed()
        # FLUSH/FUA work already in the pool finishes: it is durable before we exit.
        self.executor.shutdown(wait=True)
        # Aborted connections learn it, and finished work reports back, in later
        # turns of the loop: let those run, so every session is closed before
        # the array closes its files.
        deadline = asyncio.get_running_loop().time() + 5.0
        while self._live and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
