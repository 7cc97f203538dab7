"""What every `ccopy ctl` verb shares: one call per verb with its errors as one line,
tables for people and JSON for scripts, and naming an LDEV by number or name."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common import request_ids
from ccopy_common.ldev_id import parse_ldev_id
from ccopy_common.rpc import TlsFiles, client_channel
from ccopy_common.units import format_size

CALL_TIMEOUT = 60.0


class UsageError(Exception):
    pass


def wrap(action: Callable[[argparse.Namespace, pb_grpc.ArrayStub], Any]) -> Callable[[argparse.Namespace], int]:
    """Open the channel, run one verb, print its result, turn failures into one line."""

    def run(args: argparse.Namespace) -> int:
        tls = TlsFiles(cert=args.cert, key=args.key, ca=args.ca)
        try:
            # One id for the verb's calls (a name looked up, then the change), in the array's log too.
            with request_ids.use(request_ids.new_id()), client_channel(args.array, tls) as channel:
                result = action(args, pb_grpc.ArrayStub(channel))
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
        except (UsageError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if result is None:
            return 0
        emit(args.output, *result[:2])
        return result[2] if len(result) > 2 else 0  # a verb's own exit status (pair verify: 3, regions differ)

    return run


def emit(output: str, data: Any, render: Callable[[], str]) -> None:
    if output == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render())


def to_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


def ldev_ref(stub: pb_grpc.ArrayStub, ref: str) -> pb.Ldev:
    try:
        request = pb.GetLdevRequest(id=parse_ldev_id(ref))
    except ValueError:  # not a number: a name
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
