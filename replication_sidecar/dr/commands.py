"""What `ccopy dr` does, step by step, each step said as it happens with its time.

- failover: the backup site's VolumeGroupReplication to primary; the csi-addons manager
  promotes (forced when the main site does not answer: a takeover, whose loss record the
  backup's ConsistentCopy then shows). With the main site's credentials too, a planned
  relocation: the main site is demoted first, so nothing is given up.
- failback: after a failover, with both sites up: the main site becomes the copy (the
  copy runs backup -> main until PAIR), then the backup is demoted and the main site
  promoted, and the copy runs main -> backup again.
- drill: a VolumeGroupSnapshot of the backup PVCs, restored into another namespace while
  copying goes on; `drill_cleanup` removes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ccopy_common.units import format_size
from replication_sidecar.dr.drill import (
    DRILL_OF,
    DRILL_SNAPSHOT,
    GroupSnapshotWatch,
    MemberSnapshot,
    SnapshotFailed,
    drill_namespace,
    group_snapshot,
    restored,
)
from replication_sidecar.dr.site import DrError, DrSite, SiteUnreachable, until

Say = Callable[[str], None]


def status_lines(site: str, namespace: str, status: dict) -> list[str]:
    """A site's ConsistentCopy status of the namespace as lines a person reads: state, role,
    volumes, recovery point, how far behind, what a takeover gave up. Sizes and times are
    said as the takeover's own words say them (ccopy_common.loss_words)."""
    if not status:
        return [f"{site}: no ConsistentCopy for namespace {namespace} here"]
    lines = [f"{site}: {status.get('state', '')} (role {status.get('role', '?')}); {status.get('message', '')}"]
    for volume in status.get("volumes") or []:
        lines.append(f"  {volume.get('pvc')}: {volume.get('volumeHandle')} {volume.get('pairState')}")
    if status.get("recoveryPoint"):
        rpo = f"RPO {status['rpoSeconds']:g} s" if status.get("rpoSeconds") else "no RPO declared"
        lines.append(f"  recovery point {status['recoveryPoint']} ({status.get('recoveryPointAgeSeconds')} s old, "
                     f"{rpo})")  # fmt: skip
    behind = status.get("behindAsOfLastContact")
    if behind:
        amount = f"{behind['records']} records, {format_size(int(behind['bytes']))}, {float(behind['seconds']):.3f} s"
        lines.append(f"  behind the main site as of last contact {status.get('lastContact')}: {amount} of writes")
    if status.get("takeover"):
        lines.append(f"  takeover gave up: {status['takeover']['givenUp']}")
    return lines


def failover(backup: DrSite, namespace: str, timeout: float, say: Say, main: DrSite | None = None) -> dict:
    """Make the backup site primary; returns its ConsistentCopy status once it says so."""
    require_registered(backup, namespace)
    started = time.monotonic()
    if main is not None:  # planned: demote the main site first, so that nothing is given up
        try:
            main.require_own(namespace)
            set_and_wait(main, namespace, "secondary", timeout, say)
        except SiteUnreachable as exc:
            raise DrError(f"{exc}; to take over without the main site, leave out --main-kubeconfig (and unset "
                          "$CCOPY_MAIN_KUBECONFIG)") from exc  # fmt: skip
    set_and_wait(backup, namespace, "primary", timeout, say)
    status = until(lambda: backup.consistent_copy(namespace), lambda s: s.get("role") == "Primary",
                   "the backup ConsistentCopy to say Primary", timeout)  # fmt: skip
    say(f"failover done in {time.monotonic() - started:.1f} s: the PVCs of {namespace} at the backup site take writes")
    taken = status.get("takeover")
    say(f"given up: {taken['givenUp']}" if taken else "given up: nothing (the main site handed everything over)")
    return status


def failback(main: DrSite, backup: DrSite, namespace: str, timeout: float, say: Say) -> None:
    """Both sites up after a failover: back to the main site, nothing lost."""
    require_registered(backup, namespace)
    main.require_own(namespace)
    started = time.monotonic()
    set_and_wait(main, namespace, "secondary", timeout, say)
    step = time.monotonic()
    until(lambda: backup.consistent_copy(namespace), lambda s: s.get("state") == "Primary",
          "the copy backup -> main to reach PAIR", timeout)  # fmt: skip
    say(f"backup -> main copy in PAIR after {time.monotonic() - step:.1f} s: the main site holds every write")
    set_and_wait(backup, namespace, "secondary", timeout, say)
    set_and_wait(main, namespace, "primary", timeout, say)
    step = time.monotonic()
    until(lambda: (main.consistent_copy(namespace).get("state"), backup.consistent_copy(namespace).get("state")),
          lambda states: states == ("Protected", "Receiving"), "main Protected and backup Receiving",
          timeout)  # fmt: skip
    say(f"main -> backup copy in PAIR after {time.monotonic() - step:.1f} s")
    say(f"failback done in {time.monotonic() - started:.1f} s: {namespace} runs at the main site, copied to the backup")


def set_and_wait(site: DrSite, namespace: str, state: str, timeout: float, say: Say) -> None:
    want = state.capitalize()
    if site.group_state(namespace)[0] == want:
        say(f"{site.name}: already {want}")
        return
    started = time.monotonic()
    site.set_state(namespace, state)
    say(f"{site.name}: VolumeGroupReplication {namespace}/consistentcopy replicationState={state}")
    until(lambda: site.group_state(namespace), lambda got: got[0] == want, f"{site.name} site {want}", timeout)
    say(f"{site.name}: {want} after {time.monotonic() - started:.1f} s")


