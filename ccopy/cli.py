"""`ccopy`: one command, one subcommand per process or tool.

    ccopy array serve   run a storage array (pool, NBD data path, management API)
    ccopy ctl ...       administer an array
    ccopy demo          the demonstration README.md starts with

Flags have environment-variable twins (CCOPY_*), parsed only here into one
typed config per process.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ccopy.arguments import DefaultsShown, add_kubeconfig_argument, env, optional_path
from ccopy_common import DEFAULT_DRIVER_NAME, __version__
from ccopy_common.logfmt import setup_logging
from ccopy_common.rpc import TlsFiles
from ccopy_common.units import parse_size


def add_array_parser(commands: argparse._SubParsersAction) -> None:
    array = commands.add_parser("array", help="run a storage array")
    sub = array.add_subparsers(dest="array_command", required=True)
    serve = sub.add_parser("serve", help="serve a pool of LDEVs over NBD and gRPC", formatter_class=DefaultsShown)
    serve.add_argument("--pool", default=env("POOL"), required=env("POOL") is None, help="pool folder [CCOPY_POOL]")
    serve.add_argument("--serial", type=int, default=int(env("SERIAL", "0") or 0), help="array serial [CCOPY_SERIAL]")
    serve.add_argument("--api", default=env("API", "127.0.0.1:50051"), help="management gRPC HOST:PORT [CCOPY_API]")
    serve.add_argument("--nbd", default=env("NBD", "127.0.0.1:10809"), help="NBD data path HOST:PORT [CCOPY_NBD]")
    serve.add_argument("--tls-cert", default=env("TLS_CERT"), help="server certificate PEM [CCOPY_TLS_CERT]")
    serve.add_argument("--tls-key", default=env("TLS_KEY"), help="server key PEM [CCOPY_TLS_KEY]")
    serve.add_argument(
        "--tls-client-ca", default=env("TLS_CLIENT_CA"), help="require client certs from this CA [CCOPY_TLS_CLIENT_CA]"
    )
    serve.add_argument(
        "--handshake-timeout",
        type=float,
        default=float(env("HANDSHAKE_TIMEOUT", "30") or 30),
        help="seconds an NBD client may take to finish the handshake",
    )
    serve.add_argument(
        "--remote", default=env("REMOTE", ""), help="the other site's array API HOST:PORT [CCOPY_REMOTE]"
    )
    serve.add_argument("--remote-ca", default=env("REMOTE_CA"), help="CA of the remote array [CCOPY_REMOTE_CA]")
    serve.add_argument("--remote-cert", default=env("REMOTE_CERT"), help="client cert for the link [CCOPY_REMOTE_CERT]")
    serve.add_argument("--remote-key", default=env("REMOTE_KEY"), help="client key for the link [CCOPY_REMOTE_KEY]")
    serve.add_argument(
        "--link-delay-ms", type=float, default=float(env("LINK_DELAY_MS", "0") or 0),
        help="emulated round-trip delay added to every call to the remote array [CCOPY_LINK_DELAY_MS]",
    )  # fmt: skip
    serve.add_argument(
        "--path-watch-seconds", type=float, default=float(env("PATH_WATCH_SECONDS", "60") or 60),
        help="seconds without the backup pulling before a group is suspended, PSUE [CCOPY_PATH_WATCH_SECONDS]",
    )  # fmt: skip
    serve.add_argument(
        "--chunk-size", default=env("CHUNK_SIZE", "64KiB"),
        help="copy-on-write chunk of new LDEVs' snapshots, 4KiB..1MiB [CCOPY_CHUNK_SIZE]",
    )  # fmt: skip
    serve.add_argument(
        "--metrics", default=env("METRICS", ""), help="serve Prometheus /metrics on HOST:PORT [CCOPY_METRICS]"
    )
    serve.add_argument(
        "--nbd-tls-cert", default=env("NBD_TLS_CERT"), help="NBD over TLS: certificate [CCOPY_NBD_TLS_CERT]"
    )
    serve.add_argument("--nbd-tls-key", default=env("NBD_TLS_KEY"), help="NBD over TLS: key [CCOPY_NBD_TLS_KEY]")
    serve.add_argument(
        "--nbd-tls-client-ca", default=env("NBD_TLS_CLIENT_CA"),
        help="require NBD client certificates from this CA; their common name is the host [CCOPY_NBD_TLS_CLIENT_CA]",
    )  # fmt: skip
    serve.add_argument(
        "--nbd-tls-mode", choices=("required", "optional"), default=env("NBD_TLS_MODE", "required"),
        help="with an NBD certificate: refuse plaintext clients (required) or serve both [CCOPY_NBD_TLS_MODE]",
    )  # fmt: skip
    serve.add_argument(
        "--insecure", action="store_true", default=env("INSECURE", "") == "1",
        help="serve the API without TLS or NBD on a non-loopback address anyway [CCOPY_INSECURE=1]",
    )  # fmt: skip
    serve.set_defaults(run=run_array_serve)


def run_array_serve(args: argparse.Namespace) -> int:
    from backend.api.exposure import unprotected
    from backend.api.server import ArrayConfig, serve, split_address
    from backend.errors import ArrayError
    from backend.nbd.handshake import TlsMode

    tls = TlsFiles(
        cert=optional_path(args.tls_cert), key=optional_path(args.tls_key), ca=optional_path(args.tls_client_ca)
    )
    nbd_tls = TlsFiles(
        cert=optional_path(args.nbd_tls_cert), key=optional_path(args.nbd_tls_key),
        ca=optional_path(args.nbd_tls_client_ca),
    )  # fmt: skip
    for files, flag in ((tls, "--tls"), (nbd_tls, "--nbd-tls")):
        if problem := server_tls_problem(files, flag):
            print(f"error: {problem}", file=sys.stderr)
            return 2
    config = ArrayConfig(
        pool=Path(args.pool),
        serial=args.serial,
        api=args.api,
        nbd=args.nbd,
        tls=tls,
        handshake_timeout=args.handshake_timeout,
        chunk_size=parse_size(args.chunk_size),
        remote=args.remote,
        remote_tls=TlsFiles(
            cert=optional_path(args.remote_cert), key=optional_path(args.remote_key), ca=optional_path(args.remote_ca)
        ),
        link_delay=args.link_delay_ms / 1000,
        path_watch=args.path_watch_seconds,
        metrics=args.metrics,
        nbd_tls=nbd_tls,
        nbd_tls_required=args.nbd_tls_mode == "required",
    )
    try:
        api_host, nbd_host = split_address(args.api)[0], split_address(args.nbd)[0]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    nbd_tls_required = config.nbd_tls_mode is TlsMode.REQUIRED
    open_to_network = list(unprotected(api_host, tls.cert is not None, nbd_host, nbd_tls_required))
    if open_to_network and not args.insecure:
        print(f"error: refusing to serve {' and '.join(open_to_network)}: anyone who reaches it could read, "
              "write or delete every LDEV. Use a loopback address, or TLS, or --insecure to accept that",
              file=sys.stderr)  # fmt: skip
        return 2
    for what in open_to_network:
        print(f"WARNING: --insecure: serving {what}; anyone who reaches it has the array", file=sys.stderr)
    try:
        serve(config)
    except (ArrayError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def server_tls_problem(files: TlsFiles, flag: str) -> str | None:
    """What is wrong with a listener's TLS flags (`flag`: --tls, --nbd-tls), or None."""
    if (files.cert is None) != (files.key is None):
        return f"{flag}-cert and {flag}-key go together"
    if files.ca is not None and files.cert is None:
        return f"{flag}-client-ca needs {flag}-cert and {flag}-key"
    return None


