"""Sizes as people write them ("10GiB", "1T", "512") and as tables show them."""

from __future__ import annotations

import re

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([KMGTP])I?B?|B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Binary units: 1K = 1Ki = 1KiB = 1024 bytes (Kubernetes writes 1Gi); a bare number is bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 4096, 64MiB, 10G, 1TiB)")
    number, unit = match.groups()
    value = float(number) * _UNITS[(unit or "").upper()]
    if value != int(value):
        raise ValueError(f"size {text!r} is not a whole number of bytes")
    return int(value)


def format_size(size: int) -> str:
    for unit in ("PiB", "TiB", "GiB", "MiB", "KiB"):
        scale = _UNITS[unit[0]]
        if size >= scale:
            value = size / scale
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{size}B"
