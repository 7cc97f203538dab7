"""Start one array process: the pool, the NBD data path and the management API.

`start_array(config)` returns a running `ArrayProcess` with its bound addresses
(port 0 picks free ports, as the tests do); `serve(config)` runs it until
SIGTERM/SIGINT, then stops accepting, finishes in-flight flushes and closes
the pool.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from backend.api.error_table import ERROR_TABLE
from backend.api.metrics import ArrayMetrics
from backend.api.remote_client import CHANNEL_OPTIONS, RemoteClient
from backend.api.servicer import ArrayServicer
from backend.array import Array
from backend.nbd.handshake import TlsMode
from backend.nbd.server import NbdConfig, NbdServer
from backend.pool import Pool
from backend.replication.path_watch import DEFAULT_WATCH_SECONDS
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.rpc import ErrorMappingInterceptor, TlsFiles, add_port

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArrayConfig:
    pool: Path
    serial: int
    api: str = "127.0.0.1:50051"
    nbd: str = "127.0.0.1:10809"
    tls: TlsFiles = field(default_factory=TlsFiles)
    handshake_timeout: float = 30.0
    chunk_size: int = 64 * 1024
    # The linked array of the other site (management API) and how to reach it.
    remote: str = ""
    remote_tls: TlsFiles = field(default_factory=TlsFiles)
    # Emulated round-trip time added to every call to the remote array (benchmarks of long links).
    link_delay: float = 0.0
    # Seconds without a pull from the backup before a main-side group is suspended (PSUE).
    path_watch: float = DEFAULT_WATCH_SECONDS
    # HOST:PORT of the Prometheus /metrics endpoint; empty: none.
    metrics: str = ""
    # NBD over TLS: server certificate and key, and the CA of client certificates (the host
    # identity); required refuses plaintext clients.
    nbd_tls: TlsFiles = field(default_factory=TlsFiles)
    nbd_tls_required: bool = True

    @property
    def nbd_tls_mode(self) -> TlsMode:
        if self.nbd_tls.cert is None:
            return TlsMode.OFF
        return TlsMode.REQUIRED if self.nbd_tls_required else TlsMode.OPTIONAL

    @property
    def nbd_hosts_by_certificate(self) -> bool:
        """Every NBD client shows a verified certificate naming its host."""
        return self.nbd_tls_mode is TlsMode.REQUIRED and self.nbd_tls.ca is not None


def nbd_tls_context(files: TlsFiles) -> ssl.SSLContext | None:
    """The data path's TLS: None without a certificate; client certificates from `files.ca`
    are then required, and their common name is the host (publications name hosts)."""
    if files.cert is None or files.key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(files.cert), str(files.key))
    if files.ca is not None:
        context.load_verify_locations(str(files.ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {address!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass
class ArrayProcess:
    array: Array
    grpc_server: grpc.Server
    nbd_server: NbdServer
    api_address: str
    nbd_address: str
    metrics: ArrayMetrics | None = None
    metrics_address: str = ""

    async def stop(self) -> None:
        self.grpc_server.stop(grace=2).wait()
        if self.metrics is not None:
            self.metrics.stop()
        await self.nbd_server.close()
        self.array.close()
        log.info("array_stopped serial=%d", self.array.serial)


async def start_array(config: ArrayConfig) -> ArrayProcess:
    array = Array(
        Pool(config.pool, config.serial), chunk_size=config.chunk_size,
        hosts_by_certificate=config.nbd_hosts_by_certificate,
    )  # fmt: skip
    metrics = ArrayMetrics(array) if config.metrics else None
    nbd_host, nbd_port = split_address(config.nbd)
    nbd = NbdServer(
        array,
        NbdConfig(
            host=nbd_host, port=nbd_port, handshake_timeout=config.handshake_timeout,
            tls_context=nbd_tls_context(config.nbd_tls), tls_mode=config.nbd_tls_mode,
        ),
    )  # fmt: skip
    bound_host, bound_port = await nbd.start()
    nbd_address = f"{bound_host}:{bound_port}"
    server = grpc.server(
        ThreadPoolExecutor(max_workers=32, thread_name_prefix="array-api"),
        interceptors=[ErrorMappingInterceptor(ERROR_TABLE, "array")],
        options=CHANNEL_OPTIONS,
    )
    pb_grpc.add_ArrayServicer_to_server(ArrayServicer(array, nbd_address), server)
    api_host, _ = split_address(config.api)
    api_port = add_port(server, config.api, config.tls)
    server.start()
    api_address = f"{api_host}:{api_port}"
    if config.remote:
        array.link.remote = RemoteClient(config.remote, config.remote_tls, delay=config.link_delay)
        array.replicators.start()
        array.path_watch.watch_seconds = config.path_watch
        array.path_watch.start()
    log.info(
        "array_started serial=%d pool=%s api=%s nbd=%s tls=%s mtls=%s nbd_tls=%s nbd_hosts_by_certificate=%s",
        config.serial,
        config.pool,
        api_address,
        nbd_address,
        config.tls.enabled,
        config.tls.ca is not None,
        config.nbd_tls_mode.value,
        config.nbd_hosts_by_certificate,
    )
    metrics_address = metrics.serve(config.metrics) if metrics else ""
    return ArrayProcess(array, server, nbd, api_address, nbd_address, metrics, metrics_address)


async def _serve(config: ArrayConfig) -> None:
    process = await start_array(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # One line on stdout that scripts (and the tests) wait for.
    metrics = f" metrics={process.metrics_address}" if process.metrics_address else ""
    print(f"ready api={process.api_address} nbd={process.nbd_address}{metrics}", flush=True)
    await stop.wait()
    await process.stop()


def serve(config: ArrayConfig) -> None:
    asyncio.run(_serve(config))
