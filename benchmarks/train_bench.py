"""Training throughput: JAX PPO vs SB3 PPO on the same env id; N agents at once (vmap over seeds).

    python benchmarks/train_bench.py [--env-id pedagogym/PrereqBKT-v0] [--agents 1 8 64] [--json]

Same figures as ``pedagogym bench train``; prints JSON. Never a timed assert.
"""
from __future__ import annotations

import argparse
import sys

from pedagogym.agents.cli import add_bench_train_arguments, bench_train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", default="pedagogym/PrereqBKT-v0")
    p.add_argument("--json", action="store_true", help="compact one-line JSON")
    add_bench_train_arguments(p)
    return bench_train(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
