"""What every stage script shares: argv parsing for the params file and a seed."""

from __future__ import annotations

import argparse
import os
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from ekagen.config import load_params


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="parameters file")
    return parser


def parse(parser: argparse.ArgumentParser,
          argv: Sequence[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Parse argv and read the params file; seeds Python, NumPy and torch from ``seed``."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    seed = params.get("seed", 42)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{args.params}: seed must be an integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    return args, params
