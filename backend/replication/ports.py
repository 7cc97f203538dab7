"""The few calls a replication manager makes to one above it, as protocols: the
objects are wired together by the array (backend.array), the modules stay a
tree (journal groups below pairs below pair operations below the replicator)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from backend.model import LdevRecord


class ReplicatorControl(Protocol):
    """The apply loops of the backup's journal groups (backend.replication.replicator)."""

    def ensure(self, group_id: int) -> object: ...

    def halt(self, group_id: int) -> None: ...

    def wake(self, group_id: int) -> None: ...

    def get(self, group_id: int) -> ReplicatorStatus | None: ...


class ReplicatorStatus(Protocol):
    def status(self) -> dict[str, float]: ...


class Contact(Protocol):
    """The path watch (backend.replication.path_watch): the backup was heard from."""

    def heard_from(self, group_id: int) -> None: ...


class LdevMaker(Protocol):
    """Makes an LDEV the way a user's request does (the array): S-VOLs are ordinary LDEVs."""

    def create_ldev(
        self,
        name: str,
        size: int,
        labels: Mapping[str, str] | None = None,
        read_only: bool = False,
        open_to_all: bool = False,
        qos: tuple[int, int] = (0, 0),
    ) -> LdevRecord: ...
