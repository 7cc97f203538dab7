"""How every `ccopy` command reads its flags: the parser, the environment-variable twins, the
checks that bind several flags, and the one way a kubeconfig is chosen.

Bad input is refused while the arguments are parsed, before anything is dialled, started or
read by a library that aborts on it (grpc ends the process on a certificate without its
key): every flag has a type that says what is wrong with a value, an environment twin is
converted by its flag's type, and sets of flags (TLS) are checked together. A refusal is one
line, `PROG: error: WHAT: WHY`, and exit status 1, as every other failure of the CLI.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ccopy import flag_types
from ccopy.flag_types import TlsRule, host_port, readable_file

USAGE_ERROR = 1  # argparse says 2; the CLI says 1 for anything it refuses (ccopy ctl, ccopy dr, ...)


@dataclass(frozen=True)
class FromEnvironment:
    """A flag's value taken from its twin, still text: converted by the flag's type once the
    arguments are parsed, and only if the flag was not given (a flag wins over its twin).
    Not a str, so argparse leaves it alone; help shows where it came from."""

    variable: str
    text: str

    def __str__(self) -> str:
        return f"${self.variable}={self.text}"


class Given(str):
    """A typed flag's text as argparse stores it (its default too), converted by the flag's
    type once parsing is done: so that a refusal names the flag and the value the way a twin's
    does ("--serial 10k: ...", "CCOPY_SERIAL=10k: ..."), and a value converted once is never
    converted again."""


# What a reader of a flag gets: its spelling on the command line, or its twin's when the twin set it.
Namer = Callable[[str], str]
Check = Callable[[argparse.Namespace, Namer], str | None]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose `add_argument` takes `env=` (the twin variables, first set wins),
    which converts flags and twins alike with the flag's `type`, runs the checks of several
    flags, and refuses in one line with exit status 1. Subcommands get this class too (argparse
    makes them of their parent's class). A flag's type is kept as `action.convert`, its twins
    as `action.env_twins`: the tests walk them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checks: list[Check] = []

    def add_argument(self, *args: Any, env: str | Sequence[str] = (), **kwargs: Any) -> argparse.Action:
        twins = (env,) if isinstance(env, str) else tuple(env)
        # An empty variable counts as unset: a manifest's blank value means "the default".
        given = next((FromEnvironment(name, os.environ[name]) for name in twins if os.environ.get(name)), None)
        if given is not None:
            kwargs.update(default=given, required=False)
        if twins:
            kwargs["help"] = f"{kwargs.get('help', '')} [{', '.join(twins)}]".strip()
        convert = kwargs.pop("type", None)
        if convert is not None:
            kwargs["type"] = Given
        action = super().add_argument(*args, **kwargs)
        if twins and action.nargs not in (None, 0):
            raise ValueError(f"{action.dest}: an environment twin stands for one value")
        action.env_twins = twins  # type: ignore[attr-defined]
        action.convert = convert  # type: ignore[attr-defined]
        return action

    def add_check(self, check: Check) -> None:
        """`check(args, name)` says what is wrong with flags taken together, or None; `name(dest)`
        words a flag as the person gave it (the flag, or the variable that set it)."""
        self.checks.append(check)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        from_twins = {}
        for action in self._actions:
            value = getattr(parsed, action.dest, None)
            if isinstance(value, FromEnvironment):
                setattr(parsed, action.dest, self._from_twin(action, value))
                from_twins[action.dest] = f"${value.variable}"
            elif isinstance(value, Given):
                setattr(parsed, action.dest, self._convert(action, value, f"{flag_name(action)} {value}"))
            elif isinstance(value, list) and any(isinstance(item, Given) for item in value):
                setattr(parsed, action.dest, [self._convert(action, item, f"{flag_name(action)} {item}")
                                              for item in value])  # fmt: skip

        def name(dest: str) -> str:
            named = [flag_name(action) for action in self._actions if action.dest == dest]
            return from_twins.get(dest) or (named[0] if named else dest)

        for check in self.checks:
            if problem := check(parsed, name):
                self.error(problem)
        return parsed, extras

    def _from_twin(self, action: argparse.Action, value: FromEnvironment) -> Any:
        said = f"{value.variable}={value.text}"
        if action.nargs == 0:  # a switch (store_true, store_false): --insecure and CCOPY_INSECURE=1
            on = self._convert(action, value.text, said, flag_types.switch)
            return on if action.const is True else not on
        converted = self._convert(action, value.text, said)
        if action.choices is not None and converted not in action.choices:
            self.error(f"{said}: not one of {', '.join(map(str, action.choices))}")
        return converted

    def _convert(self, action: argparse.Action, text: str, said: str, convert: Callable | None = None) -> Any:
        convert = convert or getattr(action, "convert", None)
        if convert is None:
            return str(text)
        try:
            return convert(str(text))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            self.error(f"{said}: {exc}")

    def error(self, message: str) -> NoReturn:
        """One line, no usage block: the usage is a --help away, and scripts read one line."""
        self.exit(USAGE_ERROR, f"{self.prog}: error: {' '.join(message.split())}\n")


def flag_name(action: argparse.Action) -> str:
    """How messages name a flag: its long option (--namespace, not -n), or a positional's name."""
    longs = [option for option in action.option_strings if option.startswith("--")]
    return (longs or action.option_strings or [action.metavar or action.dest])[0]


