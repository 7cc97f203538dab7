"""`ccopy ctl` verbs for asynchronous remote copy: pairs and journal groups."""

from __future__ import annotations

import argparse
from typing import Any

from ccopy import ctl_verify
from ccopy.ctl_base import CALL_TIMEOUT, ldev_ref, table, to_dict, wrap
from ccopy.flag_types import seconds, size, whole_number
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.loss_words import given_up_words, moment
from ccopy_common.units import format_size

PAIR_HEADERS = ("ID", "GROUP", "ROLE", "LDEV", "NAME", "EXPORT", "REMOTE LDEV", "REMOTE SERIAL", "STATE")


def add_objects(objects: argparse._SubParsersAction) -> None:
    pair = objects.add_parser("pair", help="remote-copy pairs").add_subparsers(dest="verb", required=True)
    create = pair.add_parser("create", help="pair a P-VOL into a journal group (run on the main array)")
    create.add_argument("ldev", help="P-VOL id or name")
    create.add_argument("--group", required=True, help="journal group (consistency group) name")
    create.add_argument("--journal-size", type=size, default="1GiB", help="journal capacity of a new group")
    create.add_argument("--svol", type=whole_number, default=0, help="an existing backup LDEV number to use as S-VOL")
    create.add_argument("--sync", action="store_true", help="a new synchronous group: writes wait for the backup")
    create.set_defaults(run=pair_create)
    listing = pair.add_parser("list", help="pairs and their states")
    listing.add_argument("--group", default="")
    listing.set_defaults(run=pair_list)
    delete = pair.add_parser("delete", help="one pair back to SMPL on both arrays (run on the main array)")
    delete.add_argument("ldev", help="P-VOL id or name")
    delete.set_defaults(run=pair_delete)
    split = pair.add_parser("split", help="split every pair of a journal group at one sequence (main array)")
    split.add_argument("group")
    split.add_argument("--svol-writable", action="store_true", help="hosts may write the S-VOLs once split")
    split.set_defaults(run=pair_split)
    resync = pair.add_parser("resync", help="copy what changed on either side since the split, then PAIR")
    resync.add_argument("group")
    resync.add_argument("--verify", action="store_true", help="once PAIR again, verify the group (as pair verify)")
    resync.set_defaults(run=pair_resync)
    ctl_verify.add_pair_verbs(pair)
    takeover = pair.add_parser("takeover", help="make the S-VOLs of a group writable primaries (backup array)")
    takeover.add_argument("group")
    takeover.add_argument("--force", action="store_true", help="from PAIR, or when the main array does not answer")
    takeover.set_defaults(run=pair_takeover)
    failback = pair.add_parser("failback", help="after a takeover: the old main array becomes the backup (run here)")
    failback.add_argument("group")
    failback.set_defaults(run=pair_failback)
    journal = objects.add_parser("journal", help="journal groups").add_subparsers(dest="verb", required=True)
    show = journal.add_parser("show", help="sequence, pending work, lag and transfer rate of a group")
    show.add_argument("group")
    show.set_defaults(run=journal_show)
    options = journal.add_parser("set", help="what a full journal does (suspend or throttle writes); the RPO")
    options.add_argument("group")
    options.add_argument("--inflow-control", choices=("on", "off"), help="unchanged if not given")
    options.add_argument("--overflow-watch", type=seconds, default=0, help="seconds writes may wait for room")
    options.add_argument("--rpo", type=seconds, default=None, help="declared RPO, seconds (0: none)")
    options.set_defaults(run=journal_set)


def pair_row(pair: pb.Pair) -> list[str]:
    return [
        str(pair.id),
        pair.group_name,
        pair.role,
        pair.local_display_id,
        pair.local_name,
        pair.export_name or "(publications only)",
        f"{pair.remote_ldev_id:06X}",
        str(pair.remote_serial),
        pb.PairState.Name(pair.state),
    ]


