"""The Kubernetes credentials of the operator, the registrar and `ccopy dr`: a kubeconfig
when one is named (a file, or a list of them as $KUBECONFIG takes it, merged as kubectl
merges them), else the Pod's service account. Every way this fails is one line saying what
to give, not a traceback."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import InsecureRequestWarning

from ccopy_common.errors import StartupError

PROBE_TIMEOUT = 30.0  # seconds; a server that takes longer to say its version is not one to work with

NO_CREDENTIALS_IN_POD = (
    "no Kubernetes credentials: not in a Pod (no service account token) and no --kubeconfig, "
    "$CCOPY_KUBECONFIG or $KUBECONFIG"
)


def api_client(kubeconfig: str, context: str | None = None) -> client.ApiClient:
    """`context`: one of the kubeconfig's contexts (None: its current one)."""
    # A kubeconfig's insecure-skip-tls-verify is its owner's choice, which kubectl takes without a
    # word; urllib3 would warn on every request, several lines each.
    warnings.filterwarnings("ignore", category=InsecureRequestWarning)
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
        return one_try_each(config.new_client_from_config(config_file=kubeconfig, context=context or None))
    except Exception as exc:
        raise StartupError(f"kubeconfig {kubeconfig}: not a usable kubeconfig: {one_line(exc)}") from exc


def in_pod_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise StartupError(NO_CREDENTIALS_IN_POD) from exc
    return one_try_each(client.ApiClient())


def one_try_each(api: client.ApiClient) -> client.ApiClient:
    """Every request tried once, as kubectl does: urllib3 would retry three times (a server that
    never answers then costs four timeouts), and our callers retry on their own, saying so (the
    controllers' passes with backoff, ccopy dr's one error line). A new client's configuration
    also sets urllib3's logger back to WARNING; its retry warnings are said by no one."""
    api.configuration.retries = False
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    return api


def one_line(exc: object) -> str:
    return " ".join(str(exc).split())


def not_an_api_server(api: client.ApiClient, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why the server `api` points at is no Kubernetes API server, or None when it is one: its
    /version answers the API's JSON, or it refuses in the API's own Status JSON (credentials
    the server turns down are its own message to give, at the first real call). A web server
    answers a page, which the client would otherwise take for an object or a 404 (absence).
    Not answering at all raises urllib3's HTTPError, as every call does."""
    try:
        # (connect, read): the client takes a tuple of numbers or an int; a float alone it ignores
        answer = client.VersionApi(api).get_code(_preload_content=False, _request_timeout=(timeout, timeout))
        status, body, headers = answer.status, answer.data, answer.headers
    except ApiException as exc:
        status, body, headers = exc.status, exc.body, exc.headers
    try:
        said = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        said = None
    if isinstance(said, dict) and ("gitVersion" in said if status == 200 else said.get("kind") == "Status"):
        return None
    kind = (headers or {}).get("Content-Type") or "no content type"
    return f"{api.configuration.host} is not a Kubernetes API server: GET /version/ answered HTTP {status} ({kind})"
