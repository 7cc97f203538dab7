"""What the node plugin staged, kept on disk so a restarted plugin can carry on.

One JSON file per volume under <state_dir>/volumes, written atomically (temp
file, fsync, rename, fsync of the folder), so a crash leaves the old or the
new record and never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class StagedVolume:
    volume_id: str
    staging_path: str
    access: str  # "mount" or "block"
    device: str
    fuse_dir: str
    nbd_uri: str
    fs_type: str = ""
    read_only: bool = False
    nbd_device: str = ""  # kernel nbd route only
    # Which binding of the loop device is ours: how a restarted plugin knows its loop device
    # once the path it was bound through is gone (attach.py loop_binding).
    binding: str = ""
    # Where NodePublishVolume bound it: a single-writer volume may have one target only.
    targets: list[str] = field(default_factory=list)


class NodeState:
    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / "volumes"
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, volume_id: str) -> Path:
        return self.folder / (hashlib.sha256(volume_id.encode()).hexdigest()[:32] + ".json")

    def work_dir(self, volume_id: str) -> Path:
        """Where the volume's nbdfuse mount lives."""
        return self.folder / hashlib.sha256(volume_id.encode()).hexdigest()[:32]

    def get(self, volume_id: str) -> StagedVolume | None:
        try:
            return StagedVolume(**json.loads(self._path(volume_id).read_text()))
        except FileNotFoundError:
            return None

    def put(self, staged: StagedVolume) -> None:
        path = self._path(staged.volume_id)
        temp = path.with_suffix(".tmp")
        with open(temp, "w") as f:
            json.dump(asdict(staged), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, volume_id: str) -> None:
        self._path(volume_id).unlink(missing_ok=True)

    def all(self) -> list[StagedVolume]:
        return [StagedVolume(**json.loads(p.read_text())) for p in sorted(self.folder.glob("*.json"))]
