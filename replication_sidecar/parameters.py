"""Replication class parameters: what a VolumeReplicationClass or a
VolumeGroupReplicationClass may say, checked before anything touches the array.

The csi-addons manager strips its own `replication.storage.openshift.io/` keys
and passes the rest unchanged; an unknown key is a typo that would otherwise
be ignored silently, so it is INVALID_ARGUMENT.

| key                  | meaning                                                      | default |
| -------------------- | ------------------------------------------------------------ | ------- |
| `mode`               | `async` (journal copy, no wait) or `sync` (each write waits)  | async   |
| `rpoSeconds`         | declared recovery point objective: status and metrics only   | none    |
| `journalCapacity`    | journal size of a new group (`1Gi`, `512MiB`, bytes)          | 1Gi     |
| `schedulingInterval` | how often the manager asks for status (Go duration)          | none    |

`schedulingInterval` is accepted and checked; journal copy has nothing else to
schedule (every write is copied as it comes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ccopy_common.errors import InvalidArgument
from ccopy_common.units import parse_size

DEFAULT_JOURNAL_CAPACITY = 1 << 30
MIN_JOURNAL_CAPACITY = 1 << 20
KNOWN_KEYS = ("mode", "rpoSeconds", "journalCapacity", "schedulingInterval")
_GO_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")


@dataclass(frozen=True)
class GroupParameters:
    synchronous: bool = False
    rpo_seconds: float = 0.0  # 0: no objective declared
    journal_capacity: int = DEFAULT_JOURNAL_CAPACITY


def parse_parameters(parameters: Mapping[str, str]) -> GroupParameters:
    unknown = sorted(set(parameters) - set(KNOWN_KEYS))
    if unknown:
        raise InvalidArgument(f"unknown parameter(s) {unknown}; known: {list(KNOWN_KEYS)}")
    mode = parameters.get("mode", "async")
    if mode not in ("async", "sync"):
        raise InvalidArgument(f"mode must be async or sync, not {mode!r}")
    _check_interval(parameters.get("schedulingInterval", ""))
    return GroupParameters(
        synchronous=mode == "sync",
        rpo_seconds=_rpo(parameters.get("rpoSeconds", "")),
        journal_capacity=_capacity(parameters.get("journalCapacity", "")),
    )


def _rpo(text: str) -> float:
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f"rpoSeconds must be a number of seconds, not {text!r}") from None
    if not 0 < value < float("inf"):
        raise InvalidArgument(f"rpoSeconds must be positive, not {text!r}")
    return value


def _capacity(text: str) -> int:
    if not text:
        return DEFAULT_JOURNAL_CAPACITY
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise InvalidArgument(f"journalCapacity: {exc}") from None
    if value < MIN_JOURNAL_CAPACITY:
        raise InvalidArgument(f"journalCapacity must be at least 1Mi, not {text!r}")
    return value


def _check_interval(text: str) -> None:
    if text and not _GO_DURATION.match(text):
        raise InvalidArgument(f"schedulingInterval must be a duration such as 1m or 30s, not {text!r}")