def add_array_client_arguments(parser: argparse.ArgumentParser) -> None:
    """How a process in front of the array reaches its management API (TLS, mTLS)."""
    parser.add_argument("--array", default=env("ARRAY", "127.0.0.1:50051"), help="array API HOST:PORT [CCOPY_ARRAY]")
    parser.add_argument("--ca", default=env("CA"), help="CA of the array's certificate [CCOPY_CA]")
    parser.add_argument("--cert", default=env("CERT"), help="client certificate for mTLS [CCOPY_CERT]")
    parser.add_argument("--key", default=env("KEY"), help="client key for mTLS [CCOPY_KEY]")
    parser.add_argument(
        "--driver-name", default=env("DRIVER_NAME", DEFAULT_DRIVER_NAME),
        help="CSI driver name, as in StorageClasses and PVs [CCOPY_DRIVER_NAME]",
    )  # fmt: skip


def array_tls(args: argparse.Namespace) -> TlsFiles:
    return TlsFiles(cert=optional_path(args.cert), key=optional_path(args.key), ca=optional_path(args.ca))


def add_csi_parser(commands: argparse._SubParsersAction) -> None:
    csi = commands.add_parser(
        "csi", help="run the CSI plugin (controller, node or both)", formatter_class=DefaultsShown
    )
    csi.add_argument(
        "--endpoint", default=env("CSI_ENDPOINT", "unix:///csi/csi.sock"),
        help="gRPC endpoint the kubelet and the sidecars call [CCOPY_CSI_ENDPOINT]",
    )  # fmt: skip
    csi.add_argument(
        "--node-id", default=env("NODE_ID"), required=env("NODE_ID") is None,
        help="this node's name, as the NBD certificate's common name [CCOPY_NODE_ID]",
    )  # fmt: skip
    add_array_client_arguments(csi)
    csi.add_argument(
        "--mode", choices=("controller", "node", "all"), default=env("CSI_MODE", "all"),
        help="which CSI services to serve [CCOPY_CSI_MODE]",
    )  # fmt: skip
    csi.add_argument("--site", default=env("SITE", "main"), help="topology segment of this site [CCOPY_SITE]")
    csi.add_argument("--state-dir", default=env("STATE_DIR", "/var/lib/ccopy-csi"), help="node state [CCOPY_STATE_DIR]")
    csi.add_argument(
        "--nbd-address", default=env("NBD_ADDRESS", ""), help="NBD HOST:PORT nodes dial [CCOPY_NBD_ADDRESS]"
    )
    csi.add_argument(
        "--max-volumes", type=int, default=int(env("MAX_VOLUMES", "0") or 0),
        help="volumes one node may publish; 0: no limit [CCOPY_MAX_VOLUMES]",
    )  # fmt: skip
    csi.add_argument(
        "--nbd-cert",
        default=env("NBD_CERT"),
        help="node: client certificate on the NBD data path, common name = node id [CCOPY_NBD_CERT]",
    )
    csi.add_argument("--nbd-key", default=env("NBD_KEY"), help="node: its key [CCOPY_NBD_KEY]")
    csi.add_argument("--nbd-ca", default=env("NBD_CA"), help="node: CA of the array's NBD certificate [CCOPY_NBD_CA]")
    csi.set_defaults(run=run_csi)


