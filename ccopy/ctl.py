"""`ccopy ctl`: administer an array over its management API.

Tables for people, `-o json` for scripts. Any failure is one line on stderr
("error: NOT_FOUND: LDEV 00:00:2A not found") and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from backend.errors import InvalidArgument
from backend.ldev_id import parse_ldev_id
from ccopy.rpc import TlsFiles, client_channel
from ccopy.units import format_size, parse_size
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc

CALL_TIMEOUT = 60.0


class UsageError(Exception):
    pass


def add_parser(commands: argparse._SubParsersAction) -> None:
    from ccopy import ctl_replication, ctl_snapshots
    from ccopy.cli import env, optional_path

    ctl = commands.add_parser("ctl", help="administer an array")
    ctl.add_argument("--array", default=env("ARRAY", "127.0.0.1:50051"), help="array API HOST:PORT [CCOPY_ARRAY]")
    ctl.add_argument("--ca", default=env("CA"), type=optional_path, help="CA of the array's certificate [CCOPY_CA]")
    ctl.add_argument("--cert", default=env("CERT"), type=optional_path, help="client certificate for mTLS [CCOPY_CERT]")
    ctl.add_argument("--key", default=env("KEY"), type=optional_path, help="client key for mTLS [CCOPY_KEY]")
    ctl.add_argument("-o", "--output", choices=("table", "json"), default=env("OUTPUT", "table"))
    objects = ctl.add_subparsers(dest="object", required=True)

    ldev = objects.add_parser("ldev", help="logical devices").add_subparsers(dest="verb", required=True)
    create = ldev.add_parser("create", help="create a thin-provisioned LDEV")
    create.add_argument("name")
    create.add_argument("--size", required=True, help="e.g. 10GiB")
    create.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
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
    expand.add_argument("--size", required=True, help="new size, e.g. 20GiB")
    expand.set_defaults(run=ldev_expand)
    listing = ldev.add_parser("list", help="list LDEVs")
    listing.add_argument("--selector", action="append", default=[], metavar="KEY=VALUE")
    listing.set_defaults(run=ldev_list)
    show = ldev.add_parser("show", help="show one LDEV")
    show.add_argument("ldev", help="LDEV id or name")
    show.set_defaults(run=ldev_show)
    label = ldev.add_parser("label", help="set or remove labels")
    label.add_argument("ldev", help="LDEV id or name")
    label.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
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


def wrap(action: Callable[[argparse.Namespace, pb_grpc.ArrayStub], Any]) -> Callable[[argparse.Namespace], int]:
    """Open the channel, run one verb, print its result, turn failures into one line."""

    def run(args: argparse.Namespace) -> int:
        tls = TlsFiles(cert=args.cert, key=args.key, ca=args.ca)
        try:
            with client_channel(args.array, tls) as channel:
                result = action(args, pb_grpc.ArrayStub(channel))
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
        except (UsageError, InvalidArgument, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if result is not None:
            emit(args.output, *result)
        return 0

    return run


def emit(output: str, data: Any, render: Callable[[], str]) -> None:
    if output == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render())


def to_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def key_values(pairs: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} {pair!r} is not KEY=VALUE")
        out[key] = value
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


def ldev_ref(stub: pb_grpc.ArrayStub, ref: str) -> pb.Ldev:
    try:
        request = pb.GetLdevRequest(id=parse_ldev_id(ref))
    except InvalidArgument:
        request = pb.GetLdevRequest(name=ref)
    return stub.GetLdev(request, timeout=CALL_TIMEOUT)


_STATE_NAMES = {v: k.removeprefix("LDEV_STATE_") for k, v in pb.LdevState.items()}
LDEV_HEADERS = ("ID", "NAME", "SIZE", "ALLOCATED", "SNAPSHOTS", "STATE", "RO", "HOSTS", "SESSIONS", "LABELS")


def hosts_cell(ldev: pb.Ldev) -> str:
    """Who may open the LDEV over NBD."""
    hosts = ",".join(ldev.published_hosts)
    if ldev.open_to_all:
        return f"all,{hosts}" if hosts else "all"
    return hosts or "none"


def ldev_row(ldev: pb.Ldev) -> list[str]:
    labels = ",".join(f"{k}={v}" for k, v in sorted(ldev.labels.items()))
    return [
        ldev.display_id,
        ldev.name,
        format_size(ldev.size_bytes),
        format_size(ldev.allocated_bytes),
        str(ldev.snapshot_count),
        _STATE_NAMES[ldev.state],
        "yes" if ldev.read_only else "no",
        hosts_cell(ldev),
        str(ldev.open_sessions),
        labels or "-",
    ]


def one_ldev(ldev: pb.Ldev) -> tuple[dict[str, Any], Callable[[], str]]:
    return to_dict(ldev), lambda: table(LDEV_HEADERS, [ldev_row(ldev)])


@wrap
def ldev_create(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    request = pb.CreateLdevRequest(
        name=args.name,
        size_bytes=parse_size(args.size),
        labels=key_values(args.label, "label"),
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
    request = pb.ExpandLdevRequest(id=ldev.id, new_size_bytes=parse_size(args.size))
    return one_ldev(stub.ExpandLdev(request, timeout=CALL_TIMEOUT))


@wrap
def ldev_list(args: argparse.Namespace, stub: pb_grpc.ArrayStub) -> Any:
    selector = key_values(args.selector, "selector")
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
    request = pb.UpdateLdevLabelsRequest(id=ldev.id, set=key_values(args.set, "label"), remove=args.remove)
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
