"""Which Host headers a tracking server accepts, and the URL a person opens in the browser.

MLflow 3.5+ answers 403 ("Invalid Host header") to a request whose Host it was not told about,
while ``/health`` still answers 200 (its DNS-rebinding protection, ``--allowed-hosts``). By default
it accepts loopback and private addresses on any port. A browser that reaches the server under
another name (a forwarded port in GitHub Codespaces, a reverse proxy's public name) needs that
name allowed, with and without its port. ``--allowed-hosts`` *replaces* MLflow's defaults, so the
helpers pass the defaults again with every extra name.

Under a Jupyter server with jupyter-server-proxy (JupyterHub, Binder, or a JupyterLab kernel), the
browser reaches a server's port through Jupyter itself, at ``<base url>proxy/<port>/``; the MLflow
UI works there, since its page loads its assets by relative paths.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable
from pathlib import Path

#: Extra host names for the servers the helpers start (comma-separated), e.g.
#: ``mlflow.example.com`` or ``*.example.com``; each is allowed with and without a port.
ALLOWED_HOSTS_VAR = "MLFLOW_SERIES_ALLOWED_HOSTS"


def codespace_host(port: int) -> str | None:
    """The forwarded host name of a port in GitHub Codespaces, or None outside a codespace.

    Built from the variables a codespace sets: ``CODESPACES=true``, ``CODESPACE_NAME`` and
    ``GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN`` (``<name>-<port>.<domain>``, as GitHub documents
    for forwarded ports).
    """
    name = os.environ.get("CODESPACE_NAME")
    domain = os.environ.get("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN")
    if os.environ.get("CODESPACES") != "true" or not name or not domain:
        return None
    return f"{name}-{port}.{domain}"


def extra_hosts(port: int, given: Iterable[str] = ()) -> list[str]:
    """The host names to allow beyond MLflow's defaults: given ones, the variable's, a codespace's.

    Raises:
        ValueError: a name holds a scheme, a path or a space (give ``mlflow.example.com``, not
            ``https://mlflow.example.com/``).
    """
    names = [*given, *os.environ.get(ALLOWED_HOSTS_VAR, "").split(",")]
    names.append(codespace_host(port) or "")
    hosts: list[str] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        if "/" in name or " " in name:
            raise ValueError(
                f"allowed host {name!r}: give a bare host name such as mlflow.example.com "
                f"(no scheme, path or space), in the argument or in {ALLOWED_HOSTS_VAR}."
            )
        if name not in hosts:
            hosts.append(name)
    return hosts


def allowed_hosts_arg(extra: list[str]) -> list[str]:
    """The ``--allowed-hosts`` option for `mlflow server`: [] (MLflow's defaults) or the
    defaults plus each extra name with and without a port (``name`` and ``name:*``)."""
    if not extra:
        return []
    from mlflow.server.security_utils import get_default_allowed_hosts

    patterns = list(get_default_allowed_hosts())
    for name in extra:
        for pattern in (name, name if ":" in name else f"{name}:*"):
            if pattern not in patterns:
                patterns.append(pattern)
    return ["--allowed-hosts", ",".join(patterns)]


def jupyter_base_url() -> str | None:
    """The base URL of the Jupyter server this process runs under, when it proxies ports, or None.

    It proxies ports when jupyter-server-proxy is installed (it enables itself). Two cases count:

    - a JupyterHub (Binder too): its single-user server sets ``JUPYTERHUB_SERVICE_PREFIX``
      (``/user/<name>/``) for every kernel and terminal; the public URL when the hub gives it
      (``JUPYTERHUB_PUBLIC_URL``), else that path, to open on the hub's address;
    - a kernel of a plain Jupyter server (JupyterLab): ``JPY_PARENT_PID``, which jupyter_client
      sets for every kernel, names that server's process, whose runtime file ``jpserver-<pid>.json``
      holds its URL. Kernels started by anything else (nbclient, nbval) keep the plain URL.
    """
    if importlib.util.find_spec("jupyter_server_proxy") is None:
        return None
    if prefix := os.environ.get("JUPYTERHUB_SERVICE_PREFIX"):
        public = os.environ.get("JUPYTERHUB_PUBLIC_URL", "")
        base = public if public.startswith(("http://", "https://")) else prefix
        return base if base.endswith("/") else base + "/"
    parent = os.environ.get("JPY_PARENT_PID", "")
    if not parent.isdigit():
        return None
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        info = json.loads((Path(jupyter_runtime_dir()) / f"jpserver-{parent}.json").read_text())
    except (ImportError, OSError, ValueError):
        return None
    url = info.get("url") if isinstance(info, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    if not _is_jupyter(int(parent)):  # a stale file of a killed server, its pid reused since
        return None
    return url if url.endswith("/") else url + "/"


def _is_jupyter(pid: int) -> bool:
    """True if the process `pid` runs and is a Jupyter server: a word of its command line is
    `jupyter`, `jupyter-lab`, `jupyterhub-singleuser`... (a folder's name does not count)."""
    import psutil

    try:
        return any(Path(part).name.startswith("jupyter") for part in psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def proxy_url(port: int) -> str | None:
    """The URL of a port through the Jupyter server's proxy (``<base url>proxy/<port>/``), or None
    outside such a server."""
    base = jupyter_base_url()
    return f"{base}proxy/{port}/" if base else None


def browser_url(url: str, port: int, proxied: bool = True) -> str:
    """The URL a person opens: the codespace's forwarded URL there, the Jupyter server's proxy URL
    under JupyterHub, Binder or a JupyterLab kernel (when `proxied`), else the server's own."""
    host = codespace_host(port)
    if host:
        return f"https://{host}"
    return (proxied and proxy_url(port)) or url
