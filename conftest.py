"""Test-wide settings for `make pytest` (Bazel sets the same through `--test_env` in .bazelrc).

Tiny models on a 2-core machine run fastest on one intra-op thread: more threads only spin-wait, and Bazel
runs two test targets at once. Set before any test module imports torch.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
