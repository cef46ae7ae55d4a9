"""Running the service: the listening socket, uvicorn with the service's connection limits, the log lines.

The socket is bound before the models load, so that a port already in use is one line naming it at once
(:class:`ListenError`), not uvicorn's raw ``[Errno 98]`` after the models loaded.
"""
from __future__ import annotations

import copy
import errno
import ipaddress
import logging
import socket
from typing import Callable

from fashion2stage.app.serve.limits import Limits

log = logging.getLogger("fashion2stage.app.serve")


class ListenError(RuntimeError):
    """The server cannot listen where it was asked to (one line naming the address and the cause)."""


def exposure_warning(host: str) -> str | None:
    """The warning for a ``host`` that other machines may reach, or None for a loopback address."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if loopback:
        return None
    return (f"listening on {host}, reachable from other machines: there is no authentication and no TLS; anyone who "
            "can reach the port can use the model. Put it behind a reverse proxy that adds both (docs/serve.md)")


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (as uvicorn binds it), or ListenError saying why not in one line."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ListenError(f"port {port} on {host} is already in use (another server is listening there): "
                              "stop it or choose another with --port") from None
        if e.errno == errno.EACCES:
            raise ListenError(f"cannot listen on {host}:{port}: permission denied (ports below 1024 need "
                              "privileges): choose another with --port") from None
        raise ListenError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def log_config() -> dict:
    """uvicorn's logging set-up with the service's own lines (``fashion2stage.*``) printed the same way."""
    from uvicorn.config import LOGGING_CONFIG  # noqa: PLC0415

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["fashion2stage"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def build_server(app, limits: Limits, **config):
    """A uvicorn server for ``app`` (from create_app) with the service's read timeout, connection cap and shutdown
    bound (fashion2stage/app/serve/connections.py). ``config``: more uvicorn.Config arguments."""
    import uvicorn  # noqa: PLC0415

    from fashion2stage.app.serve.connections import protocol_class  # noqa: PLC0415

    service = app.state.service
    # the protocol drops open requests at shutdown_timeout_s; uvicorn's own bound (which cancels the handlers, with a
    # traceback each) stays behind it as a backstop
    return uvicorn.Server(uvicorn.Config(
        app, http=protocol_class(limits, service.batcher.retry_after), timeout_keep_alive=5,
        timeout_graceful_shutdown=limits.shutdown_timeout_s + 2, **config))


def serve(load_reader: Callable[[], object], host: str = "127.0.0.1", port: int = 8000,
          limits: Limits = Limits()) -> None:
    """Run the service until interrupted (SIGINT, SIGTERM). Raises ListenError when it cannot listen and
    RuntimeError when the models cannot be loaded."""
    import logging.config  # noqa: PLC0415

    from fashion2stage.app.serve.app import create_app  # noqa: PLC0415

    logging.config.dictConfig(log_config())
    warning = exposure_warning(host)
    if warning:
        log.warning(warning)
    sock = bind(host, port)
    server = None

    def stop() -> None:
        server.should_exit = True

    app = create_app(load_reader, limits, on_fatal=stop)
    server = build_server(app, limits, log_config=None)
    shown = f"[{host}]" if ":" in host else host
    log.info(f"serving on http://{shown}:{port} (the page: /, the API: /v1/predict, /docs)")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if app.state.service.error:
        raise RuntimeError(app.state.service.error)
