"""The Kubernetes credentials of the operator and the registrar: a kubeconfig file when one
is named, else the Pod's service account. Outside a Pod without a kubeconfig there are
none, which is a one-line error, not a traceback."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client, config

from ccopy.errors import StartupError


def api_client(kubeconfig: str, context: str | None = None) -> client.ApiClient:
    """`context`: one of the kubeconfig's contexts (None: its current one)."""
    if kubeconfig:
        if not Path(kubeconfig).is_file():
            raise StartupError(f"kubeconfig {kubeconfig}: no such file")
        try:
            return config.new_client_from_config(config_file=kubeconfig, context=context or None)
        except Exception as exc:  # the library raises anything on a file that is not a kubeconfig
            why = " ".join(str(exc).split())
            raise StartupError(f"kubeconfig {kubeconfig}: not a usable kubeconfig: {why}") from exc
    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise StartupError(
            "no Kubernetes credentials: not in a Pod (no service account token) and no --kubeconfig, "
            "$CCOPY_KUBECONFIG or $KUBECONFIG"
        ) from exc
    return client.ApiClient()