def run_csi(args: argparse.Namespace) -> int:
    from csi_driver.config import CsiConfig
    from csi_driver.server import serve

    config = CsiConfig(
        endpoint=args.endpoint,
        node_id=args.node_id,
        array=args.array,
        driver_name=args.driver_name,
        mode=args.mode,
        site=args.site,
        state_dir=Path(args.state_dir),
        max_volumes_per_node=args.max_volumes,
        nbd_address=args.nbd_address,
        tls=array_tls(args),
        nbd_tls=TlsFiles(cert=optional_path(args.nbd_cert), key=optional_path(args.nbd_key),
                         ca=optional_path(args.nbd_ca)),
    )  # fmt: skip
    given = [config.nbd_tls.cert, config.nbd_tls.key, config.nbd_tls.ca]
    if any(given) and not all(given):
        print("error: --nbd-cert, --nbd-key and --nbd-ca go together", file=sys.stderr)
        return 2
    return serve_or_fail(serve, config)


def add_replication_parser(commands: argparse._SubParsersAction) -> None:
    replication = commands.add_parser(
        "replication", help="serve the csi-addons Identity, replication and volume group services for one array",
        formatter_class=DefaultsShown,
    )
    replication.add_argument(
        "--endpoint", default=env("REPLICATION_ENDPOINT", "unix:///csi/csi-addons.sock"),
        help="gRPC endpoint the csi-addons sidecar calls [CCOPY_REPLICATION_ENDPOINT]",
    )  # fmt: skip
    add_array_client_arguments(replication)
    replication.add_argument(
        "--metrics", default=env("REPLICATION_METRICS", ""),
        help="serve Prometheus /metrics on HOST:PORT [CCOPY_REPLICATION_METRICS]",
    )  # fmt: skip
    replication.set_defaults(run=run_replication)


