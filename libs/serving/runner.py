"""Running a server as a process: until SIGTERM or SIGINT, then a graceful shutdown.

Kubernetes stops a pod with SIGTERM and kills it `terminationGracePeriodSeconds` later; `serve` turns the
signal into `KmonoServer.stop(config.grace_seconds)` (health NOT_SERVING first, then draining), so keep the
pod's grace period above `grace_seconds`. A service's `main` is typically:

    config = ServerConfig.from_args(parser.parse_args())
    sys.exit(run(config, [registration], on_startup=[...], on_shutdown=[...]))
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from libs.serving.config import ServerConfig
from libs.serving.server import Hook, ServiceRegistration, build_server

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(
    config: ServerConfig,
    registrations: Sequence[ServiceRegistration],
    *,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
) -> None:
    """Build and start the server, wait for SIGTERM/SIGINT, then shut down within `config.grace_seconds`."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        if stop_requested.is_set():
            logger.warning("%s received again; already shutting down", signum.name)
            return
        logger.info("%s received; shutting down within %.1fs", signum.name, config.grace_seconds)
        stop_requested.set()

    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        server = build_server(config, registrations, on_startup=on_startup, on_shutdown=on_shutdown)
        starting = asyncio.ensure_future(server.start())
        stopping = asyncio.ensure_future(stop_requested.wait())
        await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # signalled during a slow startup (e.g. model loading): abandon it
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return
        stopping.cancel()
        starting.result()  # re-raise a failed start
        await stop_requested.wait()
        await server.stop(config.grace_seconds)
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def run(
    config: ServerConfig,
    registrations: Sequence[ServiceRegistration],
    *,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
) -> int:
    """Process entry point: configure logging, serve until signalled; returns the exit status (0)."""
    configure_logging(config.log_level)
    asyncio.run(serve(config, registrations, on_startup=on_startup, on_shutdown=on_shutdown))
    logger.info("exiting")
    return 0


def configure_logging(level: str) -> None:
    """Root logging to stderr at `level`; a no-op for handlers if the process already configured logging."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    logging.getLogger().setLevel(level.upper())
