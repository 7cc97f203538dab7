"""Secure by default: which listeners would let anyone who reaches them in.

Without TLS the management API lets any caller delete every LDEV, and the NBD data
path lets any client read and write the LDEVs it can name. On a loopback
address only this machine reaches them; anywhere else the array refuses to start
unless told `--insecure`, and then says so loudly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for loopback addresses and names; "" and 0.0.0.0 (every interface) are not."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost: it may resolve to anything


def unprotected(api_host: str, api_tls: bool, nbd_host: str, nbd_tls_required: bool = False) -> Iterator[str]:
    """What would be open to the network, in words for the refusal or the warning."""
    if not api_tls and not is_loopback(api_host):
        yield f"the management API on {api_host or 'every interface'} without TLS (--tls-cert, --tls-key)"
    if not nbd_tls_required and not is_loopback(nbd_host):
        yield f"the NBD data path on {nbd_host or 'every interface'} without TLS (--nbd-tls-cert, --nbd-tls-key)"
