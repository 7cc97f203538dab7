"""The e-commerce workload of the design, as two cooperating processes.

The stock process commits "decrement stock for order i" to stock.db on one
volume, then tells the sales process, which commits "sale i" to sales.db on
the other. So at every instant sales <= stock changes; a backup holding a sale
without its stock change is the collapse a consistency group prevents.

Run as: python -m ccopy.ecommerce STOCK_DIR SALES_DIR SECONDS (or `start` from Python, which
returns once orders flow).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

from ccopy_common.signals import WOKEN, StopSignals

STOCK_DB, SALES_DB = "stock.db", "sales.db"
SCHEMA = {
    STOCK_DB: "CREATE TABLE IF NOT EXISTS stock_change (order_id INTEGER PRIMARY KEY, item TEXT, delta INTEGER)",
    SALES_DB: "CREATE TABLE IF NOT EXISTS sale (order_id INTEGER PRIMARY KEY, amount INTEGER)",
}
FLOWING = "orders flowing"


def connect(folder: str | Path, db_name: str) -> sqlite3.Connection:
    """A connection that commits durably, with the database's schema in place."""
    db = sqlite3.connect(Path(folder) / db_name, isolation_level=None)
    db.execute("PRAGMA synchronous=FULL")
    db.execute(SCHEMA[db_name])
    return db


def stock_process(
    folder: str, orders: multiprocessing.Queue, seconds: float, stop: multiprocessing.synchronize.Event, first: int
) -> None:
    with closing(connect(folder, STOCK_DB)) as db:
        deadline = time.monotonic() + seconds
        order = first
        while time.monotonic() < deadline and not stop.is_set():
            db.execute("BEGIN")
            db.execute("INSERT INTO stock_change VALUES (?, 'widget', -1)", (order,))
            db.execute("COMMIT")
            orders.put(order)
            order += 1
        orders.put(None)


def sales_process(folder: str, orders: multiprocessing.Queue, first_sale: multiprocessing.synchronize.Event) -> None:
    with closing(connect(folder, SALES_DB)) as db:
        while (order := orders.get()) is not None:
            db.execute("BEGIN")
            db.execute("INSERT INTO sale VALUES (?, 10)", (order,))
            db.execute("COMMIT")
            first_sale.set()


def run(stock_dir: str, sales_dir: str, seconds: float) -> None:
    """Orders for `seconds` or until SIGTERM, which ends them after a whole order.

    Both schemas are committed before any order, and FLOWING is printed once the
    first sale is committed: a copy cut after that line holds at least one whole order.
    """
    for folder, db_name in ((stock_dir, STOCK_DB), (sales_dir, SALES_DB)):
        connect(folder, db_name).close()
    first = resume(Path(stock_dir), Path(sales_dir))
    orders: multiprocessing.Queue = multiprocessing.Queue()
    first_sale, stop = multiprocessing.Event(), multiprocessing.Event()
    stock = multiprocessing.Process(target=stock_process, args=(stock_dir, orders, seconds, stop, first))
    sales = multiprocessing.Process(target=sales_process, args=(sales_dir, orders, first_sale))
    stock.start()
    sales.start()
    signals = StopSignals()  # after the forks: the order processes keep the default actions
    while not first_sale.wait(0.1):
        if not sales.is_alive() or stock.exitcode:  # a dead stock process would leave sales waiting
            break
    if first_sale.is_set():
        print(FLOWING, flush=True)
    threading.Thread(target=_wake_when_ended, args=(stock, signals), name="orders-end", daemon=True).start()
    if signals.wait() != WOKEN:  # SIGTERM: end the orders here, not in the handler
        stop.set()
    stock.join()
    if stock.exitcode:
        sales.kill()
    sales.join()
    if stock.exitcode or sales.exitcode or not first_sale.is_set():
        raise SystemExit(f"order processes failed: stock exit {stock.exitcode}, sales exit {sales.exitcode}")


def resume(stock_dir: Path, sales_dir: Path) -> int:
    """Where a restarted shop goes on (at the other site after a failover, or home again): the
    sales of stock changes committed before it stopped are recorded first, as a shop finishes
    what its outbox holds, so that both stay gap-free prefixes; returns the next order."""
    changes, sold = check(stock_dir, sales_dir)
    with closing(connect(sales_dir, SALES_DB)) as db:
        db.execute("BEGIN")
        db.executemany("INSERT INTO sale VALUES (?, 10)", [(order,) for order in range(sold, changes)])
        db.execute("COMMIT")
    return changes


def _wake_when_ended(process: multiprocessing.Process, signals: StopSignals) -> None:
    """Wake the main thread when the orders end by themselves; waits on the sentinel and does
    not reap, so the main thread's join stays the only one."""
    multiprocessing.connection.wait([process.sentinel])
    signals.wake()


def start(stock_dir: Path, sales_dir: Path, seconds: float, cwd: Path | None = None) -> subprocess.Popen[str]:
    """Start the order loop in its own process; return once orders flow (the first sale is
    committed), however long a loaded machine takes to get there. Raises if it stopped first."""
    argv = [sys.executable, "-m", "ccopy.ecommerce", str(stock_dir), str(sales_dir), str(seconds)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=cwd)
    assert process.stdout is not None
    if process.stdout.readline().strip() != FLOWING:
        process.wait()
        raise RuntimeError(f"the order loop ended (exit {process.returncode}) before any order was committed")
    return process


def stop(process: subprocess.Popen[str]) -> int:
    """End the order loop after a whole order; its exit status (0: every order committed)."""
    process.terminate()
    return process.wait()


class Collapsed(AssertionError):
    """A copy holds a sale without its stock change (or is not a committed state)."""


def check(stock_dir: Path, sales_dir: Path) -> tuple[int, int]:
    """(stock changes, sales) of a copy; raises Collapsed if it is not a consistent state.

    A database or table not created yet counts as empty: a copy cut before the
    schema was committed is a consistent state (no orders). The connections are
    closed whatever happens, so the copy's file system can be unmounted.
    """
    changes = committed_orders(stock_dir / STOCK_DB, "stock_change")
    sold = committed_orders(sales_dir / SALES_DB, "sale")
    if changes != list(range(len(changes))) or sold != list(range(len(sold))):
        raise Collapsed("orders are not a gap-free prefix")
    if len(sold) > len(changes):
        raise Collapsed(f"{len(sold)} sales but only {len(changes)} stock changes")
    return len(changes), len(sold)


def committed_orders(path: Path, table: str) -> list[int]:
    """The order ids of `table`, in order; [] if the database or the table does not exist yet."""
    if not path.exists():
        return []
    with closing(sqlite3.connect(path)) as db:
        if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise Collapsed(f"{path.name} does not pass PRAGMA integrity_check")
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is None:
            return []
        return [row[0] for row in db.execute(f"SELECT order_id FROM {table} ORDER BY order_id")]


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], float(sys.argv[3]))
