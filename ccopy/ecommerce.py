"""The e-commerce workload of the design, as two cooperating processes.

The stock process commits "decrement stock for order i" to stock.db on one
volume, then tells the sales process, which commits "sale i" to sales.db on
the other. So at every instant sales <= stock changes; a backup holding a sale
without its stock change is the collapse a consistency group prevents.

Run as: python -m ccopy.ecommerce STOCK_DIR SALES_DIR SECONDS
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import sys
import time
from pathlib import Path


def stock_process(folder: str, orders: multiprocessing.Queue, seconds: float) -> None:
    db = sqlite3.connect(Path(folder) / "stock.db", isolation_level=None)
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS stock_change (order_id INTEGER PRIMARY KEY, item TEXT, delta INTEGER)")
    deadline = time.monotonic() + seconds
    order = 0
    while time.monotonic() < deadline:
        db.execute("BEGIN")
        db.execute("INSERT INTO stock_change VALUES (?, 'widget', -1)", (order,))
        db.execute("COMMIT")
        orders.put(order)
        order += 1
    orders.put(None)
    db.close()


def sales_process(folder: str, orders: multiprocessing.Queue) -> None:
    db = sqlite3.connect(Path(folder) / "sales.db", isolation_level=None)
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS sale (order_id INTEGER PRIMARY KEY, amount INTEGER)")
    while (order := orders.get()) is not None:
        db.execute("BEGIN")
        db.execute("INSERT INTO sale VALUES (?, 10)", (order,))
        db.execute("COMMIT")
    db.close()


def run(stock_dir: str, sales_dir: str, seconds: float) -> None:
    orders: multiprocessing.Queue = multiprocessing.Queue()
    stock = multiprocessing.Process(target=stock_process, args=(stock_dir, orders, seconds))
    sales = multiprocessing.Process(target=sales_process, args=(sales_dir, orders))
    stock.start()
    sales.start()
    stock.join()
    sales.join()


class Collapsed(AssertionError):
    """A copy holds a sale without its stock change (or is not a committed state)."""


def check(stock_dir: Path, sales_dir: Path) -> tuple[int, int]:
    """(stock changes, sales) of a copy; raises Collapsed if it is not a consistent state."""
    stock = sqlite3.connect(stock_dir / "stock.db")
    sales = sqlite3.connect(sales_dir / "sales.db")
    for db in (stock, sales):
        if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise Collapsed("a database does not pass PRAGMA integrity_check")
    changes = [r[0] for r in stock.execute("SELECT order_id FROM stock_change ORDER BY order_id")]
    sold = [r[0] for r in sales.execute("SELECT order_id FROM sale ORDER BY order_id")]
    if changes != list(range(len(changes))) or sold != list(range(len(sold))):
        raise Collapsed("orders are not a gap-free prefix")
    if len(sold) > len(changes):
        raise Collapsed(f"{len(sold)} sales but only {len(changes)} stock changes")
    stock.close()
    sales.close()
    return len(changes), len(sold)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], float(sys.argv[3]))
