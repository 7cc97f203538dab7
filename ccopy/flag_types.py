"""What a `ccopy` flag's value may be: one function per kind of value, for argparse's `type=`
and for the flag's environment twin alike (ccopy/arguments.py). Each returns the value the
command uses or raises ArgumentTypeError saying what is wrong, without repeating the value
(the parser puts it, or the flag, in front). And the rules of a set of TLS flags, checked
with Python's own TLS library so that grpc and GnuTLS never see what they would abort on.
"""

from __future__ import annotations

import enum
import math
import ssl
from argparse import ArgumentTypeError
from pathlib import Path

from ccopy_common.units import parse_size

UINT32_MAX = (1 << 32) - 1  # what the API's counts, serials and LDEV numbers hold
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def whole_number(text: str) -> int:
    """0, 1, 2, ... up to what the API carries (uint32)."""
    if not text.strip().isdigit():
        raise ArgumentTypeError("not a whole number")
    value = int(text)
    if value > UINT32_MAX:
        raise ArgumentTypeError(f"more than {UINT32_MAX}")
    return value


def seconds(text: str) -> float:
    """A duration that may be 0 (which the flag's help gives a meaning)."""
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError("not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ArgumentTypeError("not a number of seconds, 0 or more")
    return value


def positive_seconds(text: str) -> float:
    """A timeout or an interval: 0 would mean never waiting or never resting."""
    value = seconds(text)
    if value == 0:
        raise ArgumentTypeError("must be more than 0 seconds")
    return value


def size(text: str) -> int:
    """Bytes as people write them: 4096, 64MiB, 10G (ccopy_common.units)."""
    try:
        return parse_size(text)
    except ValueError:
        raise ArgumentTypeError("not a size in whole bytes (examples: 4096, 64MiB, 10G, 1TiB)") from None


def host_port(text: str) -> str:
    """HOST:PORT, [IPv6]:PORT; what grpc and the NBD listener are given as is."""
    host, sep, port = text.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit():
        raise ArgumentTypeError("not HOST:PORT")
    if int(port) > 65535:
        raise ArgumentTypeError(f"port {port} is not 0-65535")
    return text


def host_port_or_empty(text: str) -> str:
    """HOST:PORT, or empty for "none" (no remote array, no metrics listener)."""
    return host_port(text) if text else text


def endpoint(text: str) -> str:
    """Where a gRPC server listens: unix:///path, tcp://HOST:PORT or HOST:PORT."""
    if text.startswith("unix://"):
        if not text.removeprefix("unix://"):
            raise ArgumentTypeError("unix:// without a path")
        return text
    try:
        host_port(text.removeprefix("tcp://"))
    except ArgumentTypeError:
        raise ArgumentTypeError("not unix:///PATH, tcp://HOST:PORT or HOST:PORT") from None
    return text


def unix_endpoint(text: str) -> str:
    """unix:///PATH: a server only the node's root may call (the volume keeper)."""
    if not text.startswith("unix:///"):
        raise ArgumentTypeError("not unix:///PATH")
    return text


def unix_endpoint_or_empty(text: str) -> str:
    return unix_endpoint(text) if text else text


def log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise ArgumentTypeError(f"not one of {', '.join(LOG_LEVELS)}")
    return level


def key_value(text: str) -> tuple[str, str]:
    """KEY=VALUE (a label, a selector); the value may be empty, the key may not."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ArgumentTypeError("not KEY=VALUE")
    return key, value


def readable_file(text: str) -> Path:
    """A file that is there and this process may read (certificates, keys, CAs)."""
    path = Path(text)
    try:
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise ArgumentTypeError("no such file") from None
    except IsADirectoryError:
        raise ArgumentTypeError("a directory, not a file") from None
    except OSError as exc:
        raise ArgumentTypeError(exc.strerror or str(exc)) from None
    if not path.is_file():
        raise ArgumentTypeError("not a regular file")
    return path


def folder(text: str) -> Path:
    """A folder, or where one can be made (a pool, state, a work folder): not a file."""
    path = Path(text)
    if not text:
        raise ArgumentTypeError("empty")
    if path.exists() and not path.is_dir():
        raise ArgumentTypeError("not a folder")
    return path


def switch(text: str) -> bool:
    """An environment twin of an on/off flag (--insecure: CCOPY_INSECURE=1)."""
    words = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if text.lower() not in words:
        raise ArgumentTypeError("not 1 or 0")
    return words[text.lower()]


class TlsRule(enum.Enum):
    """How the three files of a TLS set go together."""

    CLIENT = "client"  # cert and key together (mTLS); a CA alone checks the server only
    SERVER = "server"  # cert and key together; a client CA (mTLS) needs them
    ALL = "all"  # the three or none (the node's NBD client over GnuTLS)


# (how the person named it, the file) per role: cert, key, ca.
TlsSet = dict[str, tuple[str, Path | None]]


def tls_problem(files: TlsSet, rule: TlsRule) -> str | None:
    """What is wrong with a set of TLS files, in one line naming the flags, or None. The files
    are read as grpc and GnuTLS will read them: PEM, the key the certificate's."""
    (cert_name, cert), (key_name, key), (ca_name, ca) = files["cert"], files["key"], files["ca"]
    if rule is TlsRule.ALL and any((cert, key, ca)) and not all((cert, key, ca)):
        return f"{cert_name}, {key_name} and {ca_name} go together"
    if (cert is None) != (key is None):
        return f"{cert_name} needs {key_name}" if key is None else f"{key_name} needs {cert_name}"
    if rule is TlsRule.SERVER and ca is not None and cert is None:
        return f"{ca_name} needs {cert_name} and {key_name}"
    if cert is not None and key is not None and (problem := _pair_problem(cert, key)):
        return f"{cert_name} {cert}, {key_name} {key}: {problem}"
    if ca is not None:
        try:
            ssl.create_default_context(cafile=str(ca))
        except (ssl.SSLError, OSError):
            return f"{ca_name} {ca}: no PEM certificate in it"
    return None


def _pair_problem(cert: Path, key: Path) -> str | None:
    def encrypted() -> bytes:
        raise ArgumentTypeError("the key is encrypted (gRPC takes an unencrypted key)")

    if b"-----BEGIN CERTIFICATE-----" not in cert.read_bytes():
        return "no PEM certificate in the certificate file"
    if b"PRIVATE KEY-----" not in key.read_bytes():
        return "no PEM private key in the key file"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=encrypted)
    except ArgumentTypeError as exc:
        return str(exc)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            return "the key is not the certificate's"
        return f"not a usable certificate and key ({exc.reason or exc})"
    return None
