"""Structured logs: one line per event, key=value pairs after the event name.

Code logs `log.info("ldev_created ldev=%s size=%d", ...)`; this formatter adds
time, level and logger so every line is grep- and parse-friendly. The secret
part of a publication's export name (`pub/<token>`, or `pub%2F<token>` in a
URI) is cut to its first characters in every line, whoever logged it: the
name is a password where hosts show no certificates. A line written while a
server serves a call ends with that call's `request=<id>` (ccopy_common.request_ids).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time

from ccopy_common import request_ids

_PUBLICATION_SECRET = re.compile(r"(pub(?:/|%2F))([0-9a-f]{4})[0-9a-f]{28}", re.IGNORECASE)


def redact(text: str) -> str:
    return _PUBLICATION_SECRET.sub(r"\1\2…", text)


class KeyValueFormatter(logging.Formatter):
    converter = time.gmtime  # the `Z` the timestamps end with says UTC; local time would lie there

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        line = f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')}.{int(record.msecs):03d}Z"
        line += f" level={record.levelname.lower()} logger={record.name} event={message}"
        request_id = request_ids.current()
        if request_id is not None:  # written for a call (served, or made by a client): its id, on every line
            line += f" request={request_id}"
        if record.exc_info:
            line += " exc=" + repr(self.formatException(record.exc_info))
        return line


def setup_logging(level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("CCOPY_LOG_LEVEL", "INFO")).upper())
