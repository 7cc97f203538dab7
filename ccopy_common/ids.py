"""CSI ids of volumes, snapshots and group snapshots: versioned and parseable.

    ccv1-<array serial>-<LDEV number, hex>     volume
    ccs1-<array serial>-<snapshot id>          snapshot
    ccg1-<array serial>-<snapshot group id>    volume group snapshot
    ccj1-<array serial>-<journal group name>   csi-addons volume group (the name's UTF-8 bytes in hex)

The serial names the array, so an id from another array (the backup site's)
is recognised as not ours instead of silently addressing a wrong LDEV.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ID = re.compile(r"^cc([vsg])1-([0-9]+)-([0-9a-f]+)$")
_KINDS = {"v": "volume", "s": "snapshot", "g": "group"}


@dataclass(frozen=True)
class ObjectId:
    kind: str  # volume, snapshot, group
    serial: int
    number: int

    def __str__(self) -> str:
        letter = {v: k for k, v in _KINDS.items()}[self.kind]
        number = f"{self.number:06x}" if self.kind == "volume" else f"{self.number:x}"
        return f"cc{letter}1-{self.serial}-{number}"


def volume_id(serial: int, ldev_id: int) -> str:
    return str(ObjectId("volume", serial, ldev_id))


def snapshot_id(serial: int, snapshot: int) -> str:
    return str(ObjectId("snapshot", serial, snapshot))


def group_id(serial: int, group: int) -> str:
    return str(ObjectId("group", serial, group))


def parse(text: str, kind: str, serial: int) -> ObjectId | None:
    """The id if it is a well-formed `kind` id of this array, else None."""
    match = _ID.match(text)
    if not match:
        return None
    parsed = ObjectId(_KINDS[match.group(1)], int(match.group(2)), int(match.group(3), 16))
    if parsed.kind != kind or parsed.serial != serial:
        return None
    return parsed


_JOURNAL_GROUP = re.compile(r"^ccj1-([0-9]+)-((?:[0-9a-f]{2})+)$")


def journal_group_id(serial: int, name: str) -> str:
    """A journal group by name: the name is its key on both arrays of a pair."""
    return f"ccj1-{serial}-{name.encode('utf-8').hex()}"


def parse_journal_group_id(text: str, serial: int) -> str | None:
    """The journal group name if `text` is a well-formed volume group id of this array, else None."""
    match = _JOURNAL_GROUP.match(text)
    if not match or int(match.group(1)) != serial:
        return None
    try:
        return bytes.fromhex(match.group(2)).decode("utf-8")
    except UnicodeDecodeError:
        return None
