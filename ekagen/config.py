"""The schema of ``params.yaml``: one dataclass per section, and the one place its rules live.

``params.yaml`` is the only source of default values: no field here has a default, and a
section read from a file must name every field (a missing key is an error naming it, as is an
unknown one). Choices are ``Literal`` types checked while reading; every section's other rules
(ranges, combinations, formats such as ``step:<epochs>:<factor>``) are in its
``__post_init__``, so a stage, a test or the CLI that builds a section gets the same checks.

The ``runtime`` section holds what cannot change a result (devices, worker processes, batch
sizes of inference, gallery sizes, cache budgets). No DVC stage lists it among its params, so
changing it never invalidates a cached stage.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


# ----------------------------------------------------------------------------- reading
def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML value to the field type, or fail naming the key."""
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, where)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if isinstance(value, str) and True in choices and value.lower() in ("true", "false"):
            value = value.lower() == "true"  # ``-S key=true`` on the command line
        if not any(value == c and type(value) is type(c) for c in choices):
            shown = " | ".join(str(c).lower() if isinstance(c, bool) else str(c)
                               for c in choices)
            raise ValueError(f"{where}: expected one of {shown}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        (item_type,) = typing.get_args(annotation)[:1] or (Any,)
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        annotation = next(a for a in options if a is not type(None))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping that names every field, and nothing else."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    label = where or cls.__name__
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"params {label}: unknown key(s) {unknown}; known: {sorted(names)}")
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(f"params {label}: missing key(s) {missing} (params.yaml holds every "
                         "default; copy them from there)")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ValueError(f"params {label}: {exc}") from exc


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The whole params file as a dict."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: parameters file not found") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML ({exc})") from exc
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of sections")
    return params


def section(params: dict[str, Any], name: str, cls: type[T]) -> T:
    """Section ``name`` of ``params`` as dataclass ``cls``."""
    if not isinstance(params.get(name), dict):
        raise ValueError(f"params: section {name!r} missing (params.yaml holds every default)")
    return from_dict(cls, params[name], name)


def replace(config: T, **changes: Any) -> T:
    """A copy of a section with ``changes`` applied, type-checked and validated like a file."""
    values = {**dataclasses.asdict(config), **changes}  # type: ignore[call-overload]
    return from_dict(type(config), values, type(config).__name__)


