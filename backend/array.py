"""The array: the pool's LDEVs, their snapshots and the host sessions open on them.

This is the object both servers share. The gRPC API calls the lifecycle
methods; the NBD server opens a session per connection (backend.sessions).
The array composes the managers (snapshots, clones, the replication
package, the sessions): each gets the shared services below it
(backend.services) and the peers it calls, never the array. The LDEVs in use
are in the runtimes' registry (backend.runtimes).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

from backend.clone import Cloner
from backend.errors import AlreadyExists, Busy, FailedPrecondition, InvalidArgument, NotFound
from backend.model import HostRecord, LdevRecord, LdevState, Publication
from backend.pool import Pool, PoolCapacity, validate_labels
from backend.replication.failback import Failbacks
from backend.replication.journal_groups import JournalGroups
from backend.replication.pair_ops import PairOperations
from backend.replication.pairs import Pairs
from backend.replication.path_watch import PathWatch
from backend.replication.remote import RemoteLink
from backend.replication.replicator import Replicators
from backend.replication.takeover import Takeovers
from backend.replication.verify import Verifier
from backend.replication.verify_points import VerifyPoints
from backend.runtimes import Runtimes
from backend.services import ArrayServices
from backend.sessions import PUBLICATION_EXPORT_PREFIX, Sessions
from backend.snapshots import Snapshots
from backend.write_path import WritePath
from ccopy_common.locks import KeyLocks

log = logging.getLogger(__name__)


def check_host_id(host_id: str) -> None:
    """Hosts are named by the node plugin (CSI node id) or a certificate: 1 to 256 bytes."""
    if not host_id or len(host_id.encode()) > 256:
        raise InvalidArgument("host id must be 1 to 256 bytes")


class Array:
    def __init__(self, pool: Pool, chunk_size: int = 64 * 1024, hosts_by_certificate: bool = False) -> None:
        if chunk_size & (chunk_size - 1) or not 4096 <= chunk_size <= 1 << 20:
            raise InvalidArgument(f"snapshot chunk size must be a power of two from 4 KiB to 1 MiB, not {chunk_size}")
        self.pool = pool
        self.store = pool.store
        self.serial = pool.serial
        self.chunk_size = chunk_size
        # The data path requires client certificates: a host opens its publications by name.
        self.hosts_by_certificate = hosts_by_certificate
        # The runtimes ask the journal groups where writes go, and the write path tells them when a journal is full:
        # both exist before the groups, which need them.
        self.runtimes = Runtimes(pool, lambda ldev_id: self.journal_groups.route_on_open(ldev_id))
        self.write_path = WritePath(lambda target: self.journal_groups.journal_full(target))
        self.name_locks = KeyLocks("name", Busy)
        self.id_locks = KeyLocks("LDEV", Busy)
        services = ArrayServices(pool, self.runtimes, self.write_path, self.name_locks, self.id_locks)
        self.link = RemoteLink()
        self.snapshots = Snapshots(services)
        self.cloner = Cloner(services, self.snapshots)
        self.journal_groups = JournalGroups(services, self.link)
        self.pairs = Pairs(services, self.link, self.journal_groups, self.snapshots, ldevs=self)
        self.pair_ops = PairOperations(services, self.link, self.pairs, self.journal_groups, self.snapshots)
        self.replicators = Replicators(services, self.link, self.pair_ops)
        self.takeovers = Takeovers(services, self.link, self.pairs, self.pair_ops, self.replicators)
        self.failbacks = Failbacks(
            services, self.link, self.pairs, self.pair_ops, self.journal_groups, self.replicators
        )
        self.path_watch = PathWatch(self.store, self.pair_ops)
        self.verify_points = VerifyPoints(self.store, self.runtimes, self.snapshots)
        self.verifier = Verifier(services, self.link, self.journal_groups, self.verify_points)
        self.sessions = Sessions(self.store, self.runtimes, self.write_path, self.pair_ops.await_backup)
        # The calls down the modules' tree that go up: the journal groups and pairs start, wake
        # and stop the backup's apply loops, and every pull or base read is contact for the watch.
        self.journal_groups.replicators = self.replicators
        self.pairs.replicators = self.replicators
        self.pairs.contact = self.path_watch
        self.snapshots.recover()
        self.verify_points.recover()
        self.pairs.drop_orphan_bases()
        self.cloner.resume()

    def close(self) -> None:
        self.path_watch.stop()
        self.replicators.stop()
        self.cloner.stop()
        self.journal_groups.close()
        self.runtimes.close()
        self.pool.close()

    # -- LDEV lifecycle (control path) -----------------------------------------
    def create_ldev(
        self,
        name: str,
        size: int,
        labels: Mapping[str, str] | None = None,
        read_only: bool = False,
        open_to_all: bool = False,
        qos: tuple[int, int] = (0, 0),
    ) -> LdevRecord:
        if qos[0] < 0 or qos[1] < 0:
            raise InvalidArgument("QoS limits cannot be negative")
        with self.name_locks.hold(name):
            record = self.pool.create_ldev(
                name, size, dict(labels or {}), read_only, self.chunk_size,
                open_to_all=open_to_all, qos=qos,
            )  # fmt: skip
        log.info("ldev_created ldev=%s name=%s size=%d", record.display_id, record.name, record.size)
        return record

    def set_qos(self, ldev_id: int, max_iops: int, max_mbps: int) -> LdevRecord:
        """New limits apply to the very next request of every session."""
        if max_iops < 0 or max_mbps < 0:
            raise InvalidArgument("QoS limits cannot be negative")
        with self.id_locks.hold(ldev_id):
            self.get_ldev(ldev_id)
            record = self.store.set_ldev_access(ldev_id, qos=(max_iops, max_mbps))
            self.runtimes.get(ldev_id).qos.update(max_iops, max_mbps)
        log.info("ldev_qos ldev=%s max_iops=%d max_mbps=%d", record.display_id, max_iops, max_mbps)
        return record

    # -- publications (host access control) -------------------------------------
    def set_open_to_all(self, ldev_id: int, open_to_all: bool) -> LdevRecord:
        """Open the LDEV to every host, or close it to the hosts it is published to. Closing
        does not cut sessions already open: unpublish a host to cut its sessions."""
        with self.id_locks.hold(ldev_id):
            self.get_ldev(ldev_id)
            record = self.store.set_ldev_access(ldev_id, open_to_all=open_to_all)
        log.info("ldev_access ldev=%s open_to_all=%s", record.display_id, open_to_all)
        return record

    def publish(self, ldev_id: int, host_id: str, read_only: bool, max_size: int = 0) -> Publication:
        """Let `host_id` open the LDEV over NBD: by name with its client certificate, or
        through the publication's secret export name.

        Idempotent for the same host and mode; the same host asking for the
        other mode is ALREADY_EXISTS (unpublish first).
        """
        check_host_id(host_id)
        with self.id_locks.hold(ldev_id):
            record = self.get_ldev(ldev_id)
            if record.state is not LdevState.NORMAL:
                raise FailedPrecondition(f"LDEV {record.display_id} is {record.state.value}")
            if max_size % 512 or max_size < 0:
                raise InvalidArgument("max_size must be a multiple of 512")
            token = secrets.token_hex(16)
            publication = self.store.upsert_publication(token, ldev_id, host_id, read_only, max_size)
            if publication.read_only != read_only:
                raise AlreadyExists(
                    f"LDEV {record.display_id} is published to {host_id!r} "
                    f"{'read-only' if publication.read_only else 'read-write'}"
                )
        log.info("ldev_published ldev=%s host=%s read_only=%s", record.display_id, host_id, read_only)
        return publication

    def export_by_name(self, record: LdevRecord) -> str:
        """The LDEV's name when some host may open it by name here; "" when hosts reach it
        only through their publications' secret export names."""
        return record.name if record.open_to_all or self.hosts_by_certificate else ""

    def publication_export(self, publication: Publication) -> str:
        """The export name a host asks for: no secret once hosts show certificates."""
        if self.hosts_by_certificate:
            return self.store.get_ldev(publication.ldev_id).name
        return PUBLICATION_EXPORT_PREFIX + publication.token

    def register_host(self, host_id: str, max_volumes: int) -> HostRecord:
        """A node joins (its CSI node plugin says so): the host it is, and its attach limit."""
        check_host_id(host_id)
        self.store.upsert_host(host_id, max_volumes)
        log.info("host_registered host=%s max_volumes=%d", host_id, max_volumes)
        return self.get_host(host_id)

    def get_host(self, host_id: str) -> HostRecord:
        found = self.store.find_host(host_id)
        if found is None:
            raise NotFound(f"host {host_id!r} is not registered")
        return found

    def unpublish(self, ldev_id: int, host_id: str) -> None:
        """Revoke the host's access and cut its open sessions (fencing). Idempotent."""
        with self.id_locks.hold(ldev_id):
            self.get_ldev(ldev_id)
            publication = self.store.delete_publication(ldev_id, host_id)
            if publication is None:
                return
            cut = self.sessions.cut(ldev_id, publication.token)
        log.info("ldev_unpublished ldev=%06x host=%s sessions_cut=%d", ldev_id, host_id, cut)


    def publications(self, ldev_id: int | None = None) -> list[Publication]:
        return self.store.list_publications(ldev_id)

    def delete_ldev(self, ldev_id: int, cascade: bool = False) -> None:
        with self.id_locks.hold(ldev_id):
            record = self.get_ldev(ldev_id)
            snapshots = self.store.list_snapshots(ldev_id=ldev_id, include_hidden=True)
            if snapshots and not cascade:
                raise FailedPrecondition(
                    f"LDEV {record.display_id} has {len(snapshots)} snapshot(s); delete them or ask to cascade"
                )
            for snapshot in snapshots:
                if snapshot.group_id is not None:
                    raise FailedPrecondition(
                        f"snapshot {snapshot.id} of LDEV {record.display_id} belongs to snapshot group "
                        f"{snapshot.group_id}; delete the group first"
                    )
                self.snapshots.check_unused(snapshot)
            with self.runtimes.guard:
                runtime = self.runtimes.find(ldev_id)
                if runtime is not None and (runtime.sessions or any(runtime.snapshot_sessions.values())):
                    raise FailedPrecondition(f"LDEV {record.display_id} has open NBD sessions")
                if record.state is LdevState.COPYING:
                    self.cloner.cancel(ldev_id)
                # From here new sessions are refused: the state is no longer NORMAL.
                self.store.update_ldev(ldev_id, state=LdevState.DELETING)
            for snapshot in snapshots:
                self.snapshots.delete_for_cascade(snapshot)
            self.runtimes.forget(ldev_id)
            self.pool.delete_ldev(record)
        log.info("ldev_deleted ldev=%s name=%s snapshots=%d", record.display_id, record.name, len(snapshots))

    def expand_ldev(self, ldev_id: int, new_size: int) -> LdevRecord:
        with self.id_locks.hold(ldev_id):
            record = self.get_ldev(ldev_id)
            if record.state is not LdevState.NORMAL:
                raise FailedPrecondition(f"LDEV {record.display_id} is {record.state.value}")
            record = self.pool.expand_ldev(record, new_size)
            self.runtimes.set_size(ldev_id, record.size)
        log.info("ldev_expanded ldev=%s size=%d", record.display_id, record.size)
        return record

    def update_labels(self, ldev_id: int, set_labels: Mapping[str, str], remove: list[str]) -> LdevRecord:
        with self.id_locks.hold(ldev_id):
            record = self.get_ldev(ldev_id)
            merged = {k: v for k, v in record.labels.items() if k not in remove} | dict(set_labels)
            validate_labels(merged)
            return self.store.update_labels(ldev_id, set_labels, remove)

    def get_ldev(self, ldev_id: int) -> LdevRecord:
        return self.store.get_ldev(ldev_id)

    def get_ldev_by_name(self, name: str) -> LdevRecord:
        record = self.store.find_ldev_by_name(name)
        if record is None:
            raise NotFound(f"LDEV named {name!r} not found")
        return record

    def list_ldevs(
        self, after_id: int = -1, limit: int | None = None, label_selector: Mapping[str, str] | None = None
    ) -> list[LdevRecord]:
        return self.store.list_ldevs(after_id, limit, label_selector)

    def capacity(self) -> PoolCapacity:
        return self.pool.capacity()

    def allocated_bytes(self, ldev_id: int) -> int:
        return self.pool.allocated_bytes(ldev_id)

    def snapshot_bytes(self, ldev_id: int) -> int:
        """Pool space the LDEV's snapshots hold (its copy-on-write store)."""
        try:
            return self.runtimes.cow_path(ldev_id).stat().st_blocks * 512
        except FileNotFoundError:
            return 0


