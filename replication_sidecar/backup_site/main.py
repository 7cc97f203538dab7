"""Start the backup-site registrar: this cluster's credentials and this site's array only."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ccopy_common.array_client import ArrayClient
from ccopy_common.rpc import TlsFiles
from replication_sidecar.backup_site.kube import BackupCluster
from replication_sidecar.backup_site.model import RegistrarConfig
from replication_sidecar.backup_site.runner import Registrar
from replication_sidecar.controller_process import exit_now, run_until_signalled
from replication_sidecar.kube_client import api_client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrarProcess:
    """The one typed configuration of a registrar process (parsed in `ccopy backup-site`)."""

    array: str
    tls: TlsFiles = field(default_factory=TlsFiles)
    kubeconfig: str = ""
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    interval: float = 2.0
    status_interval: float = 10.0


def serve(settings: RegistrarProcess) -> None:
    api = api_client(settings.kubeconfig)
    array = ArrayClient(settings.array, settings.tls)
    registrar = Registrar(
        api, BackupCluster(api, array), settings.registrar, settings.interval, settings.status_interval
    )
    run_until_signalled(registrar.run, registrar.stop, "ready backup-site", "register")
    array.close()
    log.info("registrar_stopped")
    exit_now()
