"""Bad input never crashes (issue 29, item 7): every subcommand, with a bad value of every
typed flag and of every environment twin, ends in exactly one line on stderr and status 1,
before anything is dialled or started. The cases are generated from the parser itself (its
subcommands, each flag's type and choices, its twins and its TLS sets), so a new flag is
covered the day it is added; a flag whose type has no bad value below fails the test.

Parsing is tried in-process (it is what `ccopy.cli.main` does first, and a refusal exits
there); a handful of true subprocess runs cover what only a process shows: a signal (grpc
aborted on a certificate without its key), grpc's own log lines, a traceback at import."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from ccopy import flag_types
from ccopy.arguments import Parser, TlsSetCheck, flag_name
from ccopy.cli import build_parser
from ccopy_common.pki import CertificateAuthority

# A value each type refuses, and one it takes (for the flags a command requires).
BAD = {
    flag_types.whole_number: "10k",
    flag_types.seconds: "soon",
    flag_types.positive_seconds: "0",
    flag_types.size: "lots",
    flag_types.host_port: "nowhere",
    flag_types.host_port_or_empty: "nowhere:port",
    flag_types.endpoint: "unix://",
    flag_types.unix_endpoint: "tcp://127.0.0.1:1",
    flag_types.unix_endpoint_or_empty: "127.0.0.1:1",
    flag_types.log_level: "bogus",
    flag_types.key_value: "novalue",
    flag_types.readable_file: "/nonexistent/file.pem",
    flag_types.folder: "/etc/hostname",
    flag_types.switch: "maybe",
}
GOOD = {
    flag_types.whole_number: "7",
    flag_types.seconds: "1.5",
    flag_types.positive_seconds: "2",
    flag_types.size: "1MiB",
    flag_types.host_port: "127.0.0.1:1",
    flag_types.host_port_or_empty: "",
    flag_types.endpoint: "unix:///tmp/x.sock",
    flag_types.unix_endpoint: "unix:///tmp/k.sock",
    flag_types.log_level: "info",
    flag_types.key_value: "k=v",
    flag_types.readable_file: "/etc/hostname",
    flag_types.folder: "/nonexistent/folder",
}
# Flags whose value is free text: names (of LDEVs, snapshots, hosts, namespaces, classes, groups,
# contexts) the command passes on, and kubeconfigs, which ccopy_common/kube_client words in one
# line when they are not usable. A new flag is typed, or added here by a reviewer's decision.
FREE_TEXT = {
    "--base", "--context", "--driver-name", "--from-ldev", "--from-snapshot", "--group", "--group-class",
    "--group-snapshot-class", "--host", "--into", "--kubeconfig", "--label-key", "--label-value", "--ldev",
    "--main-context", "--main-kubeconfig", "--namespace", "--node-id", "--publish", "--remove",
    "--replication-class", "--site", "--snapshot", "--storage-class",
}  # fmt: skip


@dataclass(frozen=True)
class Command:
    """A leaf subcommand: its words, and the parser of each level (a level's flags go before
    the next word)."""

    words: tuple[str, ...]
    parsers: tuple[Parser, ...]

    @property
    def name(self) -> str:
        return " ".join(self.words)

    def argv(self, extra: tuple[int, list[str]] | None = None, without: str = "") -> list[str]:
        """The words with what each level requires, plus `extra` flags at level `extra[0]`;
        `without`: a flag's dest left to its twin."""
        argv: list[str] = []
        for level, parser in enumerate(self.parsers):
            argv += required_options(parser, without)
            if extra is not None and extra[0] == level:
                argv += extra[1]
            if level < len(self.words):
                argv.append(self.words[level])
        return argv + positionals(self.parsers[-1])


def subparsers(parser: argparse.ArgumentParser) -> dict[str, Parser]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not found:
        return {}
    # Aliases name the same parser twice: each parser once, by its first name.
    unique: dict[int, tuple[str, Parser]] = {}
    for word, sub in found[0].choices.items():
        unique.setdefault(id(sub), (word, sub))
    return dict(unique.values())


def commands(parser: Parser, words: tuple[str, ...] = (), parsers: tuple[Parser, ...] = ()) -> Iterator[Command]:
    children = subparsers(parser)
    if not children:
        yield Command(words, (*parsers, parser))
    for word, child in children.items():
        yield from commands(child, (*words, word), (*parsers, parser))


def own_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._SubParsersAction | argparse._HelpAction)
            and not isinstance(a, argparse._VersionAction)]  # fmt: skip


def good(action: argparse.Action) -> str:
    convert = getattr(action, "convert", None)
    if action.choices is not None:
        return str(next(iter(action.choices)))
    return GOOD.get(convert, "x")


def required_options(parser: argparse.ArgumentParser, without: str = "") -> list[str]:
    argv: list[str] = []
    for action in own_actions(parser):
        if action.option_strings and action.required and action.dest != without:
            argv += [flag_name(action), good(action)]
    for group in parser._mutually_exclusive_groups:
        if group.required:
            first = group._group_actions[0]
            argv += [flag_name(first)] + ([] if first.nargs == 0 else [good(first)])
    return argv


