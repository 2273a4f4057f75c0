"""Argument types for the subcommands: numbers with a range, so nan, inf and absurd values stop at parsing.

``type=bounded(float, 1, 600)`` parses a finite number in ``[1, 600]``; argparse turns a bad one into the
one-line error ``argument --block-seconds: must be a number from 1 to 600, not 'nan'`` (exit 2).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: the longest and shortest blocks `apollo restore` / `apollo evaluate` run the model on, in seconds. Below 1 s
#: the context each block carries on both sides (the receptive field, 0.54 s each way at 256x6) is most of the
#: work; above 10 minutes the activations of one block take several GiB.
BLOCK_SECONDS = (1.0, 600.0)
#: most channels in one stream or input (WAV and FLAC files hold at most 8 in practice; each is restored alone)
MAX_CHANNELS = 64
#: most CPU threads / parallel processes asked for
MAX_WORKERS = 256
#: the network precisions (`apollo_restore.precision.PRECISIONS`, spelled here so the CLI starts without torch)
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def bounded(kind: type, low: float | None = None, high: float | None = None) -> Callable[[str], float | int]:
    """An argparse ``type``: ``kind`` (int or float) parsed from the text, finite and within [low, high]."""
    word = "a whole number" if kind is int else "a number"
    if low is not None and high is not None:
        span = f" from {low:g} to {high:g}"
    elif low is not None:
        span = f" of at least {low:g}"
    else:
        span = f" of at most {high:g}" if high is not None else ""

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {word}{span}, not {text!r}") from None
        if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {word}{span}, not {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit 2), like every other error."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")