# The long-running commands show each flag's default (which the environment may have set).
class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Says a flag's default where it tells something: not for a required flag, an empty or
    unset one (its help says what empty means), or help that names its default already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        unset = action.default is None or action.default is False or action.default == ""
        if action.required or unset or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


@dataclass(frozen=True)
class TlsSetCheck:
    """The check of one set of TLS flags (their long options), by its rule; kept on the parser
    so that tests can find every set and try it."""

    cert: str
    key: str
    ca: str
    rule: TlsRule
    dests: dict[str, str]  # long option -> dest

    def __call__(self, args: argparse.Namespace, name: Namer) -> str | None:
        files = {role: (name(self.dests[flag]), getattr(args, self.dests[flag]))
                 for role, flag in (("cert", self.cert), ("key", self.key), ("ca", self.ca))}  # fmt: skip
        return flag_types.tls_problem(files, self.rule)


def add_tls_set(parser: Parser, rule: TlsRule, cert: tuple[str, str], key: tuple[str, str],
                ca: tuple[str, str]) -> None:  # fmt: skip
    """Three PEM files (flag, help) that go together by `rule`, each with its twin (--nbd-cert:
    CCOPY_NBD_CERT), added and checked as one set once parsed: before grpc or GnuTLS ever
    reads them."""
    dests = [parser.add_argument(flag, type=readable_file, env=twin_of(flag), help=said).dest
             for flag, said in (cert, key, ca)]  # fmt: skip
    parser.add_check(TlsSetCheck(cert[0], key[0], ca[0], rule, dict(zip((cert[0], key[0], ca[0]), dests,
                                                                         strict=True))))  # fmt: skip


def twin_of(flag: str) -> str:
    return "CCOPY_" + flag.removeprefix("--").upper().replace("-", "_")


def add_array_client_arguments(parser: Parser) -> None:
    """How a process in front of the array reaches its management API (TLS, mTLS)."""
    parser.add_argument("--array", type=host_port, default="127.0.0.1:50051", env="CCOPY_ARRAY",
                        help="array API HOST:PORT")  # fmt: skip
    add_tls_set(parser, TlsRule.CLIENT, cert=("--cert", "client certificate for mTLS"),
                key=("--key", "client key for mTLS"), ca=("--ca", "CA of the array's certificate"))  # fmt: skip


def add_kubeconfig_argument(parser: Parser, whose: str = "of the cluster; empty: the Pod's service account",
                            like_kubectl: bool = False) -> None:  # fmt: skip
    """`like_kubectl`: for commands people run, ~/.kube/config when nothing else names one."""
    home = Path.home() / ".kube" / "config"
    default = str(home) if like_kubectl and home.is_file() else ""
    also = "; else ~/.kube/config" if like_kubectl else ""
    parser.add_argument("--kubeconfig", default=default, env=("CCOPY_KUBECONFIG", "KUBECONFIG"),
                        help=f"kubeconfig file {whose}{also}")  # fmt: skip
