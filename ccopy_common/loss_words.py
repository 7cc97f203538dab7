"""Loss and lag figures in words a person reads at a disaster: the CLI and the
csi-addons status say them the same way.

A figure the backup could not count (the main array did not answer) is a floor
as of the last contact, and must never read as "nothing was lost".
"""

from __future__ import annotations

from datetime import UTC

from google.protobuf.timestamp_pb2 import Timestamp

from ccopy_api import array_pb2 as pb
from ccopy_common.units import format_size


def given_up_words(lost: pb.DataGivenUp) -> str:
    """What a takeover gave up, in words that do not read "nothing" when nothing is known."""
    amount = f"{lost.records} records, {format_size(lost.bytes)}, {lost.seconds:.3f} s of writes"
    point = f"recovery point {moment(lost.recovery_point)}"
    if lost.exact:
        return f"{amount} (counted by the main array); {point}"
    if not lost.HasField("last_contact"):
        return f"unknown: this array never heard from the main array; {point}"
    contact = moment(lost.last_contact)
    if not lost.records:  # "at least 0 records" was read as "nothing lost" (fresh-clone trial, 2026-12-03)
        return (
            f"unknown: nothing acknowledged by the main site was missing here as of last contact at {contact}, "
            f"but writes after {contact} cannot be known (the main array did not answer); {point}"
        )
    return (
        f"at least {amount} acknowledged by the main site are not here, as of last contact "
        f"at {contact} (the main array did not answer; writes after {contact} cannot be known); {point}"
    )


def moment(stamp: Timestamp) -> str:
    """A main- or backup-site time, to the millisecond, or "none"."""
    if not stamp.seconds and not stamp.nanos:
        return "none"
    return stamp.ToDatetime(tzinfo=UTC).isoformat(timespec="milliseconds")
