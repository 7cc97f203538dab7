"""The log line's timestamp ends in Z, so it must be UTC whatever the machine's time zone."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime

from ccopy_common import request_ids
from ccopy_common.logfmt import KeyValueFormatter


def test_the_timestamp_is_utc_in_any_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # nine hours from UTC, never equal to it
    time.tzset()
    try:
        record = logging.LogRecord("ccopy.test", logging.INFO, __file__, 1, "ldev_created ldev=%s", ("7",), None)
        line = KeyValueFormatter().format(record)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    stamp = line.split()[0].removeprefix("ts=")
    said = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(said.timestamp() - record.created) < 1, (line, os.environ.get("TZ"))
    assert line.endswith("event=ldev_created ldev=7")


def test_a_line_written_for_a_call_carries_its_request_id():
    record = logging.LogRecord("ccopy.test", logging.INFO, __file__, 1, "ldev_deleted ldev=%s", ("7",), None)
    assert "request=" not in KeyValueFormatter().format(record)
    with request_ids.use("5eed0000cafe"):
        assert KeyValueFormatter().format(record).endswith("event=ldev_deleted ldev=7 request=5eed0000cafe")
    assert "request=" not in KeyValueFormatter().format(record)  # the id ends with the call
