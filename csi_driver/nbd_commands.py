"""The commands attaching runs (nbdfuse, losetup, fusermount3, umount), and the one error
every step of attaching and detaching raises, saying which step failed."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


class AttachError(Exception):
    """Attaching or detaching failed; the message says which step."""


def nbdfuse_argv(uri: str, target: Path, pidfile: Path, read_only: bool, tls_certificates: Path | None) -> list[str]:
    """The nbdfuse command serving `uri` as the file `target`: straight to the URI, or over
    TLS through nbdkit's nbd plugin, socket-activated by nbdfuse (and gone with it)."""
    from urllib.parse import unquote, urlparse

    argv = ["nbdfuse", "-P", str(pidfile), *(["-r"] if read_only else []), str(target)]
    parsed = urlparse(uri)
    if parsed.scheme != "nbds":
        return [*argv, uri]
    if tls_certificates is None:
        raise AttachError(f"{uri} needs TLS and this node has no client certificate")
    proxy = ["nbdkit", *(["-r"] if read_only else []), "nbd", f"hostname={parsed.hostname}",
             f"port={parsed.port or 10809}", f"export={unquote(parsed.path[1:])}", "tls=require",
             f"tls-certificates={tls_certificates}"]  # fmt: skip
    return [*argv, "[", *proxy, "]"]


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AttachError(f"{' '.join(argv)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip()


def run_while_busy(*argv: str, seconds: float = 20.0) -> None:
    """Run an unmount until it succeeds: a process that just closed its last file there
    (an exiting program, a loop device being released) may keep the target busy a
    moment longer, longer still on a loaded machine."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            run(*argv)
            return
        except AttachError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
