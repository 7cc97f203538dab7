"""Prometheus metrics of one array (`ccopy array serve --metrics HOST:PORT`).

Two kinds, so the data path pays almost nothing:
- state read when scraped (journal groups, pairs, pool, copy-on-write), from
  the same views the management API answers with, so a metric and
  `ccopy ctl journal show` never disagree;
- NBD request latency per LDEV and command as a histogram (its `_count` is
  the request count), and errors per LDEV and command: counted by the data
  path in each LDEV's gate (backend/native/gate.c), natively, and read here
  when scraped.

Every metric is listed in docs/metrics.md.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from backend._nbdcore import latency_bounds
from backend.api.replication import group_message
from backend.array import Array
from backend.nbd.constants import Command
from ccopy_api import array_pb2 as pb
from ccopy_common.ldev_id import format_ldev_id
from ccopy_common.rpc import serve_metrics, stop_metrics

# From 50 us (a write to the page cache) to 10 s (a write held by inflow control): the gate's buckets.
LATENCY_BUCKETS = latency_bounds()
PAIR_STATES = [name for name in pb.PairState.keys() if name != "PAIR_STATE_UNSPECIFIED"]  # noqa: SIM118 (an enum)


class ArrayMetrics:
    """The registry of one array."""

    def __init__(self, array: Array) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(ArrayStateCollector(array))
        self.registry.register(NbdRequestCollector(array))
        self._http: WSGIServer | None = None

    def serve(self, address: str) -> str:
        """Serve /metrics on HOST:PORT (port 0 picks one) until `stop`; the bound address."""
        self._http, bound = serve_metrics(self.registry, address)
        return bound

    def stop(self) -> None:
        stop_metrics(self._http)


class NbdRequestCollector(Collector):
    """NBD requests as each open LDEV's gate counted them, whichever thread served them."""

    def __init__(self, array: Array) -> None:
        self.array = array

    def collect(self) -> Iterator[Metric]:
        latency = HistogramMetricFamily(
            "ccopy_nbd_request_seconds", "NBD requests by LDEV and command: time from admission to reply",
            labels=["ldev", "command"],
        )  # fmt: skip
        errors = CounterMetricFamily(
            "ccopy_nbd_errors", "NBD requests answered with an error, by LDEV and command", labels=["ldev", "command"]
        )
        bounds = [*(floatToGoString(bound) for bound in LATENCY_BUCKETS), "+Inf"]
        for runtime in self.array.runtimes.all():
            for command, (counts, seconds, _count, failed) in sorted(runtime.gate.stats().items()):
                labels = [format_ldev_id(runtime.ldev_id), Command(command).name]
                cumulative = list(itertools.accumulate(counts))
                latency.add_metric(labels, list(zip(bounds, cumulative, strict=True)), seconds)
                errors.add_metric(labels, failed)
        yield latency
        yield errors


