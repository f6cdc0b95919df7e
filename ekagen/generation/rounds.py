"""How GID rounds chain: which round teaches which, and what a student starts from.

DVC's ``foreach`` expands one ``train@<round>`` stage per entry of ``gid.rounds``; a template
cannot compute k-1, so each round names its teacher and the teacher's folder (``after``), and
the two must agree for DVC to run the teacher first.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ekagen.config import GeneratorConfig, GidConfig, replace

NO_TEACHER = "none"
CLASSIFIER_WEIGHTS = "classifier"


def round_teacher(gid: GidConfig, round_key: str, gid_dir: Path) -> str | None:
    """Validate ``gid.rounds`` for ``round_key``; returns the teacher round or None."""
    if round_key not in gid.rounds:
        raise ValueError(f"params.yaml gid.rounds has no round {round_key!r} "
                         f"(rounds: {sorted(gid.rounds)})")
    spec = gid.rounds[round_key] or {}
    teacher = str(spec.get("teacher", NO_TEACHER))
    if teacher == NO_TEACHER:
        return None
    if teacher not in gid.rounds or teacher == round_key:
        raise ValueError(f"params.yaml gid.rounds.{round_key}.teacher: {teacher!r} is not "
                         "another round")
    expected = (gid_dir / teacher).as_posix()
    if spec.get("after") != expected:
        raise ValueError(f"params.yaml gid.rounds.{round_key}.after must be {expected!r} so "
                         "DVC runs the teacher's round first")
    return teacher


def resolve_backbone_weights(cfg: GeneratorConfig, classifier_dir: Path) -> GeneratorConfig:
    """``model.backbone_weights: classifier`` = the pipeline's own trained DiagnosisBot."""
    if cfg.backbone_weights != CLASSIFIER_WEIGHTS:
        return cfg
    return replace(cfg, backbone_weights=str(classifier_dir / "model.safetensors"))


def start_from_teacher(model: nn.Module, teacher: nn.Module, teacher_dir: Path) -> None:
    """GID's iterative optimisation: the student of round k starts from round k-1's weights
    and goes on learning under its distillation (``gid.student_init: teacher``)."""
    try:  # strict loading already checks that every key and shape matches
        model.load_state_dict(teacher.state_dict())
    except RuntimeError as exc:
        raise ValueError(f"{teacher_dir}: the teacher's architecture differs from params.yaml "
                         "model; rerun its round or set gid.student_init: scratch") from exc
