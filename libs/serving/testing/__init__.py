"""Test helpers for code built on libs.serving: a bytes echo service and a loopback server fixture."""

from libs.serving.testing.echo import ECHO_SERVICE, EchoService, echo_registration
from libs.serving.testing.loopback import loopback_server, run_async, status_of

__all__ = ["ECHO_SERVICE", "EchoService", "echo_registration", "loopback_server", "run_async", "status_of"]
