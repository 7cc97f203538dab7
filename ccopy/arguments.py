"""Argument helpers every `ccopy` subcommand shares: defaults from `CCOPY_*`
variables, shown in --help, and the one way a kubeconfig is chosen."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


# The long-running commands show each flag's default (which the environment may have set).
class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Says a flag's default where it tells something: not for a required flag, an empty or
    unset one (its help says what empty means), or help that names its default already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        unset = action.default is None or action.default is False or action.default == ""
        if action.required or unset or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"CCOPY_{name}", default)


def optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def add_kubeconfig_argument(parser: argparse.ArgumentParser, whose: str = "of the cluster; empty: the Pod's "
                            "service account", like_kubectl: bool = False) -> None:  # fmt: skip
    """`like_kubectl`: for commands people run, ~/.kube/config when nothing else names one."""
    default = env("KUBECONFIG", os.environ.get("KUBECONFIG", ""))
    home = Path.home() / ".kube" / "config"
    if like_kubectl and not default and home.is_file():
        default = str(home)
    also = ", ~/.kube/config" if like_kubectl else ""
    parser.add_argument(
        "--kubeconfig", default=default, help=f"kubeconfig file {whose} [CCOPY_KUBECONFIG, KUBECONFIG{also}]"
    )
