"""The work queue the site controllers share: a key queued twice is done once, at the
earlier time, and due work comes in time order."""

from __future__ import annotations

import threading

from replication_sidecar.work_queue import WorkQueue


def test_a_key_queued_twice_is_done_once_at_the_earlier_time():
    queue, stop = WorkQueue(), threading.Event()
    queue.add("shop", delay=3600)
    queue.add("shop")  # sooner: replaces the later time
    queue.add("bank", delay=3600)
    assert queue.take(stop) == "shop"
    queue.add("shop", delay=3600)
    queue.add("shop", delay=7200)  # later: the earlier time stands
    stop.set()
    assert queue.take(stop) is None  # nothing due; a stopped queue answers at once


def test_due_work_comes_in_time_order():
    queue, stop = WorkQueue(), threading.Event()
    queue.add("later", delay=0.2)
    queue.add("now")
    assert [queue.take(stop), queue.take(stop)] == ["now", "later"]
