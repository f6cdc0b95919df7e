"""What every stage script shares: argv parsing, and reading only the params it declares.

Each stage module names the parameters it reads in ``PARAMS``, the list its ``params:`` in
dvc.yaml must equal (a test checks). :class:`StageParams` refuses a section the stage did not
declare, so a parameter cannot influence a stage without DVC tracking it. The ``runtime``
section is the exception on purpose: it cannot change a result, so no stage tracks it.
"""

from __future__ import annotations

import argparse
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ekagen.config import RuntimeConfig, load_params, section

T = TypeVar("T")


class StageParams:
    """The params file as one stage may read it."""

    def __init__(self, params: dict[str, Any], declared: Sequence[str], path: str) -> None:
        self.raw, self.declared, self.path = params, tuple(declared), path
        seed = params.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{path}: seed must be an integer, got {seed!r}")
        self.seed = seed

    def _check(self, name: str) -> None:
        if not any(d == name or d.startswith(name + ".") or name.startswith(d + ".")
                   for d in self.declared):
            raise RuntimeError(f"this stage reads params {name!r} but declares only "
                               f"{list(self.declared)} (PARAMS and dvc.yaml)")

    def section(self, name: str, cls: type[T]) -> T:
        self._check(name)
        return section(self.raw, name, cls)

    def value(self, dotted: str) -> Any:
        self._check(dotted)
        node: Any = self.raw
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"{self.path}: {dotted} missing")
            node = node[part]
        return node

    @property
    def runtime(self) -> RuntimeConfig:
        return section(self.raw, "runtime", RuntimeConfig)


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="parameters file")
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
          declared: Sequence[str]) -> tuple[argparse.Namespace, StageParams]:
    """Parse argv and read the params file; seeds Python and NumPy from ``seed``."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    args = parser.parse_args(argv)
    params = StageParams(load_params(args.params), declared, str(Path(args.params)))
    random.seed(params.seed)
    np.random.seed(params.seed)
    return args, params
