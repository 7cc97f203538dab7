"""Start the namespace operator: its Kubernetes credentials (a kubeconfig, or the Pod's
service account), this site's array, the watches; stop on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ccopy_common.array_client import ArrayClient
from ccopy_common.rpc import TlsFiles
from replication_sidecar.controller_process import exit_now, run_until_signalled
from replication_sidecar.kube_client import api_client
from replication_sidecar.namespace_operator.kube import Cluster
from replication_sidecar.namespace_operator.model import OperatorConfig
from replication_sidecar.namespace_operator.runner import Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorProcess:
    """The one typed configuration of an operator process (parsed in `ccopy namespace-operator`)."""

    array: str  # this site's array API HOST:PORT
    tls: TlsFiles = field(default_factory=TlsFiles)
    kubeconfig: str = ""  # empty: in-cluster (the Pod's service account)
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    status_interval: float = 10.0


def serve(settings: OperatorProcess) -> None:
    api = api_client(settings.kubeconfig)
    array = ArrayClient(settings.array, settings.tls)
    runner = Runner(api, Cluster(api, array, settings.operator), settings.operator, settings.status_interval)
    run_until_signalled(runner.run, runner.stop, "ready namespace-operator", "reconcile")
    array.close()
    log.info("operator_stopped")
    exit_now()