def run_replication(args: argparse.Namespace) -> int:
    from replication_sidecar.config import ReplicationConfig
    from replication_sidecar.server import serve

    config = ReplicationConfig(
        endpoint=args.endpoint, array=args.array, driver_name=args.driver_name, tls=array_tls(args),
        metrics=args.metrics,
    )  # fmt: skip
    return serve_or_fail(serve, config)


def add_namespace_operator_parser(commands: argparse._SubParsersAction) -> None:
    from replication_sidecar.namespace_operator.model import OperatorConfig

    defaults = OperatorConfig()
    operator = commands.add_parser(
        "namespace-operator", help="copy every volume of a labelled namespace to the backup as one consistency group",
        formatter_class=DefaultsShown,
    )
    add_kubeconfig_argument(operator)
    add_array_client_arguments(operator)
    operator.add_argument(
        "--label-key",
        default=env("LABEL_KEY", defaults.label_key),
        help="namespace label that asks for protection [CCOPY_LABEL_KEY]",
    )
    operator.add_argument(
        "--label-value", default=env("LABEL_VALUE", defaults.label_value), help="its value [CCOPY_LABEL_VALUE]"
    )
    operator.add_argument(
        "--group-class",
        default=env("GROUP_CLASS", defaults.group_class),
        help="VolumeGroupReplicationClass of the groups [CCOPY_GROUP_CLASS]",
    )
    operator.add_argument(
        "--replication-class",
        default=env("REPLICATION_CLASS", defaults.replication_class),
        help="VolumeReplicationClass the groups name (the csi-addons manager needs one for the volumes of a "
        "group) [CCOPY_REPLICATION_CLASS]",
    )
    operator.add_argument(
        "--max-group-pvcs",
        type=int,
        default=int(env("MAX_GROUP_PVCS", "100")),
        help="the csi-addons manager's limit of PVCs per group [CCOPY_MAX_GROUP_PVCS]",
    )
    operator.add_argument(
        "--rpo-seconds",
        type=float,
        default=float(env("RPO_SECONDS", "30")),
        help="declared RPO; a namespace's consistentcopy.io/rpo-seconds wins. Keep it equal to the "
        "replication classes' rpoSeconds: the backup site judges its copy by the class's [CCOPY_RPO_SECONDS]",
    )
    operator.add_argument(
        "--status-interval",
        type=float,
        default=float(env("STATUS_INTERVAL", "10") or 10),
        help="seconds between looks at a protected namespace's array state [CCOPY_STATUS_INTERVAL]",
    )
    operator.set_defaults(run=run_namespace_operator)


