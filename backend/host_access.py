"""Which host may open which export over NBD: deny by default, as LUN masking is.

An LDEV is reachable only by the hosts it is published to, unless it was made
open to every host (`open_to_all`, the rule of LDEVs made before host access
existed, kept so that existing pools keep working). A host is known by one of
two proofs:
- the common name of its verified TLS client certificate: it opens the LDEV by
  name, and nothing secret travels;
- without client certificates, the secret export name of one of its
  publications (`pub-<token>`). When a certificate is shown as well, it must be
  the publication's host: a token leaked to another host opens nothing.
A snapshot's export follows its LDEV (always read-only).

Pure decisions over plain values; the array looks the values up and the NBD
server turns a refusal into NBD_REP_ERR_POLICY.
"""

from __future__ import annotations

from collections.abc import Collection

ANONYMOUS = ""  # a host without a verified client certificate


def refusal_by_name(what: str, open_to_all: bool, published_to: Collection[str], host: str) -> str | None:
    """Why `host` may not open `what` (an LDEV or a snapshot of it) by name; None when it may."""
    if open_to_all or (host != ANONYMOUS and host in published_to):
        return None
    if host == ANONYMOUS:
        return (
            f"{what} is open only to the hosts it is published to: connect with a client certificate, "
            "or through the export name of a publication"
        )
    return f"{what} is not published to host {host!r}"


def refusal_by_publication(publication_host: str, host: str) -> str | None:
    """Why `host` may not use a publication made for `publication_host`; None when it may."""
    if host in (ANONYMOUS, publication_host):
        return None
    return f"this publication is for host {publication_host!r}, not for {host!r}"
