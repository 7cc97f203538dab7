"""Run a program with the credentials a container of a Pod has, without a container.

Some programs (the csi-addons sidecar) take their API server only from the
in-cluster configuration: `KUBERNETES_SERVICE_HOST`/`_PORT` in the environment and
`token` and `ca.crt` in /run/secrets/kubernetes.io/serviceaccount (/var/run is a
link to /run). Writing those into the host's /run would hand every process on the
machine the same identity and outlive the test; so this runs as

    unshare -m --propagation private python in_pod.py --serviceaccount DIR -- PROGRAM ARGS...

and puts a tmpfs of its own on /run, copies DIR's files into it and becomes PROGRAM.
The mount exists only in that private mount namespace and vanishes with the last
process in it, so stopping PROGRAM leaves nothing mounted.

Standard library only: it runs as a script, whatever the caller's sys.path.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

SERVICE_ACCOUNT = Path("/run/secrets/kubernetes.io/serviceaccount")
FILES = {"token": 0o600, "ca.crt": 0o644, "namespace": 0o644}  # what a projected token volume holds

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def in_own_mount_namespace() -> bool:
    """True unless this process shares its parent's mount namespace (the harness's, the
    machine's), where a mount on /run would cover everyone's /run. The parent, not PID 1:
    from inside a new namespace the kernel refuses to show PID 1's."""
    return os.readlink("/proc/self/ns/mnt") != os.readlink(f"/proc/{os.getppid()}/ns/mnt")


def mount_tmpfs(target: Path) -> None:
    if _libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", 0, b"mode=0755,size=1m") != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(target))


def install_service_account(source: Path) -> None:
    """A fresh /run holding only the service-account files, as a Pod's container sees them."""
    mount_tmpfs(Path("/run"))
    SERVICE_ACCOUNT.mkdir(parents=True)
    for name, mode in FILES.items():
        shutil.copyfile(source / name, SERVICE_ACCOUNT / name)
        os.chmod(SERVICE_ACCOUNT / name, mode)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serviceaccount", type=Path, required=True, help="folder with token, ca.crt, namespace")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- PROGRAM ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no program to run")
    if not in_own_mount_namespace():
        sys.exit("in_pod: refusing to mount over the host's /run; run me under `unshare -m --propagation private`")
    install_service_account(args.serviceaccount)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
