import pytest

from backend.qos import QosLimiter


def test_unlimited_never_waits():
    limiter = QosLimiter()
    assert all(limiter.reserve(1 << 20, t) == 0 for t in range(100))


def test_iops_limit_spaces_requests():
    limiter = QosLimiter(max_iops=100)
    delays = [limiter.reserve(4096, 0.0) for _ in range(50)]
    # The burst (10 requests at 100 IOPS over 0.1 s) goes at once, then 10 ms apart.
    assert delays[:10] == [0.0] * 10
    assert delays[-1] == pytest.approx(0.40, abs=0.011)


def test_bandwidth_limit_charges_bytes():
    limiter = QosLimiter(max_mbps=10)  # 10 MB/s
    total = sum(1_000_000 for _ in range(20))
    last = 0.0
    for _ in range(20):
        last = limiter.reserve(1_000_000, 0.0)
    # 20 MB at 10 MB/s, minus the 0.1 s burst allowance, waits about 1.9 s.
    assert last == pytest.approx(total / 10_000_000 - 0.1, abs=0.01)


def test_tokens_refill_over_time_up_to_the_burst():
    limiter = QosLimiter(max_iops=100)
    assert [limiter.reserve(0, 0.0) for _ in range(11)][-1] == pytest.approx(0.01)  # the 10-request burst, then 1 owed
    assert limiter.reserve(0, 10.0) == 0.0  # long idle: refilled, capped at the burst (10 requests)
    assert max(limiter.reserve(0, 10.0) for _ in range(9)) == 0.0
    assert limiter.reserve(0, 10.0) == pytest.approx(0.01)


def test_new_limits_start_with_a_full_burst_and_are_readable():
    limiter = QosLimiter(max_iops=10)
    limiter.reserve(0, 0.0)
    limiter.reserve(0, 0.0)
    assert limiter.reserve(0, 0.0) > 0
    limiter.update(10, 5)
    assert limiter.limits == (10, 5)
    assert limiter.reserve(0, 0.0) == 0.0


def test_negative_limits_are_refused():
    with pytest.raises(ValueError):
        QosLimiter(max_iops=-1)
    with pytest.raises(ValueError):
        QosLimiter().update(0, -1)
