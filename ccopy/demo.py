"""`ccopy demo`: the paper's demonstration on one machine.

A main site and a backup site (two storage arrays), an e-commerce business
process at the main site (a stock database and a sales database on two ext4
volumes, orders committed stock first, sale second), both volumes paired into
one journal group while orders keep flowing, a snapshot group of the S-VOLs
at the backup while replication goes on, clones of it mounted, and analytics
on the clones that checks every sale has its stock change. Each step is
printed; the exit status is 0 only if the backup was consistent and, once the
orders stopped, byte for byte equal to the main site.

Secured as a user would run it: one demo CA; each array's management API and
link take mTLS, its NBD data path TLS with client certificates; every LDEV is
closed to all but the hosts it is published to (the database host at the main
site, the analytics host at the backup), and the demo shows a refusal.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from ccopy import ecommerce
from ccopy.ecommerce import Collapsed, check
from ccopy.flag_types import folder, positive_seconds
from ccopy.launch import ArrayProcessHandle, free_port
from ccopy.teardown import Teardown, one_line
from ccopy.waiting import Stalled, replication_progress, wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.pki import CertificateAuthority
from ccopy_common.rpc import TlsFiles, client_channel
from ccopy_common.units import format_size
from csi_driver.attach import attach, detach, detach_lazily, nbd_uri, unmount, unmount_lazily
from csi_driver.fuse_connections import LocalConnections

VOLUME = 256 << 20
GROUP = "shop"
DATABASE_HOST, ANALYTICS_HOST = "db-host", "analytics-host"
ORDERS_AT_MOST = 3600.0  # seconds; the demo stops the orders itself
BUSY_FOR = 20.0  # seconds an unmount may stay busy before the demo fails and unmounts lazily


def add_parser(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the demonstration (needs root: mount, losetup)")
    demo.add_argument("--workdir", type=folder, default=None, help="keep files here instead of a temp folder")
    demo.add_argument("--seconds", type=positive_seconds, default=8.0, help="how long orders flow, at least")
    demo.set_defaults(run=run_demo)


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def say(text: str) -> None:
    print(f"    {text}", flush=True)


def run(*argv: str) -> str:
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise RuntimeError(f"{' '.join(argv)} failed ({exc.returncode}): {said[-1] if said else 'no message'}") from exc


def run_demo(args: argparse.Namespace) -> int:
    """The demo, and its verdict in one line however it ends: a failure (a step that failed,
    an unmount that stayed busy, ^C) undoes what the demo made before it is reported, and the
    report says what could not be undone."""
    if os.geteuid() != 0:
        print("error: the demo mounts file systems and uses loop devices: run it as root", file=sys.stderr)
        return 1
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ccopy-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    demo = Demo(work, args.seconds)
    temporary = None if args.workdir else work
    try:
        return demo.run()
    except (Exception, KeyboardInterrupt) as exc:
        print(failure_verdict(exc, demo.teardown, temporary), file=sys.stderr)
        return 1
    finally:
        if temporary is not None and not demo.teardown.left_behind:
            shutil.rmtree(temporary, ignore_errors=True)


def failure_verdict(exc: BaseException, teardown: Teardown, temporary: Path | None) -> str:
    """One line: what failed, and what the way out could not undo (`temporary`: the demo's
    own folder, kept then, as a mount may still be in it)."""
    line = f"verdict: FAIL: {failure_words(exc)}; {teardown.summary() or 'everything it made is undone'}"
    return line + (f"; its files are kept in {temporary}" if temporary and teardown.left_behind else "")


def failure_words(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, grpc.RpcError):
        return f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
    return one_line(exc)


class DemoPki:
    """The demo's certificates: the arrays' server certificate, the administrator's (API and
    link), and one per host; a host's GnuTLS folder is what NBD clients read."""

    def __init__(self, folder: Path) -> None:
        ca = CertificateAuthority(folder)
        server = ca.issue("array", san="IP:127.0.0.1,DNS:localhost")
        admin = ca.issue("admin")
        self.admin = TlsFiles(cert=admin.cert, key=admin.key, ca=ca.cert)
        self.hosts = {
            host: ca.x509_folder(folder / host, "client", ca.issue(host)) for host in (DATABASE_HOST, ANALYTICS_HOST)
        }
        self.array_args = [
            "--tls-cert", str(server.cert), "--tls-key", str(server.key), "--tls-client-ca", str(ca.cert),
            "--nbd-tls-cert", str(server.cert), "--nbd-tls-key", str(server.key), "--nbd-tls-client-ca", str(ca.cert),
            "--remote-ca", str(ca.cert), "--remote-cert", str(admin.cert), "--remote-key", str(admin.key),
        ]  # fmt: skip

    def uri(self, address: str, export: str, host: str) -> str:
        """An `nbds://` URI for libnbd tools, with the host's certificates."""
        return f"{nbd_uri(address, export, tls=True)}?tls-certificates={self.hosts[host]}"


