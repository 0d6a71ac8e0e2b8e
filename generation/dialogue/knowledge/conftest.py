"""The bundled MiniLM, loaded once for every test of this package (about 2 s)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# A shared 2-core machine: intra-op threads only add spin-waiting for MiniLM's small matmuls.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def encoder():
    from libs.encoders import TextEncoder

    return TextEncoder.from_pretrained()
