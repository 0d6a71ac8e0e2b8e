"""argparse flag types shared by every `kmono` command and service config (bad values are one-line usage errors).

Service flags take their defaults from KMONO_* environment variables.

Give a typed flag the variable's raw string as its default (`default=os.environ.get(NAME, "100")`): argparse
parses a string default with the flag's `type`, so a bad KMONO_* value is a one-line usage error that the
same check as the flag's rejects, not a traceback while the parser is built.
"""

import argparse
import os

DTYPES = ("auto", "bfloat16", "float16", "float32")
"""`--dtype` choices of every model-loading command; auto: bfloat16 on CUDA (the published models' dtype), else
float32."""


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value
