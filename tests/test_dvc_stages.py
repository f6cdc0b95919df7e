"""dvc.yaml says exactly what each stage reads: the params its script declares, and the code
files its imports reach (so an edit to one module reruns only the stages that import it)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

STAGES = ["prepare", "embed", "pks", "rks", "classifier", "adm", "train", "evaluate"]


def module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in ("ekagen", "stages"):
        return None
    for candidate in (REPO.joinpath(*parts).with_suffix(".py"),
                      REPO.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, package: str) -> set[str]:
    """Every project module ``path`` imports, at top level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + [node.module])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if module_file(m)}


def code_closure(script: str) -> set[str]:
    """Repository-relative files reachable from ``stages/<script>.py`` by imports; importing
    ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``."""
    todo, seen = [f"stages.{script}"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        path = module_file(name)
        if path is not None:
            package = name if path.name == "__init__.py" else ".".join(parts[:-1])
            todo.extend(imported_modules(path, package))
    files = {module_file(n) for n in seen}
    return {p.relative_to(REPO).as_posix() for p in files if p is not None}


def stage_spec(name: str) -> dict:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return stages[name]["do"] if "foreach" in stages[name] else stages[name]


@pytest.mark.parametrize("name", STAGES)
def test_stage_code_deps_are_exactly_its_imports(name):
    declared = {d for d in stage_spec(name)["deps"]
                if isinstance(d, str) and d.endswith(".py")}
    assert declared == code_closure(name), (
        "dvc.yaml's code deps differ from the imports; rewrite them with "
        "`python -m tests.test_dvc_stages`")


@pytest.mark.parametrize("name", STAGES)
def test_stage_params_are_what_its_script_declares(name):
    module = importlib.import_module(f"stages.{name}")
    assert list(stage_spec(name)["params"]) == list(module.PARAMS)


def test_no_stage_tracks_runtime_settings():
    for name in STAGES:
        assert not any(str(p).split(".")[0] == "runtime" for p in stage_spec(name)["params"])


def test_a_stage_cannot_read_a_section_it_does_not_declare(tmp_path):
    from ekagen.config import TrainConfig
    from stages.common import StageParams

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    readable = StageParams(params, ("seed", "data.max_length"), "params.yaml")
    assert readable.value("data.max_length") == params["data"]["max_length"]
    with pytest.raises(RuntimeError, match="declares only"):
        readable.section("train", TrainConfig)
    with pytest.raises(RuntimeError, match="declares only"):
        readable.value("data.image_size")
    assert readable.runtime.device == params["runtime"]["device"]  # never tracked, always read


def rewrite_dvc_yaml() -> None:
    """Set every stage's code deps and params in dvc.yaml from its imports and ``PARAMS``."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, stage in spec["stages"].items():
        body = stage["do"] if "foreach" in stage else stage
        data = [d for d in body["deps"] if not d.startswith(("ekagen/", "stages/"))]
        body["deps"] = data + sorted(code_closure(name))
        body["params"] = list(importlib.import_module(f"stages.{name}").PARAMS)
    (REPO / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, width=100))


if __name__ == "__main__":
    rewrite_dvc_yaml()
