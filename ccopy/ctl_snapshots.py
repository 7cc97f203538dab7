"""`ccopy ctl` verbs for snapshots, snapshot groups, clones, restore and changed blocks."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ccopy.ctl_base import CALL_TIMEOUT, UsageError, ldev_ref, one_ldev, table, to_dict, wrap
from ccopy.flag_types import key_value, size, whole_number
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.units import format_size

SNAPSHOT_HEADERS = ("ID", "NAME", "LDEV", "SIZE", "GROUP", "READY", "EXPORT")


def add_ldev_verbs(ldev: argparse._SubParsersAction) -> None:
    clone = ldev.add_parser("clone", help="new LDEV with the data of a snapshot or an LDEV")
    clone.add_argument("name")
    source = clone.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-snapshot", metavar="SNAPSHOT", help="snapshot id or name")
    source.add_argument("--from-ldev", metavar="LDEV", help="LDEV id or name (cloned at this instant)")
    clone.add_argument("--size", type=size, help="default: the source's size")
    clone.add_argument("--label", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    clone.add_argument("--no-wait", action="store_true", help="return while the copy runs")
    clone.add_argument("--open", action="store_true", help="let every host open it by name (no host access control)")
    clone.set_defaults(run=ldev_clone)
    restore = ldev.add_parser("restore", help="roll an LDEV back to one of its snapshots")
    restore.add_argument("ldev", help="LDEV id or name")
    restore.add_argument("--snapshot", required=True, help="snapshot id or name")
    restore.set_defaults(run=ldev_restore)
    publish = ldev.add_parser("publish", help="let a host open the LDEV over NBD")
    publish.add_argument("ldev", help="LDEV id or name")
    publish.add_argument("--host", required=True, help="host (node) id")
    publish.add_argument("--read-only", action="store_true")
    publish.set_defaults(run=ldev_publish)
    unpublish = ldev.add_parser("unpublish", help="withdraw a host's access and cut its sessions")
    unpublish.add_argument("ldev", help="LDEV id or name")
    unpublish.add_argument("--host", required=True, help="host (node) id")
    unpublish.set_defaults(run=ldev_unpublish)
    qos = ldev.add_parser("qos", help="set IOPS and MB/s limits (0: unlimited)")
    qos.add_argument("ldev", help="LDEV id or name")
    qos.add_argument("--max-iops", type=whole_number, default=0)
    qos.add_argument("--max-mbps", type=whole_number, default=0)
    qos.set_defaults(run=ldev_qos)


def add_objects(objects: argparse._SubParsersAction) -> None:
    snap = objects.add_parser("snapshot", help="copy-on-write snapshots").add_subparsers(dest="verb", required=True)
    create = snap.add_parser("create", help="snapshot one LDEV")
    create.add_argument("name")
    create.add_argument("--ldev", required=True, help="LDEV id or name")
    create.add_argument("--label", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    create.set_defaults(run=snapshot_create)
    delete = snap.add_parser("delete", help="delete a snapshot and free what only it held")
    delete.add_argument("snapshot", help="snapshot id or name")
    delete.set_defaults(run=snapshot_delete)
    listing = snap.add_parser("list", help="list snapshots")
    listing.add_argument("--ldev", help="only this LDEV's")
    listing.set_defaults(run=snapshot_list)
    show = snap.add_parser("show", help="show one snapshot")
    show.add_argument("snapshot", help="snapshot id or name")
    show.set_defaults(run=snapshot_show)
    extents = snap.add_parser("extents", help="allocated extents, or changed since --base")
    extents.add_argument("snapshot", help="snapshot id or name")
    extents.add_argument("--base", help="older snapshot of the same LDEV: show what changed since")
    extents.set_defaults(run=snapshot_extents)

    group = objects.add_parser("snapshot-group", aliases=["group"], help="snapshots of several LDEVs at one instant")
    verbs = group.add_subparsers(dest="verb", required=True)
    gcreate = verbs.add_parser("create", help="snapshot LDEVs together")
    gcreate.add_argument("name")
    gcreate.add_argument("--ldev", action="append", required=True, help="LDEV id or name; repeat")
    gcreate.add_argument("--label", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    gcreate.set_defaults(run=group_create)
    gdelete = verbs.add_parser("delete", help="delete a group and its snapshots")
    gdelete.add_argument("group", help="group id or name")
    gdelete.set_defaults(run=group_delete)
    gshow = verbs.add_parser("show", help="a group and its members")
    gshow.add_argument("group", help="group id or name")
    gshow.set_defaults(run=group_show)
    verbs.add_parser("list", help="list groups").set_defaults(run=group_list)


def snapshot_ref(stub: pb_grpc.ArrayStub, ref: str) -> pb.Snapshot:
    request = pb.GetSnapshotRequest(id=int(ref)) if ref.isdigit() else pb.GetSnapshotRequest(name=ref)
    return stub.GetSnapshot(request, timeout=CALL_TIMEOUT)


def group_ref(stub: pb_grpc.ArrayStub, ref: str) -> pb.SnapshotGroup:
    request = pb.GetSnapshotGroupRequest(id=int(ref)) if ref.isdigit() else pb.GetSnapshotGroupRequest(name=ref)
    return stub.GetSnapshotGroup(request, timeout=CALL_TIMEOUT)


def snapshot_row(s: pb.Snapshot) -> list[str]:
    return [
        str(s.id),
        s.name,
        s.ldev_display_id,
        format_size(s.size_bytes),
        str(s.group_id or "-"),
        "yes" if s.ready else "no",
        s.export_name,
    ]


def snapshots_table(snapshots) -> str:
    return table(SNAPSHOT_HEADERS, [snapshot_row(s) for s in snapshots])


@wrap
def snapshot_create(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev = ldev_ref(stub, args.ldev)
    request = pb.CreateSnapshotRequest(name=args.name, ldev_id=ldev.id, labels=dict(args.label))
    snapshot = stub.CreateSnapshot(request, timeout=CALL_TIMEOUT)
    return to_dict(snapshot), lambda: snapshots_table([snapshot])


@wrap
def snapshot_delete(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    snapshot = snapshot_ref(stub, args.snapshot)
    stub.DeleteSnapshot(pb.DeleteSnapshotRequest(id=snapshot.id), timeout=CALL_TIMEOUT)
    return {
        "deleted": str(snapshot.id),
        "name": snapshot.name,
    }, lambda: f"deleted snapshot {snapshot.id} ({snapshot.name})"


@wrap
def snapshot_list(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev_id = ldev_ref(stub, args.ldev).id if args.ldev else 0
    snapshots: list[pb.Snapshot] = []
    token = ""
    while True:
        page = stub.ListSnapshots(pb.ListSnapshotsRequest(ldev_id=ldev_id, page_token=token), timeout=CALL_TIMEOUT)
        snapshots.extend(page.snapshots)
        token = page.next_page_token
        if not token:
            break
    return [to_dict(s) for s in snapshots], lambda: snapshots_table(snapshots)


@wrap
def snapshot_show(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    snapshot = snapshot_ref(stub, args.snapshot)
    rows = [[k, str(v)] for k, v in to_dict(snapshot).items()]
    return to_dict(snapshot), lambda: table(("FIELD", "VALUE"), rows)


@wrap
def snapshot_extents(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    target = snapshot_ref(stub, args.snapshot)
    base = snapshot_ref(stub, args.base) if args.base else None
    extents: list[pb.Extent] = []
    offset = 0
    while True:
        if base is None:
            page = stub.GetAllocatedExtents(
                pb.GetAllocatedExtentsRequest(snapshot_id=target.id, starting_offset=offset), timeout=CALL_TIMEOUT
            )
        else:
            page = stub.GetChangedExtents(
                pb.GetChangedExtentsRequest(
                    base_snapshot_id=base.id, target_snapshot_id=target.id, starting_offset=offset
                ),
                timeout=CALL_TIMEOUT,
            )
        extents.extend(page.extents)
        offset = page.next_offset
        if not offset:
            break
    total = sum(e.length for e in extents)

    def render() -> str:
        rows = [[str(e.offset), str(e.length)] for e in extents]
        what = f"changed since snapshot {base.id}" if base else "allocated"
        return table(("OFFSET", "LENGTH"), rows) + f"\n{len(extents)} extents, {format_size(total)} {what}"

    return {"extents": [to_dict(e) for e in extents], "total_bytes": str(total)}, render


@wrap
def group_create(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ids = [ldev_ref(stub, ref).id for ref in args.ldev]
    request = pb.CreateSnapshotGroupRequest(name=args.name, ldev_ids=ids, labels=dict(args.label))
    group = stub.CreateSnapshotGroup(request, timeout=CALL_TIMEOUT)

    def render() -> str:
        head = f"snapshot group {group.id} '{group.name}': {len(group.snapshots)} snapshots"
        return head + f", writes held {group.stall_micros / 1000:.2f} ms\n" + snapshots_table(group.snapshots)

    return to_dict(group), render


@wrap
def group_delete(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    group = group_ref(stub, args.group)
    stub.DeleteSnapshotGroup(pb.DeleteSnapshotGroupRequest(id=group.id), timeout=CALL_TIMEOUT)
    return {"deleted": str(group.id), "name": group.name}, lambda: f"deleted snapshot group {group.id} ({group.name})"


@wrap
def group_show(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    group = group_ref(stub, args.group)
    return to_dict(group), lambda: f"snapshot group {group.id} '{group.name}'\n" + snapshots_table(group.snapshots)


@wrap
def group_list(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    groups = list(stub.ListSnapshotGroups(pb.ListSnapshotGroupsRequest(), timeout=CALL_TIMEOUT).groups)
    rows = [[str(g.id), g.name, str(len(g.snapshots))] for g in groups]
    return [to_dict(g) for g in groups], lambda: table(("ID", "NAME", "SNAPSHOTS"), rows)


@wrap
def ldev_clone(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    request = pb.CloneLdevRequest(
        name=args.name,
        size_bytes=args.size or 0,
        labels=dict(args.label),
        open_to_all=args.open,
    )
    if args.from_snapshot:
        request.snapshot_id = snapshot_ref(stub, args.from_snapshot).id
    else:
        request.ldev_id = ldev_ref(stub, args.from_ldev).id
    ldev = stub.CloneLdev(request, timeout=CALL_TIMEOUT)
    while not args.no_wait and ldev.state == pb.LDEV_STATE_COPYING:
        progress = ldev.copy_progress
        if progress.total_bytes:
            pct = 100 * progress.copied_bytes / progress.total_bytes
            print(f"copying {format_size(progress.copied_bytes)} of {format_size(progress.total_bytes)} ({pct:.0f}%)",
                  file=sys.stderr)  # fmt: skip
        time.sleep(0.2)
        ldev = stub.GetLdev(pb.GetLdevRequest(id=ldev.id), timeout=CALL_TIMEOUT)
    return one_ldev(ldev)


@wrap
def ldev_restore(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev = ldev_ref(stub, args.ldev)
    snapshot = snapshot_ref(stub, args.snapshot)
    if snapshot.ldev_id != ldev.id:
        raise UsageError(f"snapshot {snapshot.id} is of LDEV {snapshot.ldev_display_id}, not {ldev.display_id}")
    restored = stub.RestoreLdev(pb.RestoreLdevRequest(ldev_id=ldev.id, snapshot_id=snapshot.id), timeout=3600)
    return one_ldev(restored)


@wrap
def ldev_publish(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev = ldev_ref(stub, args.ldev)
    publication = stub.PublishLdev(
        pb.PublishLdevRequest(ldev_id=ldev.id, host_id=args.host, read_only=args.read_only), timeout=CALL_TIMEOUT
    )
    mode = "read-only" if publication.read_only else "read-write"
    return to_dict(
        publication
    ), lambda: f"published {ldev.display_id} to {args.host} ({mode}): {publication.export_name}"


@wrap
def ldev_unpublish(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev = ldev_ref(stub, args.ldev)
    stub.UnpublishLdev(pb.UnpublishLdevRequest(ldev_id=ldev.id, host_id=args.host), timeout=CALL_TIMEOUT)
    return {
        "unpublished": ldev.display_id,
        "host": args.host,
    }, lambda: f"unpublished {ldev.display_id} from {args.host}"


@wrap
def ldev_qos(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev = ldev_ref(stub, args.ldev)
    request = pb.SetLdevQosRequest(ldev_id=ldev.id, max_iops=args.max_iops, max_mbps=args.max_mbps)
    return one_ldev(stub.SetLdevQos(request, timeout=CALL_TIMEOUT))
