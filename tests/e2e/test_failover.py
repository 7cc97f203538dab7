"""A disaster and the way back, through standard Kubernetes objects only: the main array
is killed (-9); patching the backup site's VolumeGroupReplication to primary takes over
(the csi-addons manager promotes, is refused while the main site does not answer, then
forces); the backup PVCs are writable with every write the main site had sent. The main
array returns; patching its VolumeGroupReplication to secondary fails back (the copy runs
backup -> main); then a planned relocation (both sites up, nothing lost) makes the main
site primary again with the writes made at the backup."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from kubernetes import client

from ccopy.waiting import wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from replication_sidecar.group_replication import REPLICATION, VGRS
from replication_sidecar.namespace_operator.model import OBJECT_NAME
from tests.e2e import objects
from tests.e2e.conftest import SC, Sites
from tests.e2e.namespace_operator import ensure_operator, ensure_registrar
from tests.e2e.site import Site
from tests.e2e.test_backup_site import (
    LABEL,
    backup_claims,
    consistent_copy,
    consistent_copy_state,
    group_state,
    unlabel_and_clean_backup,
)
from tests.e2e.test_namespace_operator import cut_link, restore_link

pytestmark = pytest.mark.timeout(900)


def set_state(site: Site, ns: str, state: str) -> None:
    patch = {"spec": {"replicationState": state}}
    objects.custom(site.api).patch_namespaced_custom_object(*REPLICATION, ns, VGRS, OBJECT_NAME, patch)


def group_message(site: Site, ns: str) -> str:
    vgr = objects.custom(site.api).get_namespaced_custom_object(*REPLICATION, ns, VGRS, OBJECT_NAME)
    return str((vgr.get("status") or {}).get("message", ""))


def write_file(site: Site, ns: str, claim: str, name: str, text: str) -> None:
    pv = objects.bound(site.api, ns, claim)
    target = site.kubelet.mount(pv, site.kubelet.attach(pv.metadata.name))
    (target / name).write_text(text)
    fd = os.open(target / name, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    site.kubelet.unmount(pv.metadata.name)
    site.kubelet.detach(pv.metadata.name)


def read_files(site: Site, ns: str, claim: str) -> dict[str, str]:
    pv = objects.bound(site.api, ns, claim)
    target = site.kubelet.mount(pv, site.kubelet.attach(pv.metadata.name))
    found = {p.name: p.read_text() for p in Path(target).glob("*.txt")}
    site.kubelet.unmount(pv.metadata.name)
    site.kubelet.detach(pv.metadata.name)
    return found


def pair_states(site: Site) -> set[str]:
    with site.array_channel() as channel:
        pairs = pb_grpc.ArrayStub(channel).ListPairs(pb.ListPairsRequest()).pairs
    return {pb.PairState.Name(p.state) for p in pairs}


def sides(site: Site, group: str) -> set[tuple[str, str]]:
    """(role of the journal group, its pairs' states) at the site's array; other tests' groups left out."""
    with site.array_channel() as channel:
        groups = pb_grpc.ArrayStub(channel).ListJournalGroups(pb.ListJournalGroupsRequest()).groups
    return {(g.role, "/".join(sorted({pb.PairState.Name(p.state) for p in g.pairs})))
            for g in groups if g.name == group}  # fmt: skip


def journal_group(site: Site, name: str) -> pb.JournalGroup:
    with site.array_channel() as channel:
        return pb_grpc.ArrayStub(channel).GetJournalGroup(pb.GetJournalGroupRequest(name=name))


def test_failover_after_kill_9_then_failback_and_relocation_through_the_group_replications(site, sites: Sites, ns):
    main, backup = ensure_operator(site), ensure_registrar(sites.backup)
    objects.pvc(main.api, ns, "stock", "64Mi", SC)
    objects.bound(main.api, ns, "stock")
    client.CoreV1Api(main.api).patch_namespace(ns, {"metadata": {"labels": LABEL}})
    wait_progressing(lambda: consistent_copy_state(main, ns), lambda s: s == "Protected", "the main site Protected")
    wait_progressing(lambda: group_state(backup, ns), lambda s: s == "Secondary", "the backup group secondary")
    write_file(main, ns, "stock", "before.txt", "acknowledged before the disaster\n")
    wait_progressing(lambda: consistent_copy_state(main, ns), lambda s: s == "Protected", "the write at the backup")

    group = consistent_copy(backup, ns)["journalGroup"]

    assert main.array is not None
    cut_link(sites)  # the backup stops hearing from the main site, which goes on acknowledging writes
    try:
        write_file(main, ns, "stock", "lost.txt", "acknowledged, never sent\n")
        main.array.kill()  # the disaster: the main array is gone
    finally:
        restore_link(sites)
    try:
        started = time.monotonic()
        set_state(backup, ns, "primary")
        wait_progressing(lambda: group_state(backup, ns), lambda s: s == "Primary", "the backup site primary",
                         progress=lambda s: (s, group_message(backup, ns)))  # fmt: skip
        print(f"failover: patch -> backup group Primary (main array dead): {time.monotonic() - started:.1f} s")
        assert "SSWS" in pair_states(backup)  # taken over: the S-VOLs take host writes
        assert "stock" in backup_claims(backup, ns)
        seen = read_files(backup, ns, "stock")
        assert seen.get("before.txt") == "acknowledged before the disaster\n", seen
        assert "lost.txt" not in seen  # never sent: given up, and said so below
        write_file(backup, ns, "stock", "at-backup.txt", "written while the main site was down\n")
        status = wait_progressing(lambda: consistent_copy(backup, ns), lambda c: bool(c.get("takeover")),
                                  "the takeover's record at the backup")  # fmt: skip
        taken = status["takeover"]
        assert status["state"] == "TakenOver" and status["role"] == "Primary"
        assert taken["exact"] is False and taken["lastContact"]
        assert taken["givenUp"].startswith(("at least ", "unknown: "))  # a floor, never "nothing"
        print(f"backup ConsistentCopy after the takeover: {taken['givenUp']}")
        events = client.CoreV1Api(backup.api).list_namespaced_event(ns).items
        assert any(e.reason == "TakeoverGaveUp" and e.type == "Warning" for e in events)
        applied = journal_group(backup, group).applied_seq
    finally:
        main.array.start()  # the main array returns, on the same ports
    # The truth, from the main array's journal: what it acknowledged beyond what the backup applied.
    truth = journal_group(main, group).main_seq - applied
    print(f"given up: at least {taken['records']} records reported; the main array's journal held {truth} more")
    assert truth > 0 and taken["records"] <= truth  # a floor, never above the truth, and said to be one

    started = time.monotonic()
    set_state(main, ns, "secondary")  # fail back: the old main site becomes the copy
    wait_progressing(lambda: group_state(main, ns), lambda s: s == "Secondary", "the main site secondary",
                     progress=lambda s: (s, group_message(main, ns), sorted(pair_states(main))))  # fmt: skip

    def both() -> tuple[set, set]:
        return sides(main, group), sides(backup, group)

    # The main array's pairs said PAIR before the disaster and say so again when it restarts: wait for the
    # failback itself, the copy running backup -> main.
    wait_progressing(both, lambda v: v == ({("backup", "PAIR")}, {("main", "PAIR")}),
                     "the failback: the pairs reversed and in PAIR")  # fmt: skip
    print(f"failback: patch -> reversed pairs in PAIR: {time.monotonic() - started:.1f} s")
    started = time.monotonic()

    set_state(backup, ns, "secondary")  # planned relocation back: demote the backup site first,
    set_state(main, ns, "primary")  # then promote the main site; nothing is lost
    wait_progressing(lambda: group_state(main, ns), lambda s: s == "Primary", "the main site primary again",
                     progress=lambda s: (s, group_message(main, ns), sorted(pair_states(main))))  # fmt: skip
    print(f"relocation: patches -> main group Primary: {time.monotonic() - started:.1f} s")
    seen = read_files(main, ns, "stock")
    assert seen == {"before.txt": "acknowledged before the disaster\n",
                    "at-backup.txt": "written while the main site was down\n"}  # fmt: skip
    # The backup site, secondary again, asks the new primary to fail back: the copy runs main -> backup again.
    wait_progressing(both, lambda v: v == ({("main", "PAIR")}, {("backup", "PAIR")}),
                     "the original direction restored, PAIR")  # fmt: skip
    unlabel_and_clean_backup(main, backup, ns)