def run_namespace_operator(args: argparse.Namespace) -> int:
    from replication_sidecar.namespace_operator.main import OperatorProcess, serve
    from replication_sidecar.namespace_operator.model import OperatorConfig

    operator = OperatorConfig(
        label_key=args.label_key, label_value=args.label_value, driver=args.driver_name, group_class=args.group_class,
        replication_class=args.replication_class, max_group_pvcs=args.max_group_pvcs, rpo_seconds=args.rpo_seconds,
    )  # fmt: skip
    settings = OperatorProcess(
        array=args.array, tls=array_tls(args), kubeconfig=args.kubeconfig, operator=operator,
        status_interval=args.status_interval,
    )  # fmt: skip
    return serve_or_fail(serve, settings)


def add_backup_site_parser(commands: argparse._SubParsersAction) -> None:
    from replication_sidecar.backup_site.model import RegistrarConfig

    defaults = RegistrarConfig()
    site = commands.add_parser(
        "backup-site", help="register every S-VOL of this site's array as a PV and PVC of the main PVC's name",
        formatter_class=DefaultsShown,
    )
    add_kubeconfig_argument(site)
    add_array_client_arguments(site)
    site.add_argument("--group-class", default=env("GROUP_CLASS", defaults.group_class),
                      help="VolumeGroupReplicationClass of the secondary groups [CCOPY_GROUP_CLASS]")
    site.add_argument("--replication-class", default=env("REPLICATION_CLASS", defaults.replication_class),
                      help="VolumeReplicationClass the secondary groups name (the csi-addons manager needs one) "
                           "[CCOPY_REPLICATION_CLASS]")
    site.add_argument("--storage-class", default=env("STORAGE_CLASS", ""),
                      help="storageClassName of the backup PVs and PVCs; empty: none [CCOPY_STORAGE_CLASS]")
    site.add_argument("--interval", type=float, default=float(env("INTERVAL", "2")),
                      help="seconds between two reads of the array's S-VOLs [CCOPY_INTERVAL]")
    site.add_argument("--status-interval", type=float, default=float(env("STATUS_INTERVAL", "10") or 10),
                      help="seconds between rewrites of a ConsistentCopy whose only change is an age; "
                           "other changes are written at once [CCOPY_STATUS_INTERVAL]")
    site.set_defaults(run=run_backup_site)  # fmt: skip


def run_backup_site(args: argparse.Namespace) -> int:
    from replication_sidecar.backup_site.main import RegistrarProcess, serve
    from replication_sidecar.backup_site.model import RegistrarConfig

    registrar = RegistrarConfig(
        driver=args.driver_name, group_class=args.group_class, replication_class=args.replication_class,
        storage_class=args.storage_class,
    )  # fmt: skip
    settings = RegistrarProcess(
        array=args.array, tls=array_tls(args), kubeconfig=args.kubeconfig, registrar=registrar, interval=args.interval,
        status_interval=args.status_interval,
    )  # fmt: skip
    return serve_or_fail(serve, settings)


def serve_or_fail(serve: Callable[[Any], None], config: Any) -> int:
    """Serve until signalled; a socket that cannot be bound, or missing credentials, is a
    one-line error and status 1."""
    from ccopy_common.errors import StartupError

    try:
        serve(config)
    except (OSError, StartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ccopy import ctl, demo, dr_cli

    parser = argparse.ArgumentParser(prog="ccopy", description="Consistent Copy storage, CSI and replication")
    parser.add_argument("--version", action="version", version=f"ccopy {__version__}")
    parser.add_argument(
        "--log-level", default=env("LOG_LEVEL", "INFO"), help="DEBUG, INFO, WARNING or ERROR [CCOPY_LOG_LEVEL]"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_array_parser(commands)
    add_csi_parser(commands)
    add_replication_parser(commands)
    add_namespace_operator_parser(commands)
    add_backup_site_parser(commands)
    ctl.add_parser(commands)
    dr_cli.add_parser(commands)
    demo.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