def positionals(parser: argparse.ArgumentParser) -> list[str]:
    return [good(a) for a in own_actions(parser) if not a.option_strings]


def bad(action: argparse.Action) -> str | None:
    """A value `action` refuses; None for free text (a name, a path the command makes)."""
    convert = getattr(action, "convert", None)
    if convert is not None:
        assert convert in BAD, f"{flag_name(action)}: no bad value known for its type {convert.__name__}"
        return BAD[convert]
    if action.choices is not None:
        return "bogus-choice"
    return None


@pytest.fixture(autouse=True)
def no_twins_set(monkeypatch, tmp_path):
    """The developer's own CCOPY_* and KUBECONFIG must not answer for the cases."""
    for name in list(os.environ):
        if name.startswith("CCOPY_") or name == "KUBECONFIG":
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))


def refused(argv: list[str], capsys) -> str:
    """The one line the parser refuses `argv` with (status 1), or the test fails."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 1, f"{argv}: status {exited.value.code}, {err}"
    assert len(err.splitlines()) == 1 and err.endswith("\n"), f"{argv}: {err!r}"
    return err.strip()


COMMANDS = list(commands(build_parser()))
FLAG_CASES = [
    pytest.param(command, level, action, id=f"{command.name} {flag_name(action)}")
    for command in COMMANDS
    for level, parser in enumerate(command.parsers)
    for action in own_actions(parser)
    if action.option_strings and action.nargs != 0 and bad(action) is not None
]
TWIN_CASES = [
    pytest.param(command, action, variable, id=f"{command.name} {variable}")
    for command in COMMANDS
    for parser in command.parsers
    for action in own_actions(parser)
    for variable in getattr(action, "env_twins", ())
    if bad(action) is not None or action.nargs == 0
]


def test_the_cases_cover_every_command_and_the_flags_that_matter():
    names = {command.name for command in COMMANDS}
    assert {"array serve", "csi", "ctl ldev create", "ctl pair create", "dr status", "demo"} <= names
    assert len(COMMANDS) > 40 and len(FLAG_CASES) > 100 and len(TWIN_CASES) > 60


def test_every_flag_that_takes_a_value_is_typed_or_known_free_text():
    untyped = {flag_name(action) for command in COMMANDS for parser in command.parsers
               for action in own_actions(parser) if action.option_strings and action.nargs != 0 and bad(action) is None}
    assert untyped - FREE_TEXT == set(), "give these a type= (ccopy/flag_types.py) and a bad value here"


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_control_every_command_parses_with_good_values(command):
    """The cases below fail for their bad value alone: the same command line without it parses."""
    assert build_parser().parse_args(command.argv()).run is not None


@pytest.mark.parametrize(("command", "level", "action"), FLAG_CASES)
def test_a_bad_flag_value_is_one_line_naming_the_flag(command, level, action, capsys):
    line = refused(command.argv((level, [flag_name(action), bad(action)])), capsys)
    assert flag_name(action) in line and line.startswith(f"ccopy{' ' if level else ''}"), line


@pytest.mark.parametrize(("command", "action", "variable"), TWIN_CASES)
def test_a_bad_environment_twin_is_one_line_naming_the_variable(command, action, variable, monkeypatch, capsys):
    value = BAD[flag_types.switch] if action.nargs == 0 else bad(action)
    monkeypatch.setenv(variable, value)
    line = refused(command.argv(without=action.dest), capsys)
    assert line.endswith(f"error: {variable}={value}: {line_end(action)}"), line


def line_end(action: argparse.Action) -> str:
    """How the refusal of a twin ends: the type's reason, or the choices."""
    if action.nargs == 0:
        return "not 1 or 0"
    convert = getattr(action, "convert", None)
    if convert is None:
        return f"not one of {', '.join(map(str, action.choices or ()))}"
    try:
        convert(bad(action))
    except argparse.ArgumentTypeError as exc:
        return str(exc)
    raise AssertionError(f"{flag_name(action)}: {bad(action)!r} was taken")


def test_a_flag_on_the_command_line_wins_over_a_bad_twin(monkeypatch):
    monkeypatch.setenv("CCOPY_SERIAL", "10k")
    assert build_parser().parse_args(["array", "serve", "--pool", "p", "--serial", "3"]).serial == 3


def test_a_good_twin_is_converted_by_its_flag_type(monkeypatch):
    monkeypatch.setenv("CCOPY_MAX_VOLUMES", "12")
    monkeypatch.setenv("CCOPY_INSECURE", "1")
    monkeypatch.setenv("CCOPY_POOL", "/pools/a")
    parsed = build_parser().parse_args(["csi", "--node-id", "n"])
    assert parsed.max_volumes == 12
    served = build_parser().parse_args(["array", "serve"])
    assert served.insecure is True and served.pool == Path("/pools/a"), "a twin makes a required flag optional"


