"""The command line a person meets first: the controllers' credentials come from the
flag, `$CCOPY_KUBECONFIG` or the standard `$KUBECONFIG`, and without any of them (and
outside a Pod) they stop with one line saying so, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ccopy.cli import build_parser

CONTROLLERS = ["namespace-operator", "backup-site"]


def ccopy(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ccopy", *argv, "--array", "127.0.0.1:1"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("command", CONTROLLERS)
def test_without_credentials_a_controller_says_so_in_one_line(command, monkeypatch):
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}  # no KUBECONFIG, no service account
    done = ccopy(command, env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: no Kubernetes credentials: not in a Pod (no service account token) and no --kubeconfig, "
        "$CCOPY_KUBECONFIG or $KUBECONFIG"
    ]


@pytest.mark.parametrize("command", CONTROLLERS)
def test_a_bad_kubeconfig_from_the_environment_is_named(command, tmp_path):
    broken = tmp_path / "config"
    broken.write_text("not: [a kubeconfig")
    done = ccopy(command, env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(broken)})
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: kubeconfig {broken}: not a usable kubeconfig: ")


def test_ccopy_kubeconfig_wins_over_kubeconfig(monkeypatch):
    monkeypatch.setenv("KUBECONFIG", "/from/kubectl")
    assert build_parser().parse_args(["backup-site"]).kubeconfig == "/from/kubectl"
    monkeypatch.setenv("CCOPY_KUBECONFIG", "/for/ccopy")
    assert build_parser().parse_args(["namespace-operator"]).kubeconfig == "/for/ccopy"


@pytest.mark.parametrize("command", ["array serve", "csi", "replication", *CONTROLLERS])
def test_every_flag_of_a_long_running_command_is_explained_with_its_default(command):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command.split()[0]]  # type: ignore[union-attr]
    if " " in command:
        sub = sub._subparsers._group_actions[0].choices[command.split()[1]]  # type: ignore[union-attr]
    unexplained = [a.option_strings for a in sub._actions if not a.help or a.help.startswith("[")]
    assert unexplained == []
    assert "(default: " in " ".join(sub.format_help().split())  # wrapped lines joined


@pytest.mark.parametrize("text", ["hello world", "- a list", ""])
def test_a_file_that_is_no_kubeconfig_is_one_line_not_a_traceback(text, tmp_path):
    broken = tmp_path / "config"
    broken.write_text(text)
    done = ccopy("namespace-operator", "--kubeconfig", str(broken), env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    missing = ccopy("backup-site", "--kubeconfig", str(tmp_path / "nowhere"), env={"PATH": "/usr/bin:/bin"})
    assert missing.stderr.strip() == f"error: kubeconfig {tmp_path / 'nowhere'}: no such file"


DEAD_SERVER = """apiVersion: v1
kind: Config
clusters: [{name: gone, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: someone, user: {token: t}}]
contexts: [{name: here, context: {cluster: gone, user: someone}}]
current-context: here
"""


def dr(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccopy", "dr", *argv], capture_output=True, text=True, env=env,
                          timeout=60)  # fmt: skip


@pytest.mark.parametrize("verb", ["status", "failover", "failback", "drill"])
def test_every_dr_verb_says_what_it_does_and_explains_its_flags(verb):
    sub = build_parser()._subparsers._group_actions[0].choices["dr"]  # type: ignore[union-attr]
    command = sub._subparsers._group_actions[0].choices[verb]  # type: ignore[union-attr]
    assert len(command.description or "") > 60
    assert [a.option_strings for a in command._actions if not a.help] == []
    text = " ".join(command.format_help().split())
    assert ("(default: 600.0)" in text) == (verb != "status"), "--timeout where a verb waits, and only there"
    assert "(default: None)" not in text and ") (default:" not in text


def test_dr_reads_the_kubeconfig_kubectl_reads_and_an_unanswering_server_is_one_line(tmp_path):
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(DEAD_SERVER)
    done = dr("status", "--namespace", "shop", env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: backup site (~/.kube/config): the API server at 127.0.0.1:1 does not answer: [Errno 111] Connection "
        "refused"
    ]


def kubeconfig_of(tmp_path, name: str, contexts: tuple[str, ...]) -> str:
    """A kubeconfig of the DEAD_SERVER's cluster and user, with these contexts."""
    listed = ", ".join(f"{{name: {context}, context: {{cluster: gone, user: someone}}}}" for context in contexts)
    head = DEAD_SERVER.split("contexts:")[0]
    path = tmp_path / name
    path.write_text(f"{head}contexts: [{listed}]\ncurrent-context: {contexts[0]}\n")
    return str(path)