class ArrayStateCollector(Collector):
    def __init__(self, array: Array) -> None:
        self.array = array

    def collect(self) -> Iterator[Metric]:
        yield from self.pool()
        yield from self.journal_groups()
        yield from self.copy_on_write()

    def pool(self) -> Iterator[Metric]:
        capacity = self.array.capacity()
        pool = GaugeMetricFamily("ccopy_pool_bytes", "The pool's file system and what LDEVs use of it", labels=["kind"])
        for kind, value in (
            ("total", capacity.total_bytes), ("free", capacity.free_bytes),
            ("provisioned", capacity.provisioned_bytes), ("allocated", capacity.allocated_bytes),
        ):  # fmt: skip
            pool.add_metric([kind], value)
        yield pool
        yield GaugeMetricFamily("ccopy_ldevs", "LDEVs in the pool", value=len(capacity.ldevs))

    def journal_groups(self) -> Iterator[Metric]:
        now = time.time()
        labels = ["group", "role"]

        def gauge(name: str, text: str, *extra: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=[*labels, *extra])

        seq = gauge("ccopy_journal_sequence", "Journal sequence numbers: main (last acknowledged write), "
                    "confirmed (by the backup), applied (at the backup)", "kind")  # fmt: skip
        lag = gauge("ccopy_journal_lag_seconds", "Age of the oldest write acknowledged at the main site and not "
                    "applied at the backup: how old the recovery point is")  # fmt: skip
        point = gauge("ccopy_journal_recovery_point_timestamp_seconds",
                      "Main-site time up to which every write is at the backup (unix time)")  # fmt: skip
        rpo = gauge("ccopy_journal_rpo_seconds", "Declared recovery point objective (0: none)")
        over = gauge("ccopy_journal_rpo_exceeded", "1 while the lag is above a declared RPO")
        used = gauge("ccopy_journal_bytes", "Journal space: used and capacity", "kind")
        pending = gauge("ccopy_journal_pending_records", "Records acknowledged at the main site and not yet "
                        "confirmed (main side) or applied (backup side, as of the last contact)")  # fmt: skip
        pending_bytes = gauge("ccopy_journal_pending_bytes", "Journal bytes of those records")
        contact = gauge("ccopy_journal_last_contact_timestamp_seconds",
                        "Backup side: when the main array last answered (unix time; 0: never)")  # fmt: skip
        rate = gauge("ccopy_journal_transfer_bytes_per_second", "Recent transfer rate")
        state = gauge("ccopy_pair_state", "1 for the state each pair is in, 0 for the others", "ldev", "state")
        copied = gauge("ccopy_pair_copy_bytes", "Initial copy or resync progress (backup side)", "ldev", "kind")
        verified = gauge("ccopy_journal_last_verify_timestamp_seconds", "When the group's last completed verify "
                         "ended (unix time; main side, once verified)")  # fmt: skip
        differing = gauge("ccopy_journal_last_verify_differing_regions", "Regions whose P-VOL and S-VOL digests "
                          "differed at the last verify (main side, once verified)")  # fmt: skip
        for record in self.array.store.list_journal_groups():
            group = group_message(self.array, record)
            at = [group.name, group.role]
            for kind, value in (("main", group.main_seq), ("confirmed", group.confirmed_seq),
                                ("applied", group.applied_seq)):  # fmt: skip
                seq.add_metric([*at, kind], value)
            lag.add_metric(at, group.lag_seconds)
            point.add_metric(at, now - group.lag_seconds)
            rpo.add_metric(at, group.rpo_seconds)
            over.add_metric(at, float(bool(group.rpo_seconds) and group.lag_seconds > group.rpo_seconds))
            used.add_metric([*at, "used"], group.usage_bytes)
            used.add_metric([*at, "capacity"], group.capacity_bytes)
            pending.add_metric(at, group.pending_records)
            pending_bytes.add_metric(at, group.pending_bytes)
            if group.role == "backup":
                heard = group.last_contact.ToNanoseconds() / 1e9 if group.HasField("last_contact") else 0.0
                contact.add_metric(at, heard)
            rate.add_metric(at, group.transfer_bytes_per_second)
            if group.HasField("last_verify"):
                verified.add_metric(at, group.last_verify.verified_at.ToNanoseconds() / 1e9)
                differing.add_metric(at, group.last_verify.regions_differing)
            for pair in group.pairs:
                for name in PAIR_STATES:
                    state.add_metric([*at, pair.local_display_id, name], float(pb.PairState.Name(pair.state) == name))
                copied.add_metric([*at, pair.local_display_id, "copied"], pair.copied_bytes)
                copied.add_metric([*at, pair.local_display_id, "total"], pair.copy_total_bytes)
        yield from (seq, lag, point, rpo, over, used, pending, pending_bytes, contact, rate, state, copied)
        yield from (verified, differing)

    def copy_on_write(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "ccopy_cow_chunks_copied", "Chunks preserved for snapshots before host writes (since start)",
            labels=["ldev"],
        )
        syncs = CounterMetricFamily(
            "ccopy_cow_syncs", "Syncs that made those copies durable (since start): copies per sync is the batching",
            labels=["ldev"],
        )
        for runtime in self.array.runtimes.all():
            if runtime.cow is not None:
                family.add_metric([format_ldev_id(runtime.ldev_id)], runtime.cow.chunks_copied)
                syncs.add_metric([format_ldev_id(runtime.ldev_id)], runtime.cow.syncs)
        yield from (family, syncs)