def as_flat_dict(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a dataclass into ``{"a.b": value}`` for MLflow parameter logging."""
    flat: dict[str, Any] = {}
    for key, value in dataclasses.asdict(config).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                flat[f"{name}.{sub}"] = sub_value
        else:
            flat[name] = value
    return flat


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule spelled ``constant``, ``cosine`` or ``step:<epochs>:<factor>``
    (the factor multiplies the rate every ``epochs`` epochs), so that a schedule's settings
    exist only where that schedule is chosen."""

    kind: Literal["constant", "cosine", "step"]
    every: int = 0
    factor: float = 1.0

    @classmethod
    def parse(cls, text: str) -> Schedule:
        if text in ("constant", "cosine"):
            return cls(text)  # type: ignore[arg-type]
        parts = text.split(":")
        try:
            if parts[0] != "step" or len(parts) != 3:
                raise ValueError
            every, factor = int(parts[1]), float(parts[2])
        except ValueError:
            raise ValueError(f"scheduler must be constant, cosine or step:<epochs>:<factor>, "
                             f"got {text!r}") from None
        _require(every >= 1 and 0 < factor <= 1,
                 f"scheduler {text!r}: epochs must be >= 1 and factor in (0, 1]")
        return cls("step", every, factor)


# ----------------------------------------------------------------------------- sections
Backbone = Literal["resnet18", "resnet34", "resnet50", "resnet101"]
ClassifierBackbone = Literal["resnet18", "resnet34", "resnet50", "resnet101", "densenet121",
                             "swin_t"]
IekRule = Literal["likelihood", "threshold"]
IEK_RULES: tuple[str, ...] = typing.get_args(IekRule)


@dataclass
class PhantomConfig:
    uncertain: Literal["faint", "none"]


@dataclass
class DataConfig:
    source: Literal["iu_phantom", "r2gen", "openi"]
    dataset: Literal["iu_xray", "mimic_cxr"]
    annotation: str
    image_dir: str
    reports: str
    chexpert_csv: str
    views: list[int]
    image_size: int
    split_fractions: list[float]
    max_studies: int
    skip_bad_records: bool
    min_freq: int
    max_length: int
    phantom: PhantomConfig

    def __post_init__(self) -> None:
        _require(self.image_size >= 32, f"image_size must be >= 32, got {self.image_size}")
        _require(bool(self.views) and all(v >= 0 for v in self.views)
                 and len(set(self.views)) == len(self.views),
                 f"views must be distinct non-negative indices, got {self.views}")
        _require(len(self.split_fractions) == 3 and all(f >= 0 for f in self.split_fractions)
                 and abs(sum(self.split_fractions) - 1.0) < 1e-6,
                 f"split_fractions must be three non-negative numbers summing to 1, got "
                 f"{self.split_fractions}")
        _require(self.max_studies >= 0, "max_studies must be >= 0 (0 = all)")
        _require(self.min_freq >= 1 and self.max_length >= 3,
                 "min_freq must be >= 1 and max_length >= 3")
        _require(self.source != "r2gen" or bool(self.annotation and self.image_dir),
                 "source r2gen needs data.annotation and data.image_dir")
        _require(self.source != "openi" or bool(self.image_dir),
                 "source openi needs data.image_dir")


@dataclass
class EmbedConfig:
    model: str  # the model packaged on PyPI, or a local folder
    index: Literal["flat", "ivf", "hnsw"]
    nlist: int  # ivf cells; 0 = about 4 * sqrt(n)
    nprobe: int
    hnsw_m: int
    ef_search: int

    def __post_init__(self) -> None:
        _require(self.nlist >= 0 and min(self.nprobe, self.hnsw_m, self.ef_search) >= 1,
                 "nlist must be >= 0; nprobe, hnsw_m and ef_search >= 1")


@dataclass
class PksConfig:
    k: int
    min_support: int
    combinations: bool
    kmeans_iterations: int

    def __post_init__(self) -> None:
        _require(self.k >= 1 and self.min_support >= 1 and self.kmeans_iterations >= 1,
                 "k, min_support and kmeans_iterations must be >= 1")


@dataclass
class RksConfig:
    search: Literal["index", "exact"]
    candidates: int
    projection: Literal["pca", "tsne"]

    def __post_init__(self) -> None:
        _require(self.candidates >= 1, f"candidates must be >= 1, got {self.candidates}")


@dataclass
class IekConfig:
    max_hamming: int  # -1 = no limit
    rule: IekRule

    def __post_init__(self) -> None:
        _require(self.max_hamming >= -1, "max_hamming must be >= -1 (-1 = any distance)")

    @property
    def hamming_limit(self) -> int | None:
        """``max_hamming`` as :class:`~ekagen.knowledge.iek.KnowledgeBase` takes it."""
        return None if self.max_hamming < 0 else self.max_hamming


@dataclass
class ClassifierConfig:
    backbone: ClassifierBackbone
    pretrained: str  # "" = from scratch; else a local state-dict file
    epochs: int
    batch_size: int
    optimizer: str  # adamw | sgd:<momentum> (Nesterov)
    lr: float
    weight_decay: float
    scheduler: str  # constant | cosine | step:<epochs>:<factor>
    grad_clip: float
    uncertain_as: Literal["zeros", "ones", "ignore"]
    augment: bool
    threshold: str  # youden | f1 | fixed:<value>
    patience: int
    max_steps: int  # optimiser steps per epoch at most; 0 = every batch
    amp: bool  # bf16 autocast on a GPU with bf16
    amp_cpu: bool  # also on a CPU with native bf16; false: CPUs train in fp32

    def __post_init__(self) -> None:
        _require(self.epochs >= 1 and self.batch_size >= 1, "epochs and batch_size must be >= 1")
        _require(self.lr > 0 and self.weight_decay >= 0 and self.grad_clip >= 0
                 and self.patience >= 0, "lr must be > 0; weight_decay, grad_clip, patience >= 0")
        _require(self.max_steps >= 0, f"max_steps must be >= 0, got {self.max_steps}")
        self.schedule  # noqa: B018 - parses, raising on a bad spelling
        self.momentum  # noqa: B018
        method, _, value = self.threshold.partition(":")
        _require(method in ("youden", "f1", "fixed") and (method == "fixed") == bool(value),
                 f"threshold must be youden, f1 or fixed:<value>, got {self.threshold!r}")
        if method == "fixed":
            try:
                ok = 0.0 < float(value) < 1.0
            except ValueError:
                ok = False
            _require(ok, f"threshold {self.threshold!r}: the value must be in (0, 1)")

    @property
    def schedule(self) -> Schedule:
        return Schedule.parse(self.scheduler)

    @property
    def momentum(self) -> float | None:
        """None for AdamW; SGD's (Nesterov) momentum."""
        if self.optimizer == "adamw":
            return None
        name, _, value = self.optimizer.partition(":")
        try:
            momentum = float(value)
        except ValueError:
            momentum = -1.0
        _require(name == "sgd" and 0 <= momentum < 1,
                 f"optimizer must be adamw or sgd:<momentum in [0, 1)>, got {self.optimizer!r}")
        return momentum


@dataclass
class AdmConfig:
    """Making the masks (the ``adm`` stage) and applying them (the generator's student)."""

    cam_threshold: float
    dilation: int
    region_check: bool
    skip_classes: list[str]
    apply: bool  # false = ablation: the student sees the plain image
    min_coverage: float  # the paper's theta: ADM applies when the mask covers more than this
    outside_scale: float  # the paper's gamma: pixels outside the mask are scaled by this
    inside_scale: float  # the authors' beta (unused in their code): scales the inside

    def __post_init__(self) -> None:
        from ekagen.observations import OBSERVATIONS

        _require(0 <= self.cam_threshold <= 1 and self.dilation >= 0,
                 "cam_threshold must be in [0, 1] and dilation >= 0")
        unknown = sorted(set(self.skip_classes) - set(OBSERVATIONS))
        _require(not unknown, f"skip_classes: unknown observation(s) {unknown}")
        _require(0 <= self.min_coverage < 1 and self.outside_scale >= 0
                 and self.inside_scale >= 0,
                 "min_coverage must be in [0, 1); outside_scale and inside_scale >= 0")


@dataclass
class GeneratorConfig:
    """Architecture of the generator (the ``model`` section)."""

    backbone: Backbone
    backbone_weights: str  # "" = scratch | classifier = the trained DiagnosisBot | a file
    dilation: bool
    frozen_bn: bool
    d_model: int
    encoder_layers: int
    decoder_layers: int
    heads: int
    ffn: int
    dropout: float
    max_length: int
    knowledge: bool
    fusion: Literal["memory", "paper"]
    copy: bool

    def __post_init__(self) -> None:
        _require(self.d_model % self.heads == 0,
                 f"d_model {self.d_model} must be a multiple of heads {self.heads}")
        _require(min(self.encoder_layers, self.decoder_layers, self.ffn) >= 1
                 and 0 <= self.dropout < 1 and self.max_length >= 3,
                 "layers and ffn must be >= 1, dropout in [0, 1), max_length >= 3")
        _require(not self.dilation or self.backbone in ("resnet50", "resnet101"),
                 f"{self.backbone} (BasicBlock) cannot dilate its last stage; use resnet50+")
        _require(not self.frozen_bn or bool(self.backbone_weights),
                 "frozen_bn needs backbone_weights: frozen batch norm keeps the loaded "
                 "statistics, and a backbone trained from scratch has none")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig:
    """One GID round of the generator (rounds themselves are in ``gid``)."""

    epochs: int
    batch_size: int
    lr: float
    backbone_lr: float  # 0 freezes the CNN
    weight_decay: float
    adam_beta2: float  # AdamW's second-moment decay: its memory is about 1 / (1 - beta2) steps
    scheduler: str  # constant | cosine (per batch, to 0 over the round) | step:<epochs>:<f>
    grad_clip: float
    label_smoothing: float
    amp: bool  # bf16 autocast on a GPU with bf16
    amp_cpu: bool  # also on a CPU with native bf16; false: CPUs train in fp32
    ema_decay: float  # 0 = off; > 0: validate, select and export the moving average of the weights
    patience: int
    max_steps: int  # optimiser steps per epoch at most; 0 = every batch
    select_metric: Literal["ce_bleu4", "ce_micro_f1", "bleu4"]
    knowledge_gt_fraction: float
    findings_repeat: int
    length_pool: int

    def __post_init__(self) -> None:
        _require(self.epochs >= 1 and self.batch_size >= 1, "epochs and batch_size must be >= 1")
        _require(self.lr > 0 and self.backbone_lr >= 0 and self.weight_decay >= 0
                 and self.grad_clip >= 0 and 0 <= self.label_smoothing < 1,
                 "lr must be > 0; backbone_lr, weight_decay, grad_clip >= 0; "
                 "label_smoothing in [0, 1)")
        self.schedule  # noqa: B018 - parses, raising on a bad spelling
        _require(0 <= self.knowledge_gt_fraction <= 1,
                 f"knowledge_gt_fraction must be in [0, 1], got {self.knowledge_gt_fraction}")
        _require(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        _require(0 < self.adam_beta2 < 1, f"adam_beta2 must be in (0, 1), got {self.adam_beta2}")
        _require(self.findings_repeat >= 1 and self.length_pool >= 0 and self.patience >= 0
                 and self.max_steps >= 0,
                 "findings_repeat must be >= 1; length_pool, patience and max_steps >= 0")

    @property
    def schedule(self) -> Schedule:
        return Schedule.parse(self.scheduler)


@dataclass
class GidConfig:
    delta: float
    temperature: float
    swap_views: bool
    student_init: Literal["teacher", "scratch"]
    rounds: dict

    def __post_init__(self) -> None:
        _require(self.delta >= 0 and self.temperature > 0,
                 "delta must be >= 0 and temperature > 0")
        _require(bool(self.rounds), "rounds must name at least one round")


@dataclass
class DecodeConfig:
    """Test-time decoding, also used for the validation decodes that select the epoch."""

    beam_size: int  # 1 = greedy
    length_penalty: float  # final score / length ** length_penalty
    max_length: int  # tokens generated at most, bos excluded
    no_repeat_ngram: int  # 0 = off
    eos_threshold: float  # end only when P(eos) >= this; 0 = plain argmax/beam scores

    def __post_init__(self) -> None:
        _require(self.beam_size >= 1 and self.max_length >= 1 and self.no_repeat_ngram >= 0,
                 "beam_size and max_length must be >= 1, no_repeat_ngram >= 0")
        _require(0.0 <= self.eos_threshold < 1.0,
                 f"eos_threshold must be in [0, 1), got {self.eos_threshold}")


@dataclass
class EvaluateConfig:
    round: str
    meteor: bool
    ce_labeler: Literal["rules", "chexbert"]  # labels both sides for every CE protocol
    chexbert_checkpoint: str | None  # the authors' chexbert.pth (ce_labeler: chexbert)
    chexbert_bert_dir: str | None  # a local bert-base-uncased folder: config.json, vocab.txt
    bootstrap_resamples: int  # paired bootstrap over test studies (the run's seed draws them)

    def __post_init__(self) -> None:
        _require(self.bootstrap_resamples >= 1,
                 f"bootstrap_resamples must be >= 1, got {self.bootstrap_resamples}")
        if self.ce_labeler == "chexbert":
            _require(bool(self.chexbert_checkpoint) and bool(self.chexbert_bert_dir),
                     "evaluate.ce_labeler: chexbert needs evaluate.chexbert_checkpoint (the "
                     "path of chexbert.pth) and evaluate.chexbert_bert_dir (a local "
                     "bert-base-uncased folder); nothing is downloaded")


@dataclass
class RuntimeConfig:
    """How a run executes, never what it computes: not a DVC-tracked parameter."""

    device: str  # auto | cpu | cuda | cuda:<i>
    faiss_gpu: Literal["auto", True, False]
    workers: int  # processes decoding or rendering images in prepare
    loader_workers: int  # DataLoader worker processes in the training stages
    batch_size: int  # inference batches: embedding, classifier evaluation, ADM, decoding
    feature_cache_gb: float  # frozen generator backbone: compute its features once if they fit
    adm_gallery_size: int
    eval_gallery_size: int

    def __post_init__(self) -> None:
        _require(self.device == "auto" or self.device == "cpu" or self.device == "cuda"
                 or self.device.startswith("cuda:"),
                 f"device must be auto, cpu, cuda or cuda:<i>, got {self.device!r}")
        _require(self.workers >= 1 and self.loader_workers >= 0 and self.batch_size >= 1,
                 "workers and batch_size must be >= 1, loader_workers >= 0")
        _require(min(self.feature_cache_gb, self.adm_gallery_size, self.eval_gallery_size) >= 0,
                 "feature_cache_gb and gallery sizes must be >= 0")


#: every section of params.yaml and its schema (``seed`` is a top-level integer)
SECTIONS: dict[str, type] = {
    "data": DataConfig, "embed": EmbedConfig, "pks": PksConfig, "rks": RksConfig,
    "iek": IekConfig, "classifier": ClassifierConfig, "adm": AdmConfig,
    "model": GeneratorConfig, "train": TrainConfig, "gid": GidConfig,
    "decode": DecodeConfig, "evaluate": EvaluateConfig, "runtime": RuntimeConfig,
}


def validate_params(params: dict[str, Any]) -> dict[str, Any]:
    """Every section of a whole params file read and checked; returns them by name."""
    unknown = sorted(set(params) - set(SECTIONS) - {"seed"})
    if unknown:
        raise ValueError(f"params: unknown section(s) {unknown}; known: seed, "
                         f"{', '.join(SECTIONS)}")
    seed = params.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"params: seed must be an integer, got {seed!r}")
    return {name: section(params, name, cls) for name, cls in SECTIONS.items()}
