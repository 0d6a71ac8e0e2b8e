from __future__ import annotations

import threading
import time

import pytest

from generation.dialogue.backends.base import GenerationParams
from generation.dialogue.backends.openai_http import (
    BackendHTTPError,
    BackendUnavailable,
    OpenAICompatibleLM,
    completions_url,
)
from generation.dialogue.backends.scripted import ScriptedLM
from generation.dialogue.backends.testing import openai_completions_server


def test_completions_url_accepts_a_base_with_or_without_v1():
    assert completions_url("http://h:8000") == "http://h:8000/v1/completions"
    assert completions_url("http://h:8000/v1/") == "http://h:8000/v1/completions"
    assert completions_url("http://h/openai/v1") == "http://h/openai/v1/completions"
    with pytest.raises(ValueError, match="http"):
        OpenAICompatibleLM("ftp://h/v1", "m")


def test_sends_the_completion_request_the_api_defines():
    with openai_completions_server(ScriptedLM(["Blue."]), model="gemma") as server:
        lm = OpenAICompatibleLM(server.base_url.removesuffix("/v1"), "gemma", api_key="sk-test")
        params = GenerationParams(max_new_tokens=5, temperature=0.5, top_p=0.9, stop=("\n",), seed=3)
        assert lm.complete("Q: colour?\nA:", params) == "Blue."
    (body,) = server.requests
    assert body == {
        "model": "gemma",
        "prompt": "Q: colour?\nA:",
        "max_tokens": 5,
        "temperature": 0.5,
        "top_p": 0.9,
        "stream": True,
        "stop": ["\n"],
        "seed": 3,
    }
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


def test_an_http_error_names_the_url_and_status():
    with openai_completions_server(ScriptedLM(["x"]), model="served") as server:
        lm = OpenAICompatibleLM(server.base_url, "missing")
        with pytest.raises(BackendHTTPError) as caught:
            lm.complete("hi", GenerationParams())
    assert caught.value.status == 404
    assert caught.value.url == f"{server.base_url}/completions"
    assert (
        server.base_url in str(caught.value) and "404" in str(caught.value) and "missing" in str(caught.value)
    )


def test_an_unreachable_server_names_the_url():
    import socket

    with socket.socket() as sock:  # a port nobody listens on once the socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    lm = OpenAICompatibleLM(f"http://127.0.0.1:{port}/v1", "m", timeout=2)
    with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{port}/v1/completions"):
        lm.complete("hi", GenerationParams())


def test_cancel_closes_the_connection_and_the_server_stops_streaming():
    slow = ScriptedLM(lambda prompt: " ".join(f"w{i}" for i in range(200)), delay=0.01)
    with openai_completions_server(slow, model="m") as server:
        lm = OpenAICompatibleLM(server.base_url, "m", timeout=10)
        cancel = threading.Event()
        received = []
        for piece in lm.stream("go", GenerationParams(max_new_tokens=200), cancel):
            received.append(piece)
            if len(received) == 3:
                cancel.set()
        deadline = time.monotonic() + 5
        while server.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(received) == 3
    assert server.disconnects == 1


def test_a_stream_that_breaks_off_is_an_error_not_a_short_reply():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def half_answer():
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 1000\r\n\r\n"
            b'data: {"choices": [{"text": "Hel"}]}\n\n'
        )
        connection.close()

    thread = threading.Thread(target=half_answer, daemon=True)
    thread.start()
    lm = OpenAICompatibleLM(f"http://127.0.0.1:{listener.getsockname()[1]}", "m", timeout=5)
    with pytest.raises(BackendUnavailable, match="broke off"):
        lm.complete("hi", GenerationParams())
    thread.join(5)
    listener.close()
