"""Regenerate the gRPC/protobuf modules of `ccopy_api` from `proto/*.proto`.

The `.proto` files live in `proto/` (the sources users read); protoc sees them
under the virtual folder `ccopy_api/` so the generated modules import each
other as `ccopy_api.x_pb2` instead of as top-level modules.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PACKAGE = "ccopy_api"
ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def proto_files() -> list[Path]:
    """Ours and CSI's at the top, the csi-addons services in `csiaddons/`."""
    return sorted(PROTO_DIR.glob("*.proto")) + sorted(PROTO_DIR.glob("csiaddons/*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Write generated modules under `out_root/ccopy_api/` (and its `csiaddons/`); return their paths,
    relative to `out_root/ccopy_api/`."""
    (out_root / PACKAGE / "csiaddons").mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{PACKAGE}={PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
    ] + [f"{PACKAGE}/{p.relative_to(PROTO_DIR)}" for p in proto_files()]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    return generated(out_root / PACKAGE)


def generated(package_dir: Path) -> list[Path]:
    """The generated modules under `package_dir`, relative to it."""
    suffixes = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")
    return sorted(p.relative_to(package_dir) for p in package_dir.rglob("*_pb2*") if p.name.endswith(suffixes))


def main() -> int:
    for path in generate(ROOT):
        print(Path(PACKAGE) / path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