def test_dr_without_any_kubeconfig_says_where_one_is_looked_for(tmp_path):
    done = dr("status", "--namespace", "shop", env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: no kubeconfig of the backup cluster: give --kubeconfig, set "
                                   "$CCOPY_KUBECONFIG or $KUBECONFIG, or have ~/.kube/config")  # fmt: skip


def test_failback_without_the_main_cluster_stops_before_reading_any_credentials(tmp_path):
    done = dr("failback", "--namespace", "shop", "--kubeconfig", str(tmp_path / "nowhere"),
              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip
    assert done.returncode == 1  # a usage error is an error like any other: status 1, one line
    assert done.stderr.splitlines() == ["ccopy dr failback: error: the following arguments are required: "
                                        "--main-kubeconfig"]  # fmt: skip
    usage = build_parser().parse_args(["dr", "failback", "-n", "x", "--main-kubeconfig", "m"])  # parses when given
    assert usage.main_kubeconfig == "m"
    dr_parser = build_parser()._subparsers._group_actions[0].choices["dr"]  # type: ignore[union-attr]
    failback = dr_parser._subparsers._group_actions[0].choices["failback"]  # type: ignore[union-attr]
    assert "--main-kubeconfig MAIN_KUBECONFIG" in failback.format_usage()
    assert "[--main-kubeconfig" not in failback.format_usage(), "the usage says it is not optional"


def test_a_context_the_kubeconfig_lacks_is_named_with_the_ones_it_has(tmp_path):
    config = kubeconfig_of(tmp_path, "config", contexts=("here", "there"))
    done = dr("status", "-n", "shop", "--kubeconfig", config, "--context", "elsewhere",
              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip
    assert done.stderr.strip() == (f"error: backup site (--kubeconfig {config} --context elsewhere): context "
                                   f"elsewhere is not in kubeconfig {config} (it has: here, there)")  # fmt: skip


def test_a_kubeconfig_list_as_kubectl_takes_it_is_merged_and_missing_files_skipped(tmp_path):
    first = kubeconfig_of(tmp_path, "first", contexts=("here",))
    second = kubeconfig_of(tmp_path, "second", contexts=("there",))
    listed = ":".join([str(tmp_path / "absent"), first, second])
    done = dr("status", "-n", "shop", "--context", "there",
              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": listed})  # fmt: skip
    assert done.stderr.strip().splitlines() == [
        f"error: backup site ($KUBECONFIG={listed} --context there): the API server at 127.0.0.1:1 does not "
        "answer: [Errno 111] Connection refused"
    ], "the context of the second file was found and its server asked"
    none_there = dr("status", "-n", "shop", env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                 "KUBECONFIG": f"{tmp_path / 'a'}:{tmp_path / 'b'}"})  # fmt: skip
    listed_none = f"{tmp_path / 'a'}:{tmp_path / 'b'}"
    assert none_there.stderr.strip() == (f"error: backup site ($KUBECONFIG={listed_none}): none of the kubeconfig "
                                         f"files {listed_none} exists")  # fmt: skip


@pytest.mark.parametrize(("path", "said"), [("/dev/null", "not a regular file"), ("/tmp", "a directory, not a file")])
def test_a_kubeconfig_that_is_no_file_is_said_to_be_what_it_is(path, said, tmp_path):
    done = dr("status", "-n", "shop", env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CCOPY_KUBECONFIG": path})
    assert done.stderr.strip() == f"error: backup site ($CCOPY_KUBECONFIG={path}): kubeconfig {path}: {said}"