def require_registered(backup: DrSite, namespace: str) -> None:
    if not backup.require_own(namespace):
        raise DrError(f"{backup.name} site: namespace {namespace} has no ConsistentCopy: is it protected, and is "
                      "ccopy backup-site running here?")  # fmt: skip


def drill(
    backup: DrSite, namespace: str, into: str, driver: str, timeout: float, say: Say, storage_class: str = "",
    group_snapshot_class: str = "",
) -> list[str]:  # fmt: skip
    """Restore a group snapshot of the backup PVCs into `into`; returns the PVCs made there."""
    status = backup.require_own(namespace)
    if status.get("role") != "Secondary":
        raise DrError(f"backup site: namespace {namespace} is not receiving a copy here (state "
                      f"{status.get('state') or 'none'}): a drill needs a backup that receives")  # fmt: skip
    if backup.namespace(into) is not None:
        raise DrError(f"namespace {into} exists: remove the last drill first (ccopy dr drill --cleanup) or choose "
                      "another --into")  # fmt: skip
    started = time.monotonic()
    version = backup.group_snapshot_version()
    snapshot_class = group_snapshot_class or backup.group_snapshot_class(version, driver)
    name = f"drill-{into}"[:63]
    backup.create(group_snapshot(namespace, name, version, snapshot_class))
    say(f"backup: VolumeGroupSnapshot {namespace}/{name} (class {snapshot_class}) over the group's PVCs")
    try:
        made = until(lambda: backup.group_snapshot(namespace, version, name) or {}, GroupSnapshotWatch(say).ready,
                     f"group snapshot {name} ready", timeout)  # fmt: skip
    except SnapshotFailed as failed:
        raise DrError(f"group snapshot {namespace}/{name} failed: {failed}") from failed
    cut = (made.get("status") or {}).get("creationTime", "")
    say(f"backup: group snapshot ready after {time.monotonic() - started:.1f} s, cut at {cut}")
    members = until(lambda: backup.snapshots_of_group(namespace, name), lambda s: len(s) == status["volumeCount"],
                    "the group's VolumeSnapshots", timeout)  # fmt: skip
    backup.create(drill_namespace(into, namespace, name))
    claims = []
    for snapshot in members:
        member = member_snapshot(backup, namespace, snapshot)
        for body in restored(member, into, driver, storage_class):
            backup.create(body)
        claims.append(member.pvc)
    until(lambda: backup.pvc_phases(into), lambda phases: all(phases.get(c) == "Bound" for c in claims),
          f"the drill's PVCs in {into} Bound", timeout)  # fmt: skip
    copying = backup.consistent_copy(namespace).get("state")
    say(f"drill ready in {time.monotonic() - started:.1f} s: {len(claims)} PVC(s) in namespace {into} "
        f"({', '.join(sorted(claims))}) restored from the group snapshot cut at {cut}; the copy goes on "
        f"(backup state {copying})")  # fmt: skip
    return sorted(claims)


def member_snapshot(backup: DrSite, namespace: str, snapshot: dict) -> MemberSnapshot:
    pvc_name = snapshot["spec"]["source"]["persistentVolumeClaimName"]
    content = backup.snapshot_content(snapshot["status"]["boundVolumeSnapshotContentName"])
    pvc = backup.pvc(namespace, pvc_name)
    return MemberSnapshot(
        pvc=pvc_name,
        handle=content["status"]["snapshotHandle"],
        restore_size=int(content["status"].get("restoreSize") or pvc.status.capacity["storage"]),
        volume_mode=pvc.spec.volume_mode or "Filesystem",
        access_modes=tuple(pvc.spec.access_modes or ("ReadWriteOnce",)),
    )


def drill_cleanup(backup: DrSite, namespace: str, into: str, timeout: float, say: Say) -> None:
    """Remove a drill: its PVCs (their clones), its namespace, its snapshot objects, the group snapshot."""
    found = backup.namespace(into)
    if found is None:
        say(f"namespace {into}: not there, nothing to clean up")
        return
    labels, notes = found.metadata.labels or {}, found.metadata.annotations or {}
    if labels.get(DRILL_OF) != namespace:
        raise DrError(f"namespace {into} is not a drill of {namespace} (label {DRILL_OF}): left alone")
    started = time.monotonic()
    backup.delete_pvcs(into)
    until(lambda: backup.pvc_phases(into), lambda phases: not phases, f"the drill's PVCs in {into} deleted", timeout)
    backup.delete_namespace(into)
    until(lambda: backup.namespace(into), lambda ns: ns is None, f"namespace {into} deleted", timeout)
    backup.delete_snapshot_contents(f"{DRILL_OF}={into}")
    name = notes.get(DRILL_SNAPSHOT, "")
    if name:
        version = backup.group_snapshot_version()
        backup.delete_group_snapshot(namespace, version, name)
        until(lambda: backup.group_snapshot(namespace, version, name), lambda g: g is None,
              f"group snapshot {name} deleted", timeout)  # fmt: skip
    say(f"drill {into} removed in {time.monotonic() - started:.1f} s (its clones, namespace and group snapshot)")
