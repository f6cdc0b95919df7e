"""Named sets of parameter changes (``presets/<name>.yaml``): the paper's configuration as one
thing a user applies, ``dvc exp run $(ekagen preset paper)``.

A preset maps dotted keys of params.yaml to values; ``base: <name>`` starts from another
preset. Every key must exist in the schema, so a preset cannot drift from params.yaml
unnoticed (a test applies each one and builds its models).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

FOLDER = Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's changes, ``base`` resolved, as ``{"section.key": value}``."""
    path = FOLDER / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"no preset {name!r}; presets: {', '.join(names())}")
    changes = yaml.safe_load(path.read_text()) or {}
    if not isinstance(changes, dict):
        raise ValueError(f"{path}: expected a mapping of dotted keys to values")
    base = changes.pop("base", None)
    return {**(load_preset(base) if base else {}), **changes}


def apply_preset(params: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with the preset's values set; unknown keys are errors."""
    out = copy.deepcopy(params)
    for dotted, value in changes.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"preset key {dotted!r}: params has no section {part!r}")
            node = node[part]
        if leaf not in node:
            raise ValueError(f"preset key {dotted!r}: params has no key {leaf!r}")
        node[leaf] = value
    return out


def set_arguments(changes: dict[str, Any]) -> list[str]:
    """``-S key=value`` arguments for ``dvc exp run``, values in YAML flow form."""
    args = []
    for dotted, value in changes.items():
        text = json.dumps(value) if isinstance(value, list) else yaml.safe_dump(
            value, default_flow_style=True).strip().removesuffix("...").strip()
        args += ["-S", f"{dotted}={text}"]
    return args
