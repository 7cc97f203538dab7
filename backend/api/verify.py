"""Online verify RPCs of the array service (a mixin of ArrayServicer), and the verify
messages: VerifyPairs for administrators, SecondaryDigests on the link between arrays.
The domain is backend.replication.verify."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from backend import errors
from backend.api.lag_messages import stamp
from backend.array import Array
from backend.model import VerifyRecord
from backend.replication.verify import DifferingRegion, VerifyReport
from ccopy_api import array_pb2 as pb
from ccopy_common.ldev_id import format_ldev_id


def summary_message(record: VerifyRecord | None) -> pb.VerifySummary | None:
    """A group's last verify on the wire; None (unset) when it was never verified."""
    if record is None:
        return None
    return pb.VerifySummary(
        verified_at=stamp(int(record.verified_at * 1e9)), seq=record.seq, at_split=record.at_split,
        region_bytes=record.region_bytes, regions_compared=record.regions_compared,
        regions_differing=record.regions_differing, regions_skipped=record.regions_skipped,
        bytes_compared=record.bytes_compared, repaired=record.repaired, seconds=record.seconds,
    )  # fmt: skip


def report_message(array: Array, report: VerifyReport) -> pb.VerifyPairsResponse:
    names = {}
    for pvol in {r.pvol_id for r in report.differing}:
        ldev = array.store.find_ldev(pvol)
        names[pvol] = ldev.name if ldev else ""
    return pb.VerifyPairsResponse(
        group_name=report.group_name,
        summary=summary_message(report.record),
        differing=[region_message(r, names[r.pvol_id]) for r in report.differing],
    )


def region_message(region: DifferingRegion, pvol_name: str) -> pb.DifferingRegion:
    return pb.DifferingRegion(
        pvol_id=region.pvol_id, pvol_display_id=format_ldev_id(region.pvol_id), pvol_name=pvol_name,
        svol_id=region.svol_id, offset=region.offset, length=region.length,
    )  # fmt: skip


class VerifyRpcs:
    array: Array

    def VerifyPairs(self, request: pb.VerifyPairsRequest, context: grpc.ServicerContext) -> pb.VerifyPairsResponse:
        if not request.group_name:
            raise errors.InvalidArgument("group_name is required")
        return report_message(self.array, self.array.verifier.verify(request.group_name, request.repair))

    def SecondaryDigests(
        self, request: pb.SecondaryDigestsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.SecondaryDigestPart]:
        parts = self.array.verifier.secondary_digests(
            request.group_name, request.seq, request.region_bytes, request.at_split
        )
        with contextlib.closing(parts):  # the main array hung up: the snapshots go at once
            for part in parts:
                yield pb.SecondaryDigestPart(
                    cut=part.cut, pvol_id=part.pvol_id, svol_id=part.svol_id, size_bytes=part.size,
                    first_region=part.first_region, digests=part.digests, changed=part.changed,
                )  # fmt: skip
