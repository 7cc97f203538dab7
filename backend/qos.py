"""Per-LDEV QoS limits (IOPS and MB/s) as token buckets.

`reserve(nbytes, now)` takes what a request costs and answers how long the
request must wait so that the LDEV stays within its limits (`now` is
time.monotonic()). Debt is allowed (a request larger than the burst still goes,
later), so big requests are never starved; unused allowance piles up for 0.1 s
at most. All sessions of one LDEV share one limiter, so the limit is the
LDEV's, whatever the number of connections.

The arithmetic is native (backend/native/gate.c): the threads that serve NBD
connections hold requests without entering the interpreter, and Python's NBD
server (TLS connections, snapshot exports) reserves through the same object.
"""

from __future__ import annotations

from backend._nbdcore import Qos as QosLimiter

__all__ = ["QosLimiter"]
