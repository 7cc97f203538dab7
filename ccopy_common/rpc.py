"""gRPC plumbing every Consistent Copy server and client shares.

- `TlsFiles` and `server_credentials` / `client_channel`: TLS, and mTLS when a
  client CA is given, from PEM files.
- `ErrorMappingInterceptor`: the one place where a server's domain exceptions
  become status codes (a table per server), with a request id and one
  structured log line per call; anything unmapped is INTERNAL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from ccopy_common import request_ids
from ccopy_common.signals import StopSignals

log = logging.getLogger(__name__)

ErrorTable = Mapping[type[BaseException], grpc.StatusCode]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files. Server: cert+key, plus client_ca for mTLS. Client: ca, plus cert+key for mTLS."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cert or self.ca)


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    if not (tls.cert and tls.key):
        raise ValueError("a TLS server needs both a certificate and a key")
    pair = (tls.key.read_bytes(), tls.cert.read_bytes())
    client_ca = tls.ca.read_bytes() if tls.ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def add_port(server: grpc.Server, address: str, tls: TlsFiles) -> int:
    """Bind the server; returns the port (useful with port 0 in tests)."""
    if tls.enabled:
        port = server.add_secure_port(address, server_credentials(tls))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port


def client_channel(address: str, tls: TlsFiles | None = None, options: list | None = None) -> grpc.Channel:
    """A channel whose every call carries the current request id (ccopy_common.request_ids)."""
    if tls is None or not tls.enabled:
        channel = grpc.insecure_channel(address, options=options)
    else:
        creds = grpc.ssl_channel_credentials(
            root_certificates=tls.ca.read_bytes() if tls.ca else None,
            private_key=tls.key.read_bytes() if tls.key else None,
            certificate_chain=tls.cert.read_bytes() if tls.cert else None,
        )
        channel = grpc.secure_channel(address, creds, options=options)
    return grpc.intercept_channel(channel, request_ids.SendRequestId())


def listen_address(endpoint: str) -> str:
    """unix:///path -> unix:/path for gRPC (removing a stale socket); tcp://host:port or host:port as is."""
    if endpoint.startswith("unix://"):
        path = Path(endpoint.removeprefix("unix://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()
        return f"unix:{path}"
    return endpoint.removeprefix("tcp://")


def bind(server: grpc.Server, endpoint: str, socket_group: int | None = None) -> str:
    """Listen on `endpoint` (unix:///path, tcp://host:port or host:port; port 0 picks one);
    returns the address actually bound, for clients and logs.

    `socket_group`: a unix socket is made readable and writable by that group (0660), so
    that sidecars running as another user of the group may connect (connecting needs write
    permission; the socket is made 0755 by the umask otherwise, owner only)."""
    address = listen_address(endpoint)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {endpoint}")
    if not address.startswith("unix:"):
        return f"{address.rpartition(':')[0]}:{port}"
    if socket_group is not None:
        path = address.removeprefix("unix:")
        os.chown(path, -1, socket_group)
        os.chmod(path, 0o660)
    return address


def run_until_signalled(address: str, stop: Callable[[], None]) -> None:
    """Print the ready line (what launchers wait for), serve until SIGTERM or SIGINT, then
    stop and remove the unix socket, so a restart finds no stale one. The stopping happens
    here on the main thread, never in a signal handler (ccopy_common.signals)."""
    signals = StopSignals()
    print(f"ready endpoint={address}", flush=True)
    signals.wait()
    stop()
    if address.startswith("unix:"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address.removeprefix("unix:"))


def status_for(exc: BaseException, table: ErrorTable) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return grpc.StatusCode.INTERNAL


def serve_metrics(registry: CollectorRegistry, address: str) -> tuple[WSGIServer, str]:
    """Serve a registry as Prometheus /metrics on HOST:PORT (port 0 picks one) in a thread;
    the server (to shut down) and its bound address."""
    host, _, port = address.rpartition(":")
    http, _thread = start_http_server(int(port), addr=host or "0.0.0.0", registry=registry)
    return http, f"{host}:{http.server_port}"


def stop_metrics(http: WSGIServer | None) -> None:
    if http is not None:
        http.shutdown()
        http.server_close()


class RpcMetrics:
    """Calls of one server, by method and status code, and their latency (Prometheus)."""

    def __init__(self, registry: CollectorRegistry, server_name: str) -> None:
        self.calls = Counter("ccopy_rpc_calls", "gRPC calls answered, by method and status code",
                             ["server", "method", "code"], registry=registry)  # fmt: skip
        self.seconds = Histogram("ccopy_rpc_call_seconds", "gRPC call latency, by method",
                                 ["server", "method"], registry=registry)  # fmt: skip
        self.server_name = server_name

    def done(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.calls.labels(self.server_name, method, code.name).inc()
        self.seconds.labels(self.server_name, method).observe(seconds)


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    def __init__(self, table: ErrorTable, server_name: str, metrics: RpcMetrics | None = None) -> None:
        self.table = table
        self.server_name = server_name
        self.metrics = metrics

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        if handler.unary_stream is not None:
            return self._stream(handler, method, details)
        if handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.monotonic()
            with request_ids.use(request_ids.from_metadata(details.invocation_metadata)):
                try:
                    response = inner(request, context)
                except Exception as exc:
                    if context.code() not in (None, grpc.StatusCode.OK):  # the servicer aborted itself
                        raise
                    self._failed(method, exc, start, context)
                if self.metrics is not None:
                    self.metrics.done(method, grpc.StatusCode.OK, time.monotonic() - start)
                elapsed_ms = (time.monotonic() - start) * 1000
                log.debug("rpc server=%s method=%s code=OK ms=%.1f", self.server_name, method, elapsed_ms)
                return response

        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _failed(self, method: str, exc: Exception, start: float, context: grpc.ServicerContext) -> None:
        """One line for the failed call, and the status its error maps to (raises, via abort)."""
        code = status_for(exc, self.table)
        if self.metrics is not None:
            self.metrics.done(method, code, time.monotonic() - start)
        level = logging.ERROR if code is grpc.StatusCode.INTERNAL else logging.INFO
        log.log(
            level,
            "rpc server=%s method=%s code=%s ms=%.1f error=%r",
            self.server_name,
            method,
            code.name,
            (time.monotonic() - start) * 1000,
            str(exc),
            exc_info=code is grpc.StatusCode.INTERNAL,
        )
        context.abort(code, str(exc) if code is not grpc.StatusCode.INTERNAL else f"internal error: {exc}")

    def _stream(self, handler: Any, method: str, details: Any) -> Any:
        """Server-streaming methods: the same table and request id, for every message they send."""
        inner = handler.unary_stream

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.monotonic()
            # The worker thread serves this stream alone until it ends, so the id stays current
            # between messages too; `use` puts the thread's previous id back at the end.
            with request_ids.use(request_ids.from_metadata(details.invocation_metadata)):
                try:
                    yield from inner(request, context)
                except Exception as exc:
                    if context.code() not in (None, grpc.StatusCode.OK):
                        raise
                    self._failed(method, exc, start, context)
                if self.metrics is not None:
                    self.metrics.done(method, grpc.StatusCode.OK, time.monotonic() - start)

        return grpc.unary_stream_rpc_method_handler(
            call,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
