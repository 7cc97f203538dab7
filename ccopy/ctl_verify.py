"""`ccopy ctl pair verify` and `pair resync --verify`: online verify of a journal group
(proto VerifyPairs). Exit status 0 when every region is equal, VERIFY_DIFFERS (3) when
regions differ (printed, with their offsets), 1 for any error (one line)."""

from __future__ import annotations

import argparse
from typing import Any

from ccopy.ctl_base import CALL_TIMEOUT, UsageError, table, to_dict, wrap
from ccopy.waiting import Stalled, replication_progress, wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.ldev_id import format_ldev_id
from ccopy_common.loss_words import moment
from ccopy_common.units import format_size

VERIFY_DIFFERS = 3
# Each array digests its own volumes, about a second per GiB written: long for large groups.
VERIFY_TIMEOUT = 6 * 3600.0
# A resync that moves nothing (no region copied, no state changed) for this long is stuck.
RESYNC_STALL = 120.0
REGION_HEADERS = ("P-VOL", "NAME", "S-VOL", "OFFSET", "LENGTH")


def add_pair_verbs(pair: argparse._SubParsersAction) -> None:
    verify = pair.add_parser(
        "verify",
        help="compare every P-VOL of a journal group with its S-VOL at one consistent point (main array); "
        f"exit {VERIFY_DIFFERS} when regions differ",
    )
    verify.add_argument("group")
    verify.add_argument(
        "--repair", action="store_true", help="split groups: mark the differing regions so the next resync copies them"
    )
    verify.set_defaults(run=pair_verify)


@wrap
def pair_verify(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    return verify_view(verify(stub, args.group, args.repair))


def verify(stub: pb_grpc.ArrayStub, group: str, repair: bool = False) -> pb.VerifyPairsResponse:
    return stub.VerifyPairs(pb.VerifyPairsRequest(group_name=group, repair=repair), timeout=VERIFY_TIMEOUT)


def resync_then_verify(stub: pb_grpc.ArrayStub, resynced: pb.JournalGroup) -> pb.VerifyPairsResponse:
    """Wait until every pair of the resynced group is PAIR again (failing only when the resync
    stops moving), then verify it."""
    request = pb.GetJournalGroupRequest(name=resynced.name)
    try:
        wait_progressing(
            lambda: stub.GetJournalGroup(request, timeout=CALL_TIMEOUT),
            lambda g: not g.split and bool(g.pairs) and all(p.state == pb.PAIR for p in g.pairs),
            f"journal group {resynced.name} resyncing", progress=replication_progress, stall=RESYNC_STALL, interval=0.2,
        )  # fmt: skip
    except Stalled as exc:
        name = resynced.name
        raise UsageError(f"journal group {name}: the resync moved nothing for {RESYNC_STALL:.0f} s, so it was not "
                         f"verified; see ccopy ctl journal show {name}") from exc  # fmt: skip
    return verify(stub, resynced.name)


def verify_view(answer: pb.VerifyPairsResponse) -> tuple[dict[str, Any], Any, int]:
    """(JSON, table, exit status) of a verify."""
    return to_dict(answer), lambda: verify_table(answer), VERIFY_DIFFERS if answer.differing else 0


def verify_table(answer: pb.VerifyPairsResponse) -> str:
    summary = answer.summary
    rows = [["group", answer.group_name], *summary_rows(summary)]
    text = table(("FIELD", "VALUE"), rows)
    if answer.differing:
        regions = [region_row(r) for r in answer.differing]
        text += f"\n\ndiffering regions of {answer.group_name}:\n" + table(REGION_HEADERS, regions)
    return text


def summary_rows(summary: pb.VerifySummary) -> list[list[str]]:
    """A verify's result as FIELD/VALUE rows (a verify's answer, and a group's last verify)."""
    point = (
        f"split point, sequence {summary.seq} (only regions neither side wrote since)"
        if summary.at_split
        else f"sequence {summary.seq} (snapshots of both sides at that sequence)"
    )
    verdict = f"{summary.regions_differing} region(s) DIFFER" if summary.regions_differing else "none: equal"
    if summary.repaired:
        verdict += ", marked for the next resync"
    return [
        ["verified at", moment(summary.verified_at)],
        ["compared at", point],
        ["compared", f"{summary.regions_compared} regions of {format_size(summary.region_bytes)} "
                     f"({format_size(summary.bytes_compared)}), {summary.regions_skipped} skipped"],
        ["differing", verdict],
        ["took", f"{summary.seconds:.2f} s"],
    ]  # fmt: skip


def region_row(region: pb.DifferingRegion) -> list[str]:
    return [
        region.pvol_display_id,
        region.pvol_name,
        format_ldev_id(region.svol_id),
        f"{region.offset} ({format_size(region.offset)})",
        format_size(region.length),
    ]


def last_verify_words(group: pb.JournalGroup) -> str:
    """A group's last verify in one line, for `journal show`."""
    if not group.HasField("last_verify"):
        return "never (ccopy ctl pair verify)" if group.role == "main" else "at the main array"
    last = group.last_verify
    verdict = f"{last.regions_differing} region(s) DIFFER" if last.regions_differing else "equal"
    where = "split point" if last.at_split else "sequence"
    repaired = ", marked for the next resync" if last.repaired else ""
    return f"{moment(last.verified_at)} at {where} {last.seq}: {verdict} ({last.regions_compared} regions){repaired}"
