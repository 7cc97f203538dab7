"""LDEV numbers and their Hitachi-style display form.

An LDEV number is shown as LDKC:CU:LDEV, one hex byte each (42 -> "00:00:2A"),
which bounds it to 24 bits. A bad number is a `ValueError`: each caller says what
it means in its own terms (the CLI a usage error, the array INVALID_ARGUMENT).
"""

from __future__ import annotations

import re

MAX_LDEV_ID = 0xFFFFFF
_DISPLAY = re.compile(r"^([0-9A-Fa-f]{2}):([0-9A-Fa-f]{2}):([0-9A-Fa-f]{2})$")


def format_ldev_id(ldev_id: int) -> str:
    if not 0 <= ldev_id <= MAX_LDEV_ID:
        raise ValueError(f"LDEV id {ldev_id} outside 0..{MAX_LDEV_ID}")
    return f"{ldev_id >> 16:02X}:{(ldev_id >> 8) & 0xFF:02X}:{ldev_id & 0xFF:02X}"


def parse_ldev_id(text: str) -> int:
    """Accept the display form ("00:00:2A") or a decimal number ("42")."""
    text = text.strip()
    match = _DISPLAY.match(text)
    if match:
        ldkc, cu, ldev = (int(part, 16) for part in match.groups())
        return (ldkc << 16) | (cu << 8) | ldev
    if text.isdigit():
        value = int(text)
        if value <= MAX_LDEV_ID:
            return value
    raise ValueError(f"not an LDEV id: {text!r} (expected 00:00:2A or a number up to {MAX_LDEV_ID})")
