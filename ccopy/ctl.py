"""`ccopy ctl`: administer an array over its management API.

Tables for people, `-o json` for scripts. Any failure is one line on stderr
("error: NOT_FOUND: LDEV 00:00:2A not found") and exit status 1.
"""

from __future__ import annotations

import argparse
from typing import Any

from ccopy import ctl_replication, ctl_snapshots
from ccopy.arguments import add_array_client_arguments
from ccopy.ctl_base import (
    CALL_TIMEOUT,
    LDEV_HEADERS,
    UsageError,
    ldev_ref,
    ldev_row,
    one_ldev,
    table,
    to_dict,
    wrap,
)
from ccopy.flag_types import key_value, size
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.units import format_size


def add_parser(commands: argparse._SubParsersAction) -> None:
    ctl = commands.add_parser("ctl", help="administer an array")
    add_array_client_arguments(ctl)
    ctl.add_argument("-o", "--output", choices=("table", "json"), default="table", env="CCOPY_OUTPUT",
                     help="tables for people, JSON for scripts")  # fmt: skip
    objects = ctl.add_subparsers(dest="object", required=True)

    ldev = objects.add_parser("ldev", help="logical devices").add_subparsers(dest="verb", required=True)
    create = ldev.add_parser("create", help="create a thin-provisioned LDEV")
    create.add_argument("name")
    create.add_argument("--size", type=size, required=True, help="e.g. 10GiB")
    create.add_argument("--label", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--read-only", action="store_true")
    create.add_argument(
        "--publish",
        action="append",
        default=[],
        metavar="HOST",
        help="let HOST open it over NBD (repeatable); by default no host may",
    )
    create.add_argument("--open", action="store_true", help="let every host open it by name (no host access control)")
    create.set_defaults(run=ldev_create)
    delete = ldev.add_parser("delete", help="delete an LDEV and its data")
    delete.add_argument("ldev", help="LDEV id (00:00:2A or 42) or name")
    delete.add_argument("--cascade", action="store_true", help="delete its snapshots too")
    delete.set_defaults(run=ldev_delete)
    expand = ldev.add_parser("expand", help="grow an LDEV")
    expand.add_argument("ldev", help="LDEV id or name")
    expand.add_argument("--size", type=size, required=True, help="new size, e.g. 20GiB")
    expand.set_defaults(run=ldev_expand)
    listing = ldev.add_parser("list", help="list LDEVs")
    listing.add_argument("--selector", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    listing.set_defaults(run=ldev_list)
    show = ldev.add_parser("show", help="show one LDEV")
    show.add_argument("ldev", help="LDEV id or name")
    show.set_defaults(run=ldev_show)
    label = ldev.add_parser("label", help="set or remove labels")
    label.add_argument("ldev", help="LDEV id or name")
    label.add_argument("--set", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    label.add_argument("--remove", action="append", default=[], metavar="KEY")
    label.set_defaults(run=ldev_label)
    access = ldev.add_parser("access", help="open an LDEV to every host, or close it to the hosts it is published to")
    access.add_argument("ldev", help="LDEV id or name")
    which = access.add_mutually_exclusive_group(required=True)
    which.add_argument("--open", dest="open_to_all", action="store_true", help="every host may open it by name")
    which.add_argument("--closed", dest="open_to_all", action="store_false", help="only hosts it is published to")
    access.set_defaults(run=ldev_access)
    ctl_snapshots.add_ldev_verbs(ldev)
    ctl_snapshots.add_objects(objects)
    ctl_replication.add_objects(objects)

    pool = objects.add_parser("pool", help="the LDEV pool").add_subparsers(dest="verb", required=True)
    pool.add_parser("show", help="capacity and allocation").set_defaults(run=pool_show)
    info = objects.add_parser("array", help="the array itself").add_subparsers(dest="verb", required=True)
    info.add_parser("info", help="serial, version, data-path address").set_defaults(run=array_info)
    ctl.set_defaults(run=run_ctl)


def run_ctl(args: argparse.Namespace) -> int:
    raise UsageError("choose an object: ldev, pool or array")


@wrap
def ldev_create(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    request = pb.CreateLdevRequest(
        name=args.name,
        size_bytes=args.size,
        labels=dict(args.label),
        read_only=args.read_only,
        open_to_all=args.open,
    )
    ldev = stub.CreateLdev(request, timeout=CALL_TIMEOUT)
    if not args.publish:
        return one_ldev(ldev)
    # One more call per host: a crash in between leaves the LDEV closed, never open.
    publications = [
        stub.PublishLdev(pb.PublishLdevRequest(ldev_id=ldev.id, host_id=host), timeout=CALL_TIMEOUT)
        for host in args.publish
    ]
    ldev = stub.GetLdev(pb.GetLdevRequest(id=ldev.id), timeout=CALL_TIMEOUT)
    lines = [f"published to {p.host_id}: export {p.export_name}" for p in publications]
    data = {**to_dict(ldev), "publications": [to_dict(p) for p in publications]}
    return data, lambda: "\n".join([table(LDEV_HEADERS, [ldev_row(ldev)]), *lines])


@wrap
def ldev_access(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev = ldev_ref(stub, args.ldev)
    request = pb.SetLdevAccessRequest(ldev_id=ldev.id, open_to_all=args.open_to_all)
    return one_ldev(stub.SetLdevAccess(request, timeout=CALL_TIMEOUT))


@wrap
def ldev_delete(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev = ldev_ref(stub, args.ldev)
    stub.DeleteLdev(pb.DeleteLdevRequest(id=ldev.id, cascade=args.cascade), timeout=CALL_TIMEOUT)
    return {"deleted": ldev.display_id, "name": ldev.name}, lambda: f"deleted LDEV {ldev.display_id} ({ldev.name})"


@wrap
def ldev_expand(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev = ldev_ref(stub, args.ldev)
    request = pb.ExpandLdevRequest(id=ldev.id, new_size_bytes=args.size)
    return one_ldev(stub.ExpandLdev(request, timeout=CALL_TIMEOUT))


@wrap
def ldev_list(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    selector = dict(args.selector)
    ldevs: list[pb.Ldev] = []
    token = ""
    while True:
        page = stub.ListLdevs(pb.ListLdevsRequest(page_token=token, label_selector=selector), timeout=CALL_TIMEOUT)
        ldevs.extend(page.ldevs)
        token = page.next_page_token
        if not token:
            break
    return [to_dict(ldev) for ldev in ldevs], lambda: table(LDEV_HEADERS, [ldev_row(ldev) for ldev in ldevs])


@wrap
def ldev_show(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev = ldev_ref(stub, args.ldev)

    def render() -> str:
        rows = [[key, value] for key, value in to_dict(ldev).items() if key != "labels"]
        rows += [[f"label {k}", v] for k, v in sorted(ldev.labels.items())]
        return table(("FIELD", "VALUE"), [[k, str(v)] for k, v in rows])

    return to_dict(ldev), render


@wrap
def ldev_label(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    ldev = ldev_ref(stub, args.ldev)
    request = pb.UpdateLdevLabelsRequest(id=ldev.id, set=dict(args.set), remove=args.remove)
    return one_ldev(stub.UpdateLdevLabels(request, timeout=CALL_TIMEOUT))


@wrap
def pool_show(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    pool = stub.GetPool(pb.GetPoolRequest(), timeout=CALL_TIMEOUT)

    def render() -> str:
        summary = table(
            ("POOL", "TOTAL", "FREE", "PROVISIONED", "ALLOCATED", "LDEVS"),
            [
                [
                    pool.path,
                    format_size(pool.total_bytes),
                    format_size(pool.free_bytes),
                    format_size(pool.provisioned_bytes),
                    format_size(pool.allocated_bytes),
                    str(pool.ldev_count),
                ]
            ],
        )
        per_ldev = table(
            ("ID", "NAME", "SIZE", "ALLOCATED"),
            [[a.display_id, a.name, format_size(a.size_bytes), format_size(a.allocated_bytes)] for a in pool.ldevs],
        )
        return summary + "\n\n" + per_ldev

    return to_dict(pool), render


@wrap
def array_info(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    info = stub.GetArrayInfo(pb.GetArrayInfoRequest(), timeout=CALL_TIMEOUT)
    rows = [[k, str(v)] for k, v in to_dict(info).items()]
    return to_dict(info), lambda: table(("FIELD", "VALUE"), rows)