# -- TLS sets ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pem(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(folder)
    one, other = ca.issue("one"), ca.issue("other")
    garbage = folder / "garbage.pem"
    garbage.write_text("not a certificate\n")
    return {"cert": str(one.cert), "key": str(one.key), "ca": str(ca.cert), "other key": str(other.key),
            "garbage": str(garbage)}  # fmt: skip


TLS_CASES = [
    pytest.param(command, level, check, id=f"{command.name} {check.cert}")
    for command in COMMANDS
    for level, parser in enumerate(command.parsers)
    for check in parser.checks
    if isinstance(check, TlsSetCheck)
]


def test_every_tls_set_is_found():
    sets = {(case.values[0].name, case.values[2].cert) for case in TLS_CASES}
    assert {("ctl pool show", "--cert"), ("array serve", "--tls-cert"), ("array serve", "--nbd-tls-cert"),
            ("array serve", "--remote-cert"), ("csi", "--nbd-cert"), ("csi", "--cert")} <= sets  # fmt: skip


@pytest.mark.parametrize(("command", "level", "check"), TLS_CASES)
def test_a_tls_set_is_checked_as_a_set_in_one_line(command, level, check, pem, capsys):
    cert, key, ca = check.cert, check.key, check.ca
    full = [cert, pem["cert"], key, pem["key"], ca, pem["ca"]]
    assert build_parser().parse_args(command.argv((level, full))).run is not None, "control: the whole set parses"
    wrong = {
        f"{key}": [cert, pem["cert"]],
        f"{cert}": [key, pem["key"]],
        "is not the certificate's": [cert, pem["cert"], key, pem["other key"], ca, pem["ca"]],
        "no PEM certificate": [cert, pem["garbage"], key, pem["key"], ca, pem["ca"]],
        "no PEM private key": [cert, pem["cert"], key, pem["garbage"], ca, pem["ca"]],
        f"{ca} {pem['garbage']}: no PEM certificate in it": [cert, pem["cert"], key, pem["key"], ca, pem["garbage"]],
    }
    if check.rule is flag_types.TlsRule.SERVER:
        wrong[f"{ca} needs {cert} and {key}"] = [ca, pem["ca"]]
    if check.rule is flag_types.TlsRule.ALL:
        wrong[f"{cert}, {key} and {ca} go together"] = [cert, pem["cert"], key, pem["key"]]
    for said, flags in wrong.items():
        line = refused(command.argv((level, flags)), capsys)
        assert said in line, (flags, line)


def test_a_tls_file_from_a_twin_is_named_by_its_variable(pem, monkeypatch, capsys):
    monkeypatch.setenv("CCOPY_CERT", pem["cert"])
    assert refused(["ctl", "pool", "show"], capsys) == "ccopy ctl: error: $CCOPY_CERT needs --key"


# -- as a person runs it: real processes ---------------------------------------------------------
def ccopy(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("ccopy")), *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), **env})  # fmt: skip


def test_the_crashes_found_by_a_new_user_are_one_line_now(pem, tmp_path):
    """Each of these ended in SIGABRT inside grpc (status 134), grpc's log lines or a traceback."""
    cases = {
        "cert without key": (["ctl", "--cert", pem["cert"], "ldev", "list"], {}, "ctl: error: --cert needs --key"),
        "key not the cert's": (["ctl", "--cert", pem["cert"], "--key", pem["other key"], "--array", "127.0.0.1:1",
                                "ldev", "list"], {}, "the key is not the certificate's"),
        "garbage CA": (["ctl", "--ca", pem["garbage"], "ldev", "list"], {}, "no PEM certificate in it"),
        "serial twin": (["array", "serve", "--pool", "p"], {"CCOPY_SERIAL": "10k"},
                        "ccopy array serve: error: CCOPY_SERIAL=10k: not a whole number"),
        "max volumes twin": (["csi", "--node-id", "n"], {"CCOPY_MAX_VOLUMES": "ten"},
                             "ccopy csi: error: CCOPY_MAX_VOLUMES=ten: not a whole number"),
        "log level": (["--log-level", "bogus", "ctl", "pool", "show"], {},
                      "ccopy: error: --log-level bogus: not one of DEBUG, INFO, WARNING, ERROR"),
        # A twin of another command's flag is not ctl's to read: it dials, and says the array is not there.
        "serial twin to ctl": (["ctl", "--array", "127.0.0.1:1", "pool", "show"], {"CCOPY_SERIAL": "10k"},
                               "error: UNAVAILABLE:"),
    }
    with ThreadPoolExecutor(2) as pool:  # the machine has two cores
        runs = dict(zip(cases, pool.map(lambda case: ccopy(case[0], case[1], tmp_path), cases.values()), strict=True))
    for name, result in runs.items():
        assert result.returncode == 1, f"{name}: status {result.returncode} (negative: a signal), {result.stderr}"
        assert len(result.stderr.splitlines()) == 1, f"{name}: {result.stderr}"
        assert cases[name][2] in result.stderr, f"{name}: {result.stderr}"
    helped = ccopy(["--help"], {"CCOPY_MAX_VOLUMES": "ten"}, tmp_path)
    assert helped.returncode == 0 and helped.stderr == "" and "usage: ccopy" in helped.stdout
