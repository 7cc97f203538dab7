"""Consistent Copy: the `ccopy` command and what every process shares."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("consistent-copy")
except metadata.PackageNotFoundError:  # running from a checkout that was not installed
    __version__ = "0.0.0+unknown"
