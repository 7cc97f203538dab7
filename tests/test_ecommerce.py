"""The e-commerce workload restarted on the copy it left (at the backup site after a failover,
or home again): it records the sales its stock changes were waiting for, then goes on, and
both databases stay gap-free prefixes with every sale's stock change."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from ccopy import ecommerce


def test_a_restarted_shop_finishes_its_sales_then_goes_on(tmp_path):
    stock, sales = tmp_path / "stock", tmp_path / "sales"
    stock.mkdir()
    sales.mkdir()
    ecommerce.stop(ecommerce.start(stock, sales, 0.3))
    changes, sold = ecommerce.check(stock, sales)
    assert sold > 0
    # a copy cut between a stock change and its sale: the last sale is missing
    with closing(sqlite3.connect(sales / ecommerce.SALES_DB)) as db:
        db.execute("DELETE FROM sale WHERE order_id = ?", (sold - 1,))
        db.commit()
    assert ecommerce.check(stock, sales) == (changes, sold - 1)
    ecommerce.stop(ecommerce.start(stock, sales, 0.3))
    more_changes, more_sold = ecommerce.check(stock, sales)
    assert more_changes > changes and more_sold > sold - 1
