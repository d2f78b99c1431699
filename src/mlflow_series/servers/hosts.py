"""Which Host headers a tracking server accepts, and the URL a person opens in the browser.

MLflow 3.5+ answers 403 ("Invalid Host header") to a request whose Host it was not told about,
while ``/health`` still answers 200 (its DNS-rebinding protection, ``--allowed-hosts``). By default
it accepts loopback and private addresses on any port. A browser that reaches the server under
another name (a forwarded port in GitHub Codespaces, a reverse proxy's public name) needs that
name allowed, with and without its port. ``--allowed-hosts`` *replaces* MLflow's defaults, so the
helpers pass the defaults again with every extra name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

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


def browser_url(url: str, port: int) -> str:
    """The URL a person opens: the codespace's forwarded URL there, else the server's own."""
    host = codespace_host(port)
    return f"https://{host}" if host else url
