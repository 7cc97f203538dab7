"""The Kubernetes credentials of the operator, the registrar and `ccopy dr`: a kubeconfig
when one is named (a file, or a list of them as $KUBECONFIG takes it, merged as kubectl
merges them), else the Pod's service account. Every way this fails is one line saying what
to give, not a traceback."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from kubernetes import client, config

from ccopy_common.errors import StartupError

NO_CREDENTIALS_IN_POD = (
    "no Kubernetes credentials: not in a Pod (no service account token) and no --kubeconfig, "
    "$CCOPY_KUBECONFIG or $KUBECONFIG"
)


def api_client(kubeconfig: str, context: str | None = None) -> client.ApiClient:
    """`context`: one of the kubeconfig's contexts (None: its current one)."""
    # urllib3 warns of every retry while the API server is down; our own line says it once (the
    # controllers' `watch_failed` with its backoff, ccopy dr's one error line).
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    if not kubeconfig:
        return in_pod_client()
    if not any(Path(path).is_file() for path in kubeconfig.split(os.pathsep) if path):
        if os.pathsep in kubeconfig:
            raise StartupError(f"none of the kubeconfig files {kubeconfig} exists")
        if Path(kubeconfig).is_dir():
            raise StartupError(f"kubeconfig {kubeconfig}: a directory, not a file")
        if Path(kubeconfig).exists():
            raise StartupError(f"kubeconfig {kubeconfig}: not a regular file")
        raise StartupError(f"kubeconfig {kubeconfig}: no such file")
    try:
        contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception as exc:  # the library raises anything on a file that is not a kubeconfig
        raise StartupError(f"kubeconfig {kubeconfig}: not a usable kubeconfig: {one_line(exc)}") from exc
    names = [found.get("name", "") for found in contexts or ()]
    if context and context not in names:
        raise StartupError(f"context {context} is not in kubeconfig {kubeconfig} (it has: {', '.join(names)})")
    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context or None)
    except Exception as exc:
        raise StartupError(f"kubeconfig {kubeconfig}: not a usable kubeconfig: {one_line(exc)}") from exc


def in_pod_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise StartupError(NO_CREDENTIALS_IN_POD) from exc
    return client.ApiClient()


def one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
