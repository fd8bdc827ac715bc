"""Serving the dashboard: check where it may listen, open the database, bind, run uvicorn.

The socket is bound here rather than by uvicorn, so that a port in use or an address this machine
lacks is one clear line (uvicorn would log it and exit), and so the URL printed is the one bound.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import uvicorn

from kisystem.config import OptimizationConfig
from kisystem.errors import KisystemError, describe_os_error
from kisystem.models.inventory import Inventory
from kisystem.web.app import create_app
from kisystem.web.db import DashboardDb
from kisystem.web.security import LOOPBACK_HOSTS, check_bind, is_loopback
from kisystem.web.setup import configure

SHUTDOWN_GRACE_S = 2  # open /events streams are closed after this when the server stops


def serve_dashboard(db_path: Path, host: str, port: int, token: str | None,
                    echo: Callable[[str], None] = print, *, inventory: Inventory | None = None,
                    settings: OptimizationConfig | None = None, home: Path | None = None) -> None:
    """Serve until interrupted; refuses a non-loopback ``host`` without ``token`` before opening anything.

    ``inventory``, ``settings`` and ``home``: what the pages probe, rank and approve plans with
    (:mod:`kisystem.web.setup`).
    """
    check_bind(host, token)
    db = DashboardDb.open(db_path)
    try:
        sock = bind(host, port)
        with sock:
            allowed = LOOPBACK_HOSTS if is_loopback(host) else None
            app = create_app(db, token=token, allowed_hosts=allowed)
            configure(app, config=settings, inventory=inventory, home=home)
            config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                    timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
            echo(f"kisystem dashboard on {url(sock)} (learning database {db_path}, read-only); Ctrl-C stops")
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        db.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (IPv6 where ``host`` is one)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise KisystemError(f"cannot listen on {host}:{port}: {describe_os_error(err)}") from err
    except (OverflowError, socket.gaierror) as err:  # pragma: no cover - click checks the port's range
        sock.close()
        raise KisystemError(f"cannot listen on {host}:{port}: {err}") from err
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
