"""`ccopy`: one command, one subcommand per process or tool.

    ccopy array serve   run a storage array (pool, NBD data path, management API)
    ccopy ctl ...       administer an array
    ccopy demo          the demonstration README.md starts with

Flags have environment-variable twins (CCOPY_*), parsed only here into one
typed config per process; bad input is refused while parsing (ccopy/arguments.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ccopy.arguments import DefaultsShown, Parser, add_array_client_arguments, add_kubeconfig_argument, add_tls_set
from ccopy.flag_types import (
    TlsRule,
    endpoint,
    folder,
    host_port,
    host_port_or_empty,
    log_level,
    positive_seconds,
    seconds,
    size,
    unix_endpoint,
    unix_endpoint_or_empty,
    whole_number,
)
from ccopy_common import DEFAULT_DRIVER_NAME, __version__
from ccopy_common.logfmt import setup_logging
from ccopy_common.rpc import TlsFiles


def add_array_parser(commands: argparse._SubParsersAction) -> None:
    array = commands.add_parser("array", help="run a storage array")
    sub = array.add_subparsers(dest="array_command", required=True)
    serve = sub.add_parser("serve", help="serve a pool of LDEVs over NBD and gRPC", formatter_class=DefaultsShown)
    # fmt: off
    serve.add_argument("--pool", type=folder, required=True, env="CCOPY_POOL", help="pool folder")
    serve.add_argument("--serial", type=whole_number, default=0, env="CCOPY_SERIAL", help="array serial")
    serve.add_argument("--api", type=host_port, default="127.0.0.1:50051", env="CCOPY_API",
                       help="management gRPC HOST:PORT")
    serve.add_argument("--nbd", type=host_port, default="127.0.0.1:10809", env="CCOPY_NBD",
                       help="NBD data path HOST:PORT")
    add_tls_set(serve, TlsRule.SERVER, cert=("--tls-cert", "server certificate PEM"),
                key=("--tls-key", "server key PEM"), ca=("--tls-client-ca", "require client certs from this CA"))
    serve.add_argument("--handshake-timeout", type=positive_seconds, default=30.0, env="CCOPY_HANDSHAKE_TIMEOUT",
                       help="seconds an NBD client may take to finish the handshake")
    serve.add_argument("--remote", type=host_port_or_empty, default="", env="CCOPY_REMOTE",
                       help="the other site's array API HOST:PORT")
    add_tls_set(serve, TlsRule.CLIENT, cert=("--remote-cert", "client cert for the link"),
                key=("--remote-key", "client key for the link"), ca=("--remote-ca", "CA of the remote array"))
    serve.add_argument("--link-delay-ms", type=seconds, default=0.0, env="CCOPY_LINK_DELAY_MS",
                       help="emulated round-trip delay added to every call to the remote array, milliseconds")
    serve.add_argument("--path-watch-seconds", type=positive_seconds, default=60.0, env="CCOPY_PATH_WATCH_SECONDS",
                       help="seconds without the backup pulling before a group is suspended, PSUE")
    serve.add_argument("--chunk-size", type=size, default="64KiB", env="CCOPY_CHUNK_SIZE",
                       help="copy-on-write chunk of new LDEVs' snapshots, 4KiB..1MiB")
    serve.add_argument("--metrics", type=host_port_or_empty, default="", env="CCOPY_METRICS",
                       help="serve Prometheus /metrics on HOST:PORT")
    add_tls_set(serve, TlsRule.SERVER, cert=("--nbd-tls-cert", "NBD over TLS: certificate"),
                key=("--nbd-tls-key", "NBD over TLS: key"),
                ca=("--nbd-tls-client-ca", "require NBD client certificates from this CA; their common name is the "
                    "host"))
    serve.add_argument("--nbd-tls-mode", choices=("required", "optional"), default="required",
                       env="CCOPY_NBD_TLS_MODE",
                       help="with an NBD certificate: refuse plaintext clients (required) or serve both")
    serve.add_argument("--insecure", action="store_true", env="CCOPY_INSECURE",
                       help="serve the API without TLS or NBD on a non-loopback address anyway "
                            "(its twin: 1, true or yes)")
    # fmt: on
    serve.set_defaults(run=run_array_serve)


def run_array_serve(args: argparse.Namespace) -> int:
    from backend.api.exposure import unprotected
    from backend.api.server import ArrayConfig, serve, split_address
    from backend.errors import ArrayError
    from backend.nbd.handshake import TlsMode

    tls = TlsFiles(cert=args.tls_cert, key=args.tls_key, ca=args.tls_client_ca)
    nbd_tls = TlsFiles(cert=args.nbd_tls_cert, key=args.nbd_tls_key, ca=args.nbd_tls_client_ca)
    config = ArrayConfig(
        pool=args.pool, serial=args.serial, api=args.api, nbd=args.nbd, tls=tls,
        handshake_timeout=args.handshake_timeout, chunk_size=args.chunk_size, remote=args.remote,
        remote_tls=TlsFiles(cert=args.remote_cert, key=args.remote_key, ca=args.remote_ca),
        link_delay=args.link_delay_ms / 1000, path_watch=args.path_watch_seconds, metrics=args.metrics,
        nbd_tls=nbd_tls, nbd_tls_required=args.nbd_tls_mode == "required",
    )  # fmt: skip
    api_host, nbd_host = split_address(args.api)[0], split_address(args.nbd)[0]
    nbd_tls_required = config.nbd_tls_mode is TlsMode.REQUIRED
    open_to_network = list(unprotected(api_host, tls.cert is not None, nbd_host, nbd_tls_required))
    if open_to_network and not args.insecure:
        print(f"error: refusing to serve {' and '.join(open_to_network)}: anyone who reaches it could read, "
              "write or delete every LDEV. Use a loopback address, or TLS, or --insecure to accept that",
              file=sys.stderr)  # fmt: skip
        return 1
    for what in open_to_network:
        print(f"WARNING: --insecure: serving {what}; anyone who reaches it has the array", file=sys.stderr)
    try:
        serve(config)
    except (ArrayError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def array_tls(args: argparse.Namespace) -> TlsFiles:
    return TlsFiles(cert=args.cert, key=args.key, ca=args.ca)


def add_driver_name_argument(parser: Parser) -> None:
    parser.add_argument("--driver-name", default=DEFAULT_DRIVER_NAME, env="CCOPY_DRIVER_NAME",
                        help="CSI driver name, as in StorageClasses and PVs")  # fmt: skip


def add_csi_parser(commands: argparse._SubParsersAction) -> None:
    csi = commands.add_parser(
        "csi", help="run the CSI plugin (controller, node or both)", formatter_class=DefaultsShown
    )
    # fmt: off
    csi.add_argument("--endpoint", type=endpoint, default="unix:///csi/csi.sock", env="CCOPY_CSI_ENDPOINT",
                     help="gRPC endpoint the kubelet and the sidecars call")
    csi.add_argument("--node-id", required=True, env="CCOPY_NODE_ID",
                     help="this node's name, as the NBD certificate's common name")
    add_array_client_arguments(csi)
    add_driver_name_argument(csi)
    csi.add_argument("--mode", choices=("controller", "node", "all"), default="all", env="CCOPY_CSI_MODE",
                     help="which CSI services to serve")
    csi.add_argument("--site", default="main", env="CCOPY_SITE", help="topology segment of this site")
    csi.add_argument("--state-dir", type=folder, default="/var/lib/ccopy-csi", env="CCOPY_STATE_DIR",
                     help="node state")
    csi.add_argument("--nbd-address", type=host_port_or_empty, default="", env="CCOPY_NBD_ADDRESS",
                     help="NBD HOST:PORT nodes dial")
    csi.add_argument("--max-volumes", type=whole_number, default=0, env="CCOPY_MAX_VOLUMES",
                     help="volumes one node may publish; 0: no limit")
    csi.add_argument("--socket-group", type=whole_number, default=None, env="CCOPY_SOCKET_GROUP",
                     help="GID whose members may connect to a unix --endpoint (made 0660); unset: the owner only")
    csi.add_argument("--keeper", type=unix_endpoint_or_empty, default="", env="CCOPY_KEEPER",
                     help="node: unix:// endpoint of the node's volume keeper (ccopy volume-keeper), which holds the "
                     "NBD connections where a restart of this plugin does not end them; empty: this plugin holds them")
    add_tls_set(csi, TlsRule.ALL, cert=("--nbd-cert", "node: client certificate on the NBD data path, common name "
                "= node id"), key=("--nbd-key", "node: its key"), ca=("--nbd-ca", "node: CA of the array's NBD "
                "certificate"))
    # fmt: on
    csi.set_defaults(run=run_csi)


def run_csi(args: argparse.Namespace) -> int:
    from csi_driver.config import CsiConfig
    from csi_driver.server import serve

    config = CsiConfig(
        endpoint=args.endpoint, node_id=args.node_id, array=args.array, driver_name=args.driver_name, mode=args.mode,
        site=args.site, state_dir=args.state_dir, max_volumes_per_node=args.max_volumes,
        nbd_address=args.nbd_address, tls=array_tls(args),
        nbd_tls=TlsFiles(cert=args.nbd_cert, key=args.nbd_key, ca=args.nbd_ca), socket_group=args.socket_group,
        keeper=args.keeper,
    )  # fmt: skip
    return serve_or_fail(serve, config)


def add_keeper_parser(commands: argparse._SubParsersAction) -> None:
    keeper = commands.add_parser(
        "volume-keeper", help="hold a node's NBD connections (nbdfuse) for the node plugin, apart from its restarts",
        formatter_class=DefaultsShown,
    )  # fmt: skip
    keeper.add_argument("--endpoint", type=unix_endpoint, default="unix:///var/lib/ccopy-csi/keeper.sock",
                        env="CCOPY_KEEPER_ENDPOINT", help="unix:// endpoint the node plugin calls (--keeper)")
    keeper.set_defaults(run=run_keeper)


def run_keeper(args: argparse.Namespace) -> int:
    from csi_driver.keeper import serve

    return serve_or_fail(serve, args.endpoint)


def add_replication_parser(commands: argparse._SubParsersAction) -> None:
    replication = commands.add_parser(
        "replication", help="serve the csi-addons Identity, replication and volume group services for one array",
        formatter_class=DefaultsShown,
    )  # fmt: skip
    # fmt: off
    replication.add_argument("--endpoint", type=endpoint, default="unix:///csi/csi-addons.sock",
                             env="CCOPY_REPLICATION_ENDPOINT", help="gRPC endpoint the csi-addons sidecar calls")
    add_array_client_arguments(replication)
    add_driver_name_argument(replication)
    replication.add_argument("--metrics", type=host_port_or_empty, default="", env="CCOPY_REPLICATION_METRICS",
                             help="serve Prometheus /metrics on HOST:PORT")
    # fmt: on
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
    )  # fmt: skip
    # fmt: off
    add_kubeconfig_argument(operator)
    add_array_client_arguments(operator)
    add_driver_name_argument(operator)
    operator.add_argument("--label-key", default=defaults.label_key, env="CCOPY_LABEL_KEY",
                          help="namespace label that asks for protection")
    operator.add_argument("--label-value", default=defaults.label_value, env="CCOPY_LABEL_VALUE", help="its value")
    operator.add_argument("--group-class", default=defaults.group_class, env="CCOPY_GROUP_CLASS",
                          help="VolumeGroupReplicationClass of the groups")
    operator.add_argument("--replication-class", default=defaults.replication_class, env="CCOPY_REPLICATION_CLASS",
                          help="VolumeReplicationClass the groups name (the csi-addons manager needs one for the "
                          "volumes of a group)")
    operator.add_argument("--max-group-pvcs", type=whole_number, default=100, env="CCOPY_MAX_GROUP_PVCS",
                          help="the csi-addons manager's limit of PVCs per group")
    operator.add_argument("--rpo-seconds", type=seconds, default=30.0, env="CCOPY_RPO_SECONDS",
                          help="declared RPO; a namespace's consistentcopy.io/rpo-seconds wins. Keep it equal to the "
                          "replication classes' rpoSeconds: the backup site judges its copy by the class's")
    operator.add_argument("--status-interval", type=positive_seconds, default=10.0, env="CCOPY_STATUS_INTERVAL",
                          help="seconds between looks at a protected namespace's array state")
    # fmt: on
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
    )  # fmt: skip
    # fmt: off
    add_kubeconfig_argument(site)
    add_array_client_arguments(site)
    add_driver_name_argument(site)
    site.add_argument("--group-class", default=defaults.group_class, env="CCOPY_GROUP_CLASS",
                      help="VolumeGroupReplicationClass of the secondary groups")
    site.add_argument("--replication-class", default=defaults.replication_class, env="CCOPY_REPLICATION_CLASS",
                      help="VolumeReplicationClass the secondary groups name (the csi-addons manager needs one)")
    site.add_argument("--storage-class", default="", env="CCOPY_STORAGE_CLASS",
                      help="storageClassName of the backup PVs and PVCs; empty: none")
    site.add_argument("--interval", type=positive_seconds, default=2.0, env="CCOPY_INTERVAL",
                      help="seconds between two reads of the array's S-VOLs")
    site.add_argument("--status-interval", type=positive_seconds, default=10.0, env="CCOPY_STATUS_INTERVAL",
                      help="seconds between rewrites of a ConsistentCopy whose only change is an age; "
                           "other changes are written at once")
    # fmt: on
    site.set_defaults(run=run_backup_site)


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


def build_parser() -> Parser:
    from ccopy import ctl, demo, dr_cli

    parser = Parser(prog="ccopy", description="Consistent Copy storage, CSI and replication")
    parser.add_argument("--version", action="version", version=f"ccopy {__version__}")
    parser.add_argument("--log-level", type=log_level, default="INFO", env="CCOPY_LOG_LEVEL",
                        help="DEBUG, INFO, WARNING or ERROR")  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    add_array_parser(commands)
    add_csi_parser(commands)
    add_keeper_parser(commands)
    add_replication_parser(commands)
    add_namespace_operator_parser(commands)
    add_backup_site_parser(commands)
    ctl.add_parser(commands)
    dr_cli.add_parser(commands)
    demo.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Bad input ends in the parser (one line, status 1); a command's own failures are one line
    and status 1 too. A failure no command foresaw is a bug: it still ends in one line, and
    --log-level DEBUG logs where it happened, as a server maps what it did not foresee to
    INTERNAL."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(args.run(args) or 0)
    except Exception as exc:
        logging.getLogger("ccopy").debug("unforeseen", exc_info=True)
        print(f"error: unforeseen {type(exc).__name__}: {' '.join(str(exc).split())} (a bug; --log-level DEBUG "
              "shows where)", file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
