"""`ccopy dr`: one command for each disaster-recovery move of a protected namespace, over
the two sites' Kubernetes objects (replication_sidecar/dr). Credentials per site: a
kubeconfig and, optionally, its context, as kubectl takes them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ccopy.arguments import DefaultsShown, add_kubeconfig_argument
from ccopy.flag_types import positive_seconds
from ccopy_common import DEFAULT_DRIVER_NAME


def add_parser(commands: argparse._SubParsersAction) -> None:
    dr = commands.add_parser(
        "dr", help="failover, failback, status and drills of a protected namespace",
        description="Disaster-recovery moves of a namespace the namespace operator protects, through the "
        "Kubernetes objects of the two sites (no array credentials). Every verb needs the backup cluster's "
        "kubeconfig; failback needs the main cluster's too, and status and failover use it when given.",
    )  # fmt: skip
    verbs = dr.add_subparsers(dest="verb", required=True)
    described = {
        "status": ("the namespace as each site reports it",
                   "Print the ConsistentCopy status of the namespace at the backup site, and at the main site "
                   "too with --main-kubeconfig: state, role, volumes, recovery point, what a takeover gave up."),
        "failover": ("make the backup site primary (with --main-kubeconfig: planned, the main site demoted first)",
                     "Make the backup site's copy of the namespace primary: its PVCs take writes. With "
                     "--main-kubeconfig the main site is demoted first and nothing is lost (planned); without it "
                     "the backup takes over alone (unplanned: the main site is gone) and says what was given up. "
                     "Without --main-kubeconfig while the main site is up and still primary, the backup waits for "
                     "it to answer no more, up to --timeout, then stops with an error."),
        "failback": ("after a failover, both sites up: back to the main site",
                     "After a failover, with both sites up: the main site gets the backup's writes since the "
                     "takeover, becomes primary again, and the backup site secondary. Nothing is lost."),
        "drill": ("restore a group snapshot of the backup into another namespace",
                  "Take a VolumeGroupSnapshot of the backup's PVCs (one consistent point, while copying goes on) "
                  "and restore every PVC into a new namespace for a drill or analytics; --cleanup removes it."),
    }  # fmt: skip
    made = {}
    for name, (short, long) in described.items():
        made[name] = verbs.add_parser(name, help=short, description=long, formatter_class=DefaultsShown)
    status, failover, failback, drill = made.values()
    for verb in made.values():
        verb.add_argument("--namespace", "-n", required=True, help="the protected namespace")
        add_kubeconfig_argument(verb, whose="of the backup cluster", like_kubectl=True)
        verb.add_argument("--context", default=None, help="its context; unset: its current one")
    for verb in (failover, failback, drill):
        verb.add_argument("--timeout", type=positive_seconds, default=600.0, help="seconds to wait for each step")
    for verb in (status, failover, failback):
        verb.add_argument("--main-kubeconfig", default="", env="CCOPY_MAIN_KUBECONFIG",
                          required=verb is failback,  # failback changes both sites
                          help=f"the main cluster's kubeconfig, {'required' if verb is failback else 'optional'}")
        verb.add_argument("--main-context", default=None, help="its context; unset: its current one")
    drill.add_argument("--into", required=True,
                       help="the drill's namespace: the drill makes it (it must not exist); with --cleanup, the "
                       "drill namespace to remove")  # fmt: skip
    drill.add_argument("--cleanup", action="store_true",
                       help="remove the drill in --into (its PVCs, namespace and group snapshot) instead of "
                       "making one")  # fmt: skip
    drill.add_argument("--driver-name", default=DEFAULT_DRIVER_NAME, env="CCOPY_DRIVER_NAME", help="our CSI driver")
    drill.add_argument("--storage-class", default="", help="of the restored PVCs; empty: the cluster's default")
    drill.add_argument("--group-snapshot-class", default="",
                       help="VolumeGroupSnapshotClass; empty: the one of our driver")  # fmt: skip
    dr.set_defaults(run=run_dr)


def run_dr(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from ccopy_common.errors import StartupError
    from replication_sidecar.dr import commands
    from replication_sidecar.dr.site import DrError, DrSite
    from replication_sidecar.kube_client import api_client, one_line
    from replication_sidecar.kube_watch import describe

    def say(text: str) -> None:
        print(text, flush=True)

    def site_of(name: str, kubeconfig: str, context: str | None, flag: str, context_flag: str) -> DrSite:
        """The site's client; each message about it names what chose its cluster: the flag, or the
        variable or file it defaulted to."""
        where = chosen_by(kubeconfig, flag) + (f" {context_flag} {context}" if context else "")
        try:
            return DrSite(api_client(kubeconfig, context), name, where)
        except StartupError as exc:
            raise StartupError(f"{name} site ({where}): {exc}") from exc

    try:
        main_config = getattr(args, "main_kubeconfig", "")
        if not args.kubeconfig:
            raise DrError("no kubeconfig of the backup cluster: give --kubeconfig, set $CCOPY_KUBECONFIG or "
                          "$KUBECONFIG, or have ~/.kube/config")  # fmt: skip
        backup = site_of("backup", args.kubeconfig, args.context, "--kubeconfig", "--context")
        main = site_of("main", main_config, getattr(args, "main_context", None), "--main-kubeconfig",
                       "--main-context") if main_config else None  # fmt: skip
        match args.verb:
            case "status":
                return print_status([s for s in (main, backup) if s is not None], args.namespace)
            case "failover":
                commands.failover(backup, args.namespace, args.timeout, say, main=main)
            case "failback":
                assert main is not None  # argparse requires --main-kubeconfig for failback
                commands.failback(main, backup, args.namespace, args.timeout, say)
            case "drill" if args.cleanup:
                commands.drill_cleanup(backup, args.namespace, args.into, args.timeout, say)
            case "drill":
                commands.drill(
                    backup, args.namespace, args.into, args.driver_name, args.timeout, say,
                    storage_class=args.storage_class, group_snapshot_class=args.group_snapshot_class,
                )  # fmt: skip
    except (DrError, StartupError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except (ApiException, HTTPError) as exc:
        print(f"error: {one_line(describe(exc))}", file=sys.stderr)
        return 1
    return 0


def print_status(sites: list, namespace: str) -> int:
    """Each site on its own: the backup's view matters most when the main site does not answer.
    1 when a site could not say."""
    from replication_sidecar.dr import commands
    from replication_sidecar.dr.site import DrError
    from replication_sidecar.kube_client import one_line

    answered = True
    for site in sites:
        try:
            print("\n".join(commands.status_lines(site.name, namespace, site.require_own(namespace))), flush=True)
        except DrError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
            answered = False
    return 0 if answered else 1


def chosen_by(kubeconfig: str, flag: str) -> str:
    """`kubeconfig` as its source gave it: the variable the flag defaults to (when equal), the
    home's kubeconfig, or the flag."""
    variables = ["CCOPY_MAIN_KUBECONFIG"] if flag.startswith("--main") else ["CCOPY_KUBECONFIG", "KUBECONFIG"]
    for variable in variables:
        if os.environ.get(variable) == kubeconfig:
            return f"${variable}={kubeconfig}"
    if not flag.startswith("--main") and kubeconfig == str(Path.home() / ".kube" / "config"):
        return "~/.kube/config"
    return f"{flag} {kubeconfig}"
