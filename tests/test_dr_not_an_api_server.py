"""`ccopy dr` pointed at anything but a Kubernetes API server answers one line and status 1:
a web server's page (200 or 404), JSON that is not the API's, bytes that are not HTTP, a
connection closed at once, TLS spoken to plain HTTP and plain HTTP spoken to TLS. Before, a
page answered 200 was read as the ConsistentCopy (AttributeError) and a 404 page as "no
ConsistentCopy here". The control: a server that answers like the API server is asked on."""

from __future__ import annotations

import socket
import socketserver
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from ccopy_common.pki import CertificateAuthority
from replication_sidecar.kube_client import not_an_api_server

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{url}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: here, context: {{cluster: c, user: u}}}}]
current-context: here
"""


def http(status: str, content_type: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


PAGE = b"<html><body><h1>It works!</h1>\n<p>a web server</p></body></html>\n"
VERSION = b'{"major": "1", "minor": "31", "gitVersion": "v1.31.0"}'
NOT_FOUND = b'{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}'

# What a server sends once it has read a request (None: close at once, without a word).
ANSWERS: dict[str, bytes | None] = {
    "a page, 200": http("200 OK", "text/html", PAGE),
    "a page, 404": http("404 Not Found", "text/html", PAGE),
    "JSON, not the API's": http("200 OK", "application/json", b'{"hello": "world"}'),
    "bytes that are not HTTP": b"\x00\xffSSH-2.0-OpenSSH\r\nnot\nhttp\n",
    "closed at once": None,
}


class Answering(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: Callable[[str], bytes | None], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answer, self.tls = answer, tls

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server_address[1]}"


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: Answering = self.server  # type: ignore[assignment]
        conn: socket.socket = self.request
        try:
            if server.tls is not None:
                conn = server.tls.wrap_socket(conn, server_side=True)
            request = conn.recv(65536).decode(errors="replace")
            path = request.split(" ")[1] if request.count(" ") >= 2 else "/"
            if (reply := server.answer(path)) is not None:
                conn.sendall(reply)
        except (OSError, ssl.SSLError):
            pass  # the client gave up on us: that is its business
        finally:
            conn.close()


@contextmanager
def serving(answer: Callable[[str], bytes | None], tls: ssl.SSLContext | None = None) -> Iterator[Answering]:
    server = Answering(answer, tls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def dr_status(tmp_path: Path, name: str, url: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / f"{name.replace(' ', '-').replace(',', '')}.kubeconfig"
    config.write_text(KUBECONFIG.format(url=url))
    argv = [sys.executable, "-m", "ccopy", "dr", "status", "-n", "shop", "--kubeconfig", str(config)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory) -> ssl.SSLContext:
    ca = CertificateAuthority(tmp_path_factory.mktemp("pki"))
    issued = ca.issue("web", san="IP:127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    return context


def test_anything_but_an_api_server_is_one_line_and_status_1(tmp_path, tls_context):
    with ExitStack() as servers:
        urls = {name: servers.enter_context(serving(lambda _, said=said: said)).url for name, said in ANSWERS.items()}
        web = servers.enter_context(serving(lambda _: ANSWERS["a page, 200"]))
        tls_web = servers.enter_context(serving(lambda _: ANSWERS["a page, 200"], tls=tls_context))
        urls["TLS spoken to plain HTTP"] = web.url.replace("http://", "https://")
        urls["plain HTTP spoken to TLS"] = tls_web.url.replace("https://", "http://")
        urls["a page over TLS"] = tls_web.url
        with ThreadPoolExecutor(2) as pool:  # the machine has two cores
            done = dict(zip(urls, pool.map(lambda item: dr_status(tmp_path, *item), urls.items()), strict=True))
    for name, result in done.items():
        lines = result.stderr.splitlines()
        assert result.returncode == 1 and len(lines) == 1, f"{name}: {result.returncode} {result.stderr}"
        assert lines[0].startswith("error: backup site (--kubeconfig "), f"{name}: {lines[0]}"
        assert result.stdout == "", name
    pages = [done[name].stderr for name in ("a page, 200", "a page, 404", "JSON, not the API's", "a page over TLS")]
    assert all("is not a Kubernetes API server: GET /version/ answered HTTP" in said for said in pages), pages


def test_control_a_server_that_answers_like_the_api_server_is_asked_on(tmp_path):
    """The check does not refuse what it should let through: /version in JSON, a 404 in the
    API's Status JSON, so status says there is no ConsistentCopy here."""

    def api(path: str) -> bytes:
        if path.rstrip("/") == "/version":
            return http("200 OK", "application/json", VERSION)
        return http("404 Not Found", "application/json", NOT_FOUND)

    with serving(api) as server:
        result = dr_status(tmp_path, "api", server.url)
    assert result.stderr == "" and result.returncode == 0
    assert result.stdout.strip() == "backup: no ConsistentCopy for namespace shop here"


def test_a_server_that_never_answers_is_not_waited_for_forever():
    """The check's own timeout: a server that accepts and never speaks raises urllib3's error,
    which `ccopy dr` words as a site that does not answer."""
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    with socket.create_server(("127.0.0.1", 0)) as silent:
        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{silent.getsockname()[1]}"
        configuration.retries = False
        with pytest.raises(HTTPError):
            not_an_api_server(client.ApiClient(configuration), timeout=0.5)
