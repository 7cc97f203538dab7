"""The project's image, built here from the Dockerfile as a user builds it (`make image`), and
the kubernetes-csi and csi-addons sidecars' images, for a real node's containerd.

No registry is reachable from these machines, so the public Python image the Dockerfile
starts from cannot be pulled: the base is made here instead (mmdebstrap from Debian's
mirror: Debian 12 with its Python 3.11, the tests' Python, and its venv module) and passed
as the Dockerfile's BASE, the Dockerfile otherwise unchanged. The sidecars' images hold the
binaries ../shared/k8s built from the same public sources (static Go programs) with the
entry point their upstream images have. Everything is built with podman into a storage
of its own under the build folder, and saved as archives `ctr images import` takes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.control_plane import K8S_BIN

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("podman", "mmdebstrap", "runc")
BASE = "localhost/ccopy-base:bookworm"
IMAGE = "localhost/ccopy:e2e"
# The sidecars the chart runs, as values the chart takes (sidecars.*) and the binary each holds.
SIDECARS = {
    "provisioner": "csi-provisioner",
    "attacher": "csi-attacher",
    "resizer": "csi-resizer",
    "snapshotter": "csi-snapshotter",
    "nodeDriverRegistrar": "csi-node-driver-registrar",
    "livenessProbe": "livenessprobe",
    "csiAddons": "csi-addons-sidecar",
}
# A build behind this machine's TLS-intercepting proxy trusts the machine's CA bundle; mounted
# for the build only, as ../shared/k8s/README.md says.
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def tools_missing() -> str:
    """Why the images cannot be built here, or ''."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"cannot build images without {', '.join(missing)}: apt-get install {' '.join(missing)} (make test does)"
    return ""


def sidecar_image(binary: str) -> str:
    return f"localhost/{binary}:built-here"


@dataclass(frozen=True)
class Images:
    """What was built: the archive for the node's containerd, and the chart values naming it all."""

    archive: Path
    image: str
    build_seconds: float
    inspected: dict  # podman image inspect of the project's image: its config, labels, size

    def chart_values(self) -> list[str]:
        repository, tag = self.image.rsplit(":", 1)
        return [f"image.repository={repository}", f"image.tag={tag}", "image.pullPolicy=Never",
                *(f"sidecars.{value}={sidecar_image(binary)}" for value, binary in SIDECARS.items())]  # fmt: skip


class Podman:
    """podman with a storage, a run folder and a configuration of its own under `folder`:
    runc (crun cannot run containers on these hosts: hybrid cgroups, no CAP_SYS_RESOURCE) and
    no default ulimits (raising one past the host's hard limit needs that capability too)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "containers.conf"
        conf.write_text('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.command = ["podman", "--root", str(folder / "storage"), "--runroot", str(folder / "run")]

    def __call__(self, *argv: str, cwd: Path | None = None, timeout: float = 900) -> str:
        done = subprocess.run([*self.command, *argv], capture_output=True, text=True, env=self.env, cwd=cwd,
                              timeout=timeout)  # fmt: skip
        assert done.returncode == 0, f"podman {' '.join(argv[:2])}: {done.stderr[-3000:]}"
        return done.stdout

    def remove_everything(self) -> None:
        """Its storage holds layers as root-owned overlay folders: podman removes them itself."""
        subprocess.run([*self.command, "system", "reset", "--force"], capture_output=True, env=self.env, timeout=300)
        shutil.rmtree(self.folder, ignore_errors=True)


def make_base(podman: Podman, folder: Path) -> None:
    """Debian 12 with Python 3.11 and venv, the stand-in for the public Python image. Its pip
    trusts the system's CA bundle (the public image's pip does by default)."""
    tarball = folder / "base.tar"
    pip_conf = 'printf "[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n" > "$1/etc/pip.conf"'
    done = subprocess.run(
        ["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
         f"--customize-hook={pip_conf}", "bookworm", str(tarball)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, f"mmdebstrap: {done.stderr[-3000:]}"
    podman("import", str(tarball), BASE)
    tarball.unlink()


def build_image(podman: Podman) -> None:
    """`make image` with podman as the builder, on the stand-in base."""
    builder = " ".join(podman.command)
    done = subprocess.run(
        ["make", "-C", str(ROOT), "image", f"IMAGE={IMAGE}", f"IMAGE_BUILDER={builder}", f"BASE={BASE}",
         f"IMAGE_BUILD_FLAGS=-v {CA_BUNDLE}:{CA_BUNDLE}:ro"],
        capture_output=True, text=True, env=podman.env, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, f"make image: {done.stdout[-3000:]}{done.stderr[-3000:]}"


def build_sidecars(podman: Podman, folder: Path) -> None:
    for binary in SIDECARS.values():
        context = folder / "sidecars" / binary
        context.mkdir(parents=True, exist_ok=True)
        shutil.copy2(K8S_BIN / binary, context / binary)
        (context / "Containerfile").write_text(f'FROM scratch\nCOPY {binary} /{binary}\nENTRYPOINT ["/{binary}"]\n')
        podman("build", "-t", sidecar_image(binary), str(context))
        shutil.rmtree(context)


def build_all(folder: Path) -> Images:
    """Every image a node of the chart runs, in one archive under `folder`."""
    started = time.monotonic()
    podman = Podman(folder / "podman")
    try:
        make_base(podman, folder)
        build_image(podman)
        build_sidecars(podman, folder)
        seconds = time.monotonic() - started
        (inspected,) = json.loads(podman("image", "inspect", IMAGE))
        archive = folder / "images.tar"
        podman("save", "--multi-image-archive", "--format", "docker-archive", "-o", str(archive), IMAGE,
               *(sidecar_image(binary) for binary in SIDECARS.values()))  # fmt: skip
    finally:
        podman.remove_everything()
    return Images(archive, IMAGE, seconds, inspected)