@wrap
def pair_create(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev = ldev_ref(stub, args.ldev)
    request = pb.CreatePairRequest(
        group_name=args.group, pvol_id=ldev.id, journal_capacity_bytes=args.journal_size, svol_id=args.svol,
        synchronous=args.sync,
    )  # fmt: skip
    pair = stub.CreatePair(request, timeout=CALL_TIMEOUT)
    return to_dict(pair), lambda: table(PAIR_HEADERS, [pair_row(pair)])


@wrap
def pair_list(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    pairs = list(stub.ListPairs(pb.ListPairsRequest(group_name=args.group), timeout=CALL_TIMEOUT).pairs)
    return [to_dict(p) for p in pairs], lambda: table(PAIR_HEADERS, [pair_row(p) for p in pairs])


@wrap
def pair_delete(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev = ldev_ref(stub, args.ldev)
    stub.DeletePair(pb.DeletePairRequest(pvol_id=ldev.id), timeout=CALL_TIMEOUT)
    return {"deleted": ldev.id}, lambda: f"pair of {ldev.display_id} deleted (SMPL)"


@wrap
def pair_split(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    request = pb.SplitPairsRequest(group_name=args.group, svol_writable=args.svol_writable)
    return group_view(stub.SplitPairs(request, timeout=CALL_TIMEOUT))


@wrap
def pair_resync(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    group = stub.ResyncPairs(pb.ResyncPairsRequest(group_name=args.group), timeout=CALL_TIMEOUT)
    if not args.verify:
        return group_view(group)
    data, render, status = ctl_verify.verify_view(ctl_verify.resync_then_verify(stub, group))
    shown = f"resynced {group.name}, then verified:\n"
    return {"group": to_dict(group), "verify": data}, lambda: shown + render(), status


@wrap
def pair_takeover(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    answer = stub.Takeover(pb.TakeoverRequest(group_name=args.group, force=args.force), timeout=60)
    lost = answer.given_up
    data, render = group_view(answer.group)
    summary = "lost by this takeover (given up): " + given_up_words(lost)
    return {**data, "given_up": to_dict(lost)}, lambda: render() + "\n\n" + summary


@wrap
def pair_failback(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    return group_view(stub.Failback(pb.FailbackRequest(group_name=args.group), timeout=60))


@wrap
def journal_show(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    return group_view(stub.GetJournalGroup(pb.GetJournalGroupRequest(name=args.group), timeout=CALL_TIMEOUT))


@wrap
def journal_set(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    request = pb.UpdateJournalGroupRequest(name=args.group, data_overflow_watch_seconds=args.overflow_watch)
    if args.inflow_control is not None:
        request.inflow_control = args.inflow_control == "on"
    if args.rpo is not None:
        request.rpo_seconds = args.rpo
    return group_view(stub.UpdateJournalGroup(request, timeout=CALL_TIMEOUT))


def group_view(group: pb.JournalGroup) -> Any:
    def render() -> str:
        rows = [
            ["group", f"{group.name} ({group.role} side, remote serial {group.remote_serial})"],
            ["journal", f"{format_size(group.usage_bytes)} of {format_size(group.capacity_bytes)}"
                        + (" OVERFLOWED" if group.overflowed else "")],
            ["main sequence", str(group.main_seq)],
            # Each side keeps its own: the main array what the backup confirmed, the backup what it applied.
            ["confirmed by the backup", str(group.confirmed_seq)] if group.role == "main"
            else ["applied here", str(group.applied_seq)],
            ["pending", f"{group.pending_records} records, {format_size(group.pending_bytes)}"],
            ["lag", f"{group.lag_seconds:.3f} s"],
            ["recovery point", moment(group.recovery_point)],
            *([["last contact", moment(group.last_contact) + " (pending counted then; lag: how old the oldest "
                                                                "write missing here is now)"]]
              if group.role == "backup" else []),
            *([["transfer", f"{format_size(int(group.transfer_bytes_per_second))}/s (average since the apply "
                            "loop started)"]] if group.role == "backup" else []),
            ["split", f"after sequence {group.split_seq}" if group.split else "no"],
            ["when full", f"hold writes up to {group.data_overflow_watch_seconds:g} s" if group.inflow_control
                          else "suspend (PFUS)"],
            ["RPO", f"{group.rpo_seconds:g} s" if group.rpo_seconds else "none declared"],
            ["last verify", ctl_verify.last_verify_words(group)],
        ]  # fmt: skip
        pairs = table(PAIR_HEADERS, [pair_row(p) for p in group.pairs]) if group.pairs else "(none)"
        return table(("FIELD", "VALUE"), rows) + f"\n\npairs of {group.name}:\n" + pairs

    return to_dict(group), render
