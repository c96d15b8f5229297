"""argparse types shared by the command-line modules (``pedagogym.cli`` and each feature's
``cli``): each turns one command-line string into a typed value or an
``argparse.ArgumentTypeError`` that names what was expected."""
from __future__ import annotations

import argparse
import json
import math
from typing import Any


def setting(text: str) -> tuple[str, Any]:
    """An argparse type: ``KEY=VALUE``, the value read as JSON where it parses (numbers,
    ``true``/``false``, quoted strings) and kept as text otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)  # numbers, true/false, "strings"
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def int_in(lo: int, hi: int | None = None):
    """An argparse type: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"expected an integer from {lo}{f' to {hi}' if hi is not None else ' up'}, "
                                             f"got {v}")
        return v
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return v