class Demo:
    def __init__(self, work: Path, seconds: float) -> None:
        self.work = work
        self.seconds = seconds
        self.teardown = Teardown()
        # The demo's nbdfuse connections: a busy FUSE mount fails the demo after BUSY_FOR.
        self.connections = LocalConnections(busy_for=BUSY_FOR)

    def run(self) -> int:
        main_api, backup_api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        step("certificates from one demo CA: mTLS on each array's API and on the link, TLS with client "
             f"certificates on NBD, hosts {DATABASE_HOST} and {ANALYTICS_HOST}")  # fmt: skip
        self.pki = DemoPki(self.work / "pki")
        step("starting the main site's array (serial 10001) and the backup site's (serial 20002), linked")
        self.main = ArrayProcessHandle(
            pool=self.work / "main-pool", serial=10001, log_path=self.work / "main.log", api=main_api,
            extra_args=["--remote", backup_api, *self.pki.array_args],
        )  # fmt: skip
        self.backup = ArrayProcessHandle(
            pool=self.work / "backup-pool", serial=20002, log_path=self.work / "backup.log", api=backup_api,
            extra_args=["--remote", main_api, *self.pki.array_args],
        )  # fmt: skip
        with (
            self.running(self.main, "the main array"),
            self.running(self.backup, "the backup array"),
            client_channel(main_api, self.pki.admin) as main_channel,
            client_channel(backup_api, self.pki.admin) as backup_channel,
        ):
            self.main_stub, self.backup_stub = pb_grpc.ArrayStub(main_channel), pb_grpc.ArrayStub(backup_channel)
            return self.business()

    @contextmanager
    def running(self, array: ArrayProcessHandle, what: str) -> Iterator[None]:
        """`array` started, and stopped (killed if it will not stop) whatever ends the block."""
        array.start()  # a start that fails stops what it started
        with self.teardown.holding(what, array.stop, array.kill):
            yield

    @contextmanager
    def attached(self, site: ArrayProcessHandle, export: str, host: str) -> Iterator[str]:
        """The export as a block device on `host` (its certificate), over TLS, for the block."""
        uri = nbd_uri(site.nbd_address, export, tls=True)
        attachment = attach(uri, self.work / f"fuse-{export}", tls_certificates=self.pki.hosts[host],
                            connector=self.connections)  # fmt: skip
        assert attachment.device is not None
        undo = functools.partial(detach, attachment, self.connections)
        lazily = functools.partial(detach_lazily, attachment, self.connections)
        with self.teardown.holding(f"{attachment.device} on nbdfuse {export}", undo, lazily):
            yield attachment.device

    @contextmanager
    def mounted(self, device: str, mountpoint: Path) -> Iterator[Path]:
        mountpoint.mkdir(parents=True, exist_ok=True)
        run("mount", device, str(mountpoint))
        undo = functools.partial(unmount, mountpoint, busy_for=BUSY_FOR)
        with self.teardown.holding(f"the mount {mountpoint}", undo, lambda: unmount_lazily(mountpoint)):
            yield mountpoint

    def business(self) -> int:
        stock = self.main_stub.CreateLdev(pb.CreateLdevRequest(name="stock-db", size_bytes=VOLUME))
        sales = self.main_stub.CreateLdev(pb.CreateLdevRequest(name="sales-db", size_bytes=VOLUME))
        for ldev in (stock, sales):
            self.main_stub.PublishLdev(pb.PublishLdevRequest(ldev_id=ldev.id, host_id=DATABASE_HOST))
        step(f"main site: LDEVs {stock.display_id} stock-db and {sales.display_id} sales-db, published to "
             f"{DATABASE_HOST} only, ext4 through NBD over TLS")  # fmt: skip
        self.show_refusal()
        mounts = {name: self.work / "main" / name for name in ("stock-db", "sales-db")}
        with (
            self.attached(self.main, "stock-db", DATABASE_HOST) as stock_dev,
            self.attached(self.main, "sales-db", DATABASE_HOST) as sales_dev,
        ):
            for device in (stock_dev, sales_dev):
                run("mkfs.ext4", "-q", "-F", device)
            with self.mounted(stock_dev, mounts["stock-db"]), self.mounted(sales_dev, mounts["sales-db"]):
                verdict = self.orders_and_backup(stock, sales, mounts)
            # Unmounted: every order is on the P-VOLs now.
        return self.final_check(stock, sales, verdict)

    def show_refusal(self) -> None:
        """Host access is deny-by-default: a host the LDEV is not published to is refused."""
        uri = self.pki.uri(self.main.nbd_address, "stock-db", ANALYTICS_HOST)
        refused = subprocess.run(["nbdinfo", uri], capture_output=True, text=True).returncode != 0
        say(f"{ANALYTICS_HOST} asking the main array for stock-db: {'refused' if refused else 'ADMITTED (wrong)'}")
        if not refused:
            raise RuntimeError("a host stock-db is not published to opened it")

    def orders_and_backup(self, stock: pb.Ldev, sales: pb.Ldev, mounts: dict[str, Path]) -> bool:
        step(f"orders flow for at least {self.seconds:.0f} s: each commits a stock change, then a sale "
             "(two processes)")  # fmt: skip
        started = time.monotonic()
        orders = ecommerce.start(mounts["stock-db"], mounts["sales-db"], ORDERS_AT_MOST)
        try:
            consistent = self.pair_and_analyse(stock, sales)
            time.sleep(max(0.0, self.seconds - (time.monotonic() - started)))
        finally:
            status = ecommerce.stop(orders)
        if status != 0:
            say(f"the order loop failed (exit {status})")
        return consistent and status == 0

    def pair_and_analyse(self, stock: pb.Ldev, sales: pb.Ldev) -> bool:
        step(f"pairing both volumes into journal group '{GROUP}' while orders run (one consistency group)")
        for ldev in (stock, sales):
            pair = self.main_stub.CreatePair(pb.CreatePairRequest(group_name=GROUP, pvol_id=ldev.id))
            say(f"{ldev.display_id} -> S-VOL {pair.remote_ldev_id:06X} at array {pair.remote_serial}: COPY")
        self.wait_paired()
        status = self.backup_stub.GetJournalGroup(pb.GetJournalGroupRequest(name=GROUP))
        say(f"PAIR: backup applied sequence {status.applied_seq} of {status.main_seq}, lag {status.lag_seconds:.3f} s")

        time.sleep(1.0)
        step("backup site: snapshot group of the S-VOLs while replication goes on")
        svols = [p.local_ldev_id for p in self.backup_stub.ListPairs(pb.ListPairsRequest(group_name=GROUP)).pairs]
        group = self.backup_stub.CreateSnapshotGroup(pb.CreateSnapshotGroupRequest(name="analytics-1", ldev_ids=svols))
        say(f"snapshot group '{group.name}' of {len(group.snapshots)} S-VOLs, writes held {group.stall_micros} us")
        return self.analytics(group)

    def group_views(self) -> tuple[pb.JournalGroup, pb.JournalGroup]:
        request = pb.GetJournalGroupRequest(name=GROUP)
        return self.main_stub.GetJournalGroup(request), self.backup_stub.GetJournalGroup(request)

    def wait_paired(self) -> None:
        wait_progressing(
            self.group_views, lambda v: bool(v[1].pairs) and all(p.state == pb.PAIR for p in v[1].pairs),
            "the initial copy", progress=lambda v: replication_progress(*v),
        )  # fmt: skip

    def analytics(self, group: pb.SnapshotGroup) -> bool:
        step("backup site: clones of the snapshot group mounted for analytics")
        targets = {}
        clones = []
        for snapshot in group.snapshots:
            name = self.backup_stub.GetLdev(pb.GetLdevRequest(id=snapshot.ldev_id)).name
            kind = "stock-db" if "stock-db" in name else "sales-db"
            clone = self.backup_stub.CloneLdev(pb.CloneLdevRequest(name=f"analytics-{kind}", snapshot_id=snapshot.id))
            wait_progressing(
                lambda c=clone: self.backup_stub.GetLdev(pb.GetLdevRequest(id=c.id)),
                lambda ldev: ldev.state == pb.LDEV_STATE_NORMAL, f"clone {clone.name}",
                progress=lambda ldev: ldev.copy_progress.copied_bytes,
            )  # fmt: skip
            self.backup_stub.PublishLdev(pb.PublishLdevRequest(ldev_id=clone.id, host_id=ANALYTICS_HOST))
            clones.append((kind, clone))
        with (
            self.attached(self.backup, "analytics-stock-db", ANALYTICS_HOST) as stock_dev,
            self.attached(self.backup, "analytics-sales-db", ANALYTICS_HOST) as sales_dev,
        ):
            targets = {"stock-db": self.work / "analytics" / "stock", "sales-db": self.work / "analytics" / "sales"}
            with self.mounted(stock_dev, targets["stock-db"]), self.mounted(sales_dev, targets["sales-db"]):
                try:
                    changes, sold = check(targets["stock-db"], targets["sales-db"])
                except Collapsed as exc:
                    say(f"analytics: INCONSISTENT backup: {exc}")
                    return False
        say(f"analytics: {sold} sales, {changes} stock changes: every sale has its stock change")
        return True

    def final_check(self, stock: pb.Ldev, sales: pb.Ldev, consistent: bool) -> int:
        step("orders stopped: waiting for the backup to apply everything")
        try:
            main, backup = wait_progressing(
                self.group_views, lambda v: v[1].applied_seq == v[0].main_seq and v[0].pending_records == 0,
                "the backup catching up", progress=lambda v: replication_progress(*v),
            )  # fmt: skip
        except Stalled as exc:
            say(str(exc))
            return 1
        say(f"applied sequence {backup.applied_seq}, lag {main.lag_seconds:.3f} s, "
            f"journal {format_size(main.usage_bytes)} in use")  # fmt: skip
        equal = True
        pairs = {p.local_ldev_id: p.remote_ldev_id for p in self.main_stub.ListPairs(pb.ListPairsRequest()).pairs}
        for ldev in (stock, sales):
            svol = pb.PublishLdevRequest(ldev_id=pairs[ldev.id], host_id=ANALYTICS_HOST, read_only=True)
            self.backup_stub.PublishLdev(svol)  # the S-VOL is closed like its P-VOL
            main_sum = self.checksum(self.main_stub, self.main.nbd_address, ldev.id, DATABASE_HOST)
            backup_sum = self.checksum(self.backup_stub, self.backup.nbd_address, pairs[ldev.id], ANALYTICS_HOST)
            equal &= main_sum == backup_sum
            say(f"{ldev.name}: P-VOL sha256 {main_sum[:16]}... S-VOL {backup_sum[:16]}... "
                f"{'equal' if main_sum == backup_sum else 'DIFFERENT'}")  # fmt: skip
        ok = consistent and equal
        step("verdict: " + ("PASS: consistent backup while orders ran, identical once they stopped, lag "
                            f"{main.lag_seconds:.3f} s" if ok else "FAIL"))  # fmt: skip
        return 0 if ok else 1

    def checksum(self, stub: pb_grpc.ArrayStub, address: str, ldev_id: int, host: str) -> str:
        """sha256 of a whole LDEV, read through NBD over TLS by nbdcopy as `host`."""
        export = stub.GetLdev(pb.GetLdevRequest(id=ldev_id)).export_name
        digest = hashlib.sha256()
        with subprocess.Popen(["nbdcopy", self.pki.uri(address, export, host), "-"], stdout=subprocess.PIPE) as copy:
            assert copy.stdout is not None
            while block := copy.stdout.read(1 << 20):
                digest.update(block)
        if copy.returncode != 0:
            raise RuntimeError(f"nbdcopy of {export} failed")
        return digest.hexdigest()
