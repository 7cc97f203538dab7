"""Per-LDEV QoS limits (IOPS and MB/s) as token buckets.

Pure arithmetic over a clock the caller passes in: `reserve` takes what a
request costs and answers how long the request must wait so that the LDEV
stays within its limits. Debt is allowed (a request larger than the burst
still goes, later), so big requests are never starved. The NBD server holds
each request for the delay it was given; all sessions of one LDEV share one
limiter, so the limit is the LDEV's, whatever the number of connections.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

BURST_SECONDS = 0.1  # how much unused allowance may pile up


@dataclass
class TokenBucket:
    rate: float  # tokens per second; 0 means unlimited
    tokens: float = field(init=False)
    stamp: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = self.burst  # a new limit starts with its burst available

    @property
    def burst(self) -> float:
        return max(self.rate * BURST_SECONDS, 1.0)

    def reserve(self, amount: float, now: float) -> float:
        if self.rate <= 0:
            return 0.0
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass
class QosLimiter:
    max_iops: int = 0
    max_mbps: int = 0
    _iops: TokenBucket = field(init=False)
    _bytes: TokenBucket = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.update(self.max_iops, self.max_mbps)

    @property
    def unlimited(self) -> bool:
        return not (self.max_iops or self.max_mbps)

    def update(self, max_iops: int, max_mbps: int) -> None:
        if max_iops < 0 or max_mbps < 0:
            raise ValueError("QoS limits cannot be negative")
        self.max_iops, self.max_mbps = max_iops, max_mbps
        self._iops = TokenBucket(float(max_iops))
        self._bytes = TokenBucket(float(max_mbps) * 1_000_000)

    def reserve(self, nbytes: int, now: float) -> float:
        """Seconds the request must wait (0 when within the limits)."""
        if self.unlimited:
            return 0.0
        with self._lock:
            return max(self._iops.reserve(1, now), self._bytes.reserve(nbytes, now))
