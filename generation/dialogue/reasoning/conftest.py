"""The bundled MiniLM sentence encoder, loaded once (about 2 s) and shared by the reasoning tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def text_encoder():
    from libs.encoders import TextEncoder

    return TextEncoder.from_pretrained()
