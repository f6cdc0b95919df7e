"""The README's commands as a user types them: a fresh shell after ``make repro``.

The stage commands in ``dvc.yaml`` run ``python -m stages.<name>``, so ``dvc`` and the stages
find the project's interpreter only through ``PATH``. The README tells the user to activate
``.venv`` once per shell; the slow test takes that line and one experiment line from the README
itself, so it fails when the README drifts from what works.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_pipeline, tiny_params

README = REPO / "README.md"
EXPERIMENT = "dvc exp run -S model.knowledge=false"


def _fenced_lines(text: str) -> list[str]:
    """Lines inside the README's ``` code blocks."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    return lines


def readme_activation(text: str) -> str:
    found = re.findall(r"`(source [^`]*/bin/activate)`", text)
    assert found, "README.md shows no `source .../bin/activate` line"
    return found[0]


def readme_line(text: str, command: str) -> str:
    """The one README code line whose command (comment aside) is ``command``, verbatim."""
    found = [line for line in _fenced_lines(text) if line.split("#")[0].strip() == command]
    assert len(found) == 1, f"README.md shows {command!r} {len(found)} times, expected once"
    return found[0]


def test_readme_activates_the_venv_before_its_first_dvc_or_ekagen_command():
    text = README.read_text()
    activation = readme_activation(text)
    assert activation == "source .venv/bin/activate"
    first = next(line for line in _fenced_lines(text) if re.match(r"(dvc|ekagen) ", line))
    assert text.index(activation) < text.index(first)
    readme_line(text, EXPERIMENT)


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _exp_rows(node) -> list[dict]:
    """Every revision's ``data`` (params and metrics) in ``dvc exp show --json``."""
    rows = []
    if isinstance(node, dict):
        data = node.get("data")
        if isinstance(data, dict) and "params" in data:
            rows.append(data)
        for value in node.values():
            rows.extend(_exp_rows(value))
    elif isinstance(node, list):
        for value in node:
            rows.extend(_exp_rows(value))
    return rows


@pytest.mark.slow
def test_readme_experiment_line_runs_in_a_fresh_shell(tmp_path):
    venv = Path(sys.prefix)
    if sys.prefix == sys.base_prefix or not (venv / "bin/activate").is_file():
        pytest.skip("the tests do not run inside a virtualenv")
    text = README.read_text()
    activation, experiment = readme_activation(text), readme_line(text, EXPERIMENT)

    root = copy_pipeline(tmp_path / "repo", tiny_params())
    (root / ".venv").symlink_to(venv, target_is_directory=True)

    # `make repro`: the venv's bin first on PATH, as the Makefile exports it
    bins = {venv / "bin", Path(sys.executable).parent}
    made = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    made.pop("MLFLOW_TRACKING_URI", None)  # the stages find <repo>/mlflow.db on their own
    _run(["git", "init", "-q"], root, made)
    _run(["git", "config", "user.name", "t"], root, made)
    _run(["git", "config", "user.email", "t@t"], root, made)
    _run([sys.executable, "-m", "dvc", "init", "-q"], root, made)
    _run([sys.executable, "-m", "dvc", "repro"], root, made)
    _run(["git", "add", "-A"], root, made)
    _run(["git", "commit", "-qm", "make repro"], root, made)
    before = {name: json.loads((root / f"metrics/{name}.json").read_text())
              for name in ("train/r0", "train/r1", "eval")}

    # a fresh shell: nothing of the venv on PATH, no VIRTUAL_ENV, none of the Makefile's exports
    resolved = {b.resolve() for b in bins}
    path = [p for p in os.environ["PATH"].split(os.pathsep)
            if p and Path(p).resolve() not in resolved]
    fresh = {key: value for key, value in os.environ.items()
             if key not in {"VIRTUAL_ENV", "VIRTUAL_ENV_PROMPT", "MLFLOW_TRACKING_URI",
                            "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTHONHOME"}}
    fresh.update(PATH=os.pathsep.join(path), DVC_NO_ANALYTICS="1")
    bare = subprocess.run(["bash", "-c", "command -v dvc || true"], cwd=root, env=fresh,
                          capture_output=True, text=True).stdout.strip()
    assert not bare or Path(bare).resolve().parent not in resolved, bare

    done = subprocess.run(["bash", "-c", f"{activation}\n{experiment}\n"], cwd=root, env=fresh,
                          capture_output=True, text=True, timeout=900)
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"{activation}\n{experiment}\nfailed:\n{log}"

    # model.knowledge=false re-trains both rounds and re-evaluates; nothing upstream re-runs
    for stage in ("train@r0", "train@r1", "evaluate"):
        assert re.search(rf"Running stage '{stage}'", log), f"{stage} did not run:\n{log}"
    for stage in ("prepare", "embed", "pks", "rks", "classifier", "adm"):
        assert not re.search(rf"Running stage '{stage}'", log), f"{stage} re-ran:\n{log}"
    assert yaml.safe_load((root / "params.yaml").read_text())["model"]["knowledge"] is False
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    for stage in ("train@r0", "train@r1"):
        assert lock[stage]["params"]["params.yaml"]["model"]["knowledge"] is False

    after = {name: json.loads((root / f"metrics/{name}.json").read_text()) for name in before}
    assert after["train/r0"]["round"] == "r0" and after["train/r0"] != before["train/r0"]
    assert after["train/r1"]["teacher"] == "r0" and after["train/r1"] != before["train/r1"]
    assert after["eval"]["test_studies"] == 8
    # the knowledge text alone comes from DiagnosisBot and the knowledge base: unchanged
    knowledge = {k: v for k, v in before["eval"].items() if k.startswith("knowledge.")}
    assert knowledge and all(after["eval"][k] == pytest.approx(v) for k, v in knowledge.items())

    shown = json.loads(_run([str(venv / "bin/dvc"), "exp", "show", "--json"], root, fresh))
    flags = [row["params"]["params.yaml"]["data"]["model"]["knowledge"]
             for row in _exp_rows(shown)
             if "params.yaml" in (row.get("params") or {})]
    assert True in flags and False in flags, flags  # the baseline and the experiment


def _readme_overrides(text: str) -> list[list[str]]:
    """The ``-S key=value`` arguments of each ``dvc exp run`` line in the README's code."""
    import shlex

    joined = "\n".join(_fenced_lines(text)).replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        for command in line.split("#")[0].split("&&"):
            words = shlex.split(command)
            if words[:3] != ["dvc", "exp", "run"] or any("$(" in w for w in words):
                continue
            found.append([words[i + 1] for i, w in enumerate(words) if w == "-S"])
    return found


def test_every_readme_experiment_line_sets_valid_parameters():
    from ekagen.config import load_params, validate_params

    overrides = _readme_overrides(README.read_text())
    assert len(overrides) >= 15 and ["seed=7"] in overrides
    for assignments in overrides:
        params = load_params(REPO / "params.yaml")
        for assignment in assignments:
            key, _, value = assignment.partition("=")
            *parents, leaf = key.split(".")
            node = params
            for part in parents:
                assert isinstance(node.get(part), dict), f"README: -S {assignment}: no {part!r}"
                node = node[part]
            assert leaf in node or parents == ["gid", "rounds"], \
                f"README: -S {assignment}: params.yaml has no {key!r}"
            node[leaf] = yaml.safe_load(value)
        validate_params(params)  # raises, naming the key, on a bad value
