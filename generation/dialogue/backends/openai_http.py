"""A model behind an OpenAI-compatible HTTP server: vLLM, SGLang, llama.cpp server, Ollama, any `/v1/completions`.

    lm = OpenAICompatibleLM("http://127.0.0.1:8000/v1", "google/gemma-3-270m")

It posts to `/v1/completions` (the completion API, since our prompts are completion-style few-shot text) with
`stream: true` and reads the server-sent events (`data: {...}` lines, one text delta each, `data: [DONE]` last).
`base_url` may end in `/v1` (as the OpenAI clients write it) or not. The stop strings go to the server too (so
it stops generating early); `StopScanner` still applies them, since servers differ in how they cut.

Standard library only (`http.client`): no dependency to pin, and `close()` on the connection is a real socket
close, which is how cancel stops the server's generation (vLLM and llama.cpp server abort a request whose client
went away). Every failure names the URL: `BackendHTTPError` (a non-200 status, with the server's message),
`BackendUnavailable` (connection refused, timed out, or a stream that ends before its `[DONE]`).
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from generation.dialogue.backends.base import GenerationParams, LanguageModel, StopScanner

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_CONTEXT = 4096
_ERROR_BODY_CHARS = 500


class BackendUnavailable(ConnectionError):
    """The server could not be reached, did not answer in time, or broke the stream off."""


class BackendHTTPError(RuntimeError):
    """The server answered with an HTTP error status."""

    def __init__(self, url: str, status: int, message: str) -> None:
        super().__init__(f"POST {url} answered HTTP {status}: {message}")
        self.url = url
        self.status = status


def completions_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return f"{base}/completions" if base.endswith("/v1") else f"{base}/v1/completions"


class OpenAICompatibleLM(LanguageModel):
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        context_window: int = DEFAULT_CONTEXT,
    ) -> None:
        self.url = completions_url(base_url)
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.parts = parts
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.name = model
        self.context_window = context_window

    def _connect(self) -> http.client.HTTPConnection:
        connection_class = (
            http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
        )
        return connection_class(self.parts.hostname, self.parts.port, timeout=self.timeout)

    def _body(self, prompt: str, params: GenerationParams) -> bytes:
        body: dict[str, object] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        return json.dumps(body).encode("utf-8")

    def _open(
        self, prompt: str, params: GenerationParams
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        path = self.parts.path + (f"?{self.parts.query}" if self.parts.query else "")
        connection = self._connect()
        try:
            connection.request("POST", path, body=self._body(prompt, params), headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise BackendUnavailable(f"POST {self.url} failed: {error}") from error
        if response.status != 200:
            message = response.read(_ERROR_BODY_CHARS).decode("utf-8", "replace").strip()
            connection.close()
            raise BackendHTTPError(self.url, response.status, message or response.reason)
        return connection, response

    def _deltas(self, response: http.client.HTTPResponse) -> Iterator[str]:
        """The text of each server-sent event, until `[DONE]` or the end of the stream."""
        try:
            for raw in response:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue  # blank separators, comments (": ping"), event names
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    raise BackendHTTPError(self.url, 200, json.dumps(event["error"])[:_ERROR_BODY_CHARS])
                for choice in event.get("choices", []):
                    if choice.get("text"):
                        yield choice["text"]
        except (OSError, http.client.HTTPException) as error:
            raise BackendUnavailable(f"stream from {self.url} broke off: {error}") from error
        # Every OpenAI-compatible server ends a stream with [DONE]; without it the reply is cut, not finished.
        raise BackendUnavailable(f"stream from {self.url} broke off before [DONE]")

    def stream(
        self, prompt: str, params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        connection, response = self._open(prompt, params)
        scanner = StopScanner(params.stop)
        try:
            for count, delta in enumerate(self._deltas(response)):
                if count >= params.max_new_tokens or (cancel is not None and cancel.is_set()):
                    return
                out, stopped = scanner.push(delta)
                if out:
                    yield out
                if stopped:
                    return
            if tail := scanner.flush():
                yield tail
        finally:
            connection.close()  # on cancel or an abandoned iterator too: the server sees the client leave
