"""Where the report says a finding is: side, zone, lobe, size and device kinds.

A deliberately small, rule-based reader used only by the phantom renderer. For each observation
it finds the sentences that mention it without a preceding negation ("no", "without", ...), and
reads the words of the clause around the mention: "right/left/bilateral/both/bibasilar" for the
patient side, "upper/apical/mid/perihilar/lower/basilar/retrocardiac/..." and lobe names for the
zone, "small/moderate/large" for the size and, for support devices, which kinds are named.

Sides are the **patient's** sides ("right" is image-left on a PA film); the renderer does the
mirroring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ekagen.observations import OBSERVATIONS


@dataclass(frozen=True)
class Location:
    """What the report states about one finding; ``None`` where it says nothing."""

    side: str | None = None  # "right" | "left" | "both" (patient side)
    zone: str | None = None  # "upper" | "mid" | "lower"
    lobe: str | None = None  # "RUL" | "RML" | "RLL" | "LUL" | "lingula" | "LLL"
    medial: bool = False  # perihilar / hilar / retrocardiac / paratracheal
    size: str | None = None  # "small" | "moderate" | "large"
    devices: tuple[str, ...] = ()  # support-device kinds named, e.g. ("pacemaker", "line")
    kind: str | None = None  # lung lesion: "mass" | "nodule" | "granuloma"


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


#: Mention patterns per observation (lower-case text; ``\b`` anchors the word start).
KEYWORDS: dict[str, re.Pattern[str]] = {
    "Atelectasis": _rx(r"\batelecta", r"\bcollapse", r"\bvolume loss"),
    "Cardiomegaly": _rx(r"\bcardiomegaly", r"\bcardiac enlargement",
                        r"\benlarged (?:heart|cardiac)",
                        r"\bheart (?:size )?is (?:mildly |moderately |markedly )?enlarged"),
    "Consolidation": _rx(r"\bconsolidat"),
    "Edema": _rx(r"\bedema", r"\bcongestion", r"\bkerley"),
    "Enlarged Cardiomediastinum": _rx(r"\bmediastin", r"\bcardiomediastin"),
    "Fracture": _rx(r"\bfracture", r"\bfx\b"),
    "Lung Lesion": _rx(r"\bnodul", r"\bmass", r"\blesion", r"\bgranuloma", r"\btumou?r",
                       r"\bneoplas", r"\bmetasta"),
    "Lung Opacity": _rx(r"\bopacit", r"\binfiltrat", r"\bdensit", r"\bairspace disease",
                        r"\bhaz(?:y|iness)"),
    "No Finding": _rx(r"\bnormal\b"),
    "Pleural Effusion": _rx(r"\beffusion"),
    "Pleural Other": _rx(r"\bpleural thicken", r"\bthickening", r"\bapical cap", r"\bplaque",
                         r"\bpleural scar", r"\bfibrothorax"),
    "Pneumonia": _rx(r"\bpneumonia", r"\binfection", r"\binfectious"),
    "Pneumothorax": _rx(r"\bpneumothora"),
    "Support Devices": _rx(r"\bpacemaker", r"\bpacer\b", r"\bicd\b", r"\bdefibrillator",
                           r"\bsternotomy", r"\bsternal wire", r"\bwires\b", r"\btube\b",
                           r"\bcatheter", r"\bpicc\b", r"\bline\b", r"\bport\b", r"\bclips?\b",
                           r"\bstent", r"\bdevice", r"\bleads?\b", r"\bendotracheal",
                           r"\bnasogastric", r"\bhardware"),
}

_NEGATION = _rx(r"\bno\b", r"\bnot\b", r"\bwithout\b", r"\bnegative for\b", r"\bfree of\b",
                r"\bclear of\b", r"\bresolved\b", r"\bresolution of\b", r"\bremoved\b",
                r"\bnor\b")
_SIDE_BOTH = _rx(r"\bbilateral", r"\bboth\b", r"\bbi(?:basilar|basal|apical|hilar|lateral)")
_SIDE_RIGHT = _rx(r"\bright\b", r"\bright-sided", r"\br(?:ul|ml|ll)\b")
_SIDE_LEFT = _rx(r"\bleft\b", r"\bleft-sided", r"\bl(?:ul|ll)\b", r"\blingul")
_ZONES = (
    ("upper", _rx(r"\bupper\b", r"\bapical", r"\bapex", r"\bapices", r"\bsuperior",
                  r"\b(?:rul|lul)\b", r"\bbiapical")),
    ("lower", _rx(r"\blower\b", r"\bbase\b", r"\bbases\b", r"\bbasilar", r"\bbasal",
                  r"\bbibasilar", r"\bretrocardiac", r"\bcostophrenic", r"\binferior",
                  r"\b(?:rll|lll)\b", r"\binfrahilar")),
    ("mid", _rx(r"\bmid\b", r"\bmid-?lung", r"\bmiddle\b", r"\blingul", r"\bperihilar",
                r"\bhilar", r"\brml\b")),
)
_MEDIAL = _rx(r"\bperihilar", r"\bhilar", r"\bretrocardiac", r"\bparatracheal", r"\bmedial")
_LOBES = (
    ("RUL", _rx(r"\bright upper lobe", r"\brul\b")),
    ("RML", _rx(r"\bright middle lobe", r"\brml\b")),
    ("RLL", _rx(r"\bright lower lobe", r"\brll\b")),
    ("LUL", _rx(r"\bleft upper lobe", r"\blul\b")),
    ("lingula", _rx(r"\blingul")),
    ("LLL", _rx(r"\bleft lower lobe", r"\blll\b", r"\bretrocardiac")),
)
_SIZES = (
    ("small", _rx(r"\bsmall", r"\btrace\b", r"\btiny\b", r"\bminimal", r"\bmild", r"\bslight")),
    ("moderate", _rx(r"\bmoderate")),
    ("large", _rx(r"\blarge", r"\bmassive", r"\bextensive", r"\bsevere", r"\bmarked")),
)
_DEVICES = (
    ("pacemaker", _rx(r"\bpacemaker", r"\bpacer\b", r"\bicd\b", r"\bdefibrillator",
                      r"\bleads?\b")),
    ("sternotomy", _rx(r"\bsternotomy", r"\bsternal wire", r"\bcabg\b", r"\bwires\b")),
    ("ett", _rx(r"\bendotracheal", r"\bet tube", r"\bett\b", r"\btracheostomy")),
    ("ng", _rx(r"\bnasogastric", r"\bng tube", r"\borogastric", r"\bfeeding tube",
               r"\benteric", r"\bdobhoff")),
    ("chest_tube", _rx(r"\bchest tube", r"\bthoracostomy", r"\bpigtail")),
    ("line", _rx(r"\bpicc\b", r"\bcentral (?:venous )?(?:line|catheter)", r"\bcatheter",
                 r"\bline\b", r"\bport\b", r"\bjugular", r"\bsubclavian")),
    ("clips", _rx(r"\bclips?\b", r"\bstent", r"\bhardware")),
)

_LESION_KINDS = (
    ("mass", _rx(r"\bmass", r"\btumou?r", r"\bneoplas")),
    ("granuloma", _rx(r"\bgranuloma", r"\bcalcified nodul")),
    ("nodule", _rx(r"\bnodul", r"\blesion", r"\bmetasta")),
)

_SENTENCE_SPLIT = re.compile(r"(?<=[.;!?])\s+|\n+|(?<=[.;])(?=[A-Za-z])")
_CLAUSE_SPLIT = re.compile(r",|\band\b|\bwith\b|\bbut\b|\bwhile\b|\bwhich\b")


def _clause_around(sentence: str, start: int, end: int) -> str:
    """The clause of ``sentence`` that contains the span ``start:end``."""
    cuts = [0] + [m.end() for m in _CLAUSE_SPLIT.finditer(sentence)] + [len(sentence) + 1]
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        if lo <= start < hi or (lo < end <= hi):
            return sentence[lo:hi]
    return sentence


def positive_mentions(report: str, pattern: re.Pattern[str]) -> list[str]:
    """Clauses (lower-case) that mention ``pattern`` in a sentence not negated before it."""
    clauses = []
    for sentence in _SENTENCE_SPLIT.split(report.lower()):
        for match in pattern.finditer(sentence):
            if _NEGATION.search(sentence[: match.start()]):
                continue
            clauses.append(_clause_around(sentence, match.start(), match.end()))
    return clauses


def _first(table: tuple[tuple[str, re.Pattern[str]], ...], text: str) -> str | None:
    best, best_pos = None, len(text) + 1
    for name, pattern in table:
        match = pattern.search(text)
        if match and match.start() < best_pos:
            best, best_pos = name, match.start()
    return best


def _side(text: str) -> str | None:
    if _SIDE_BOTH.search(text):
        return "both"
    right, left = bool(_SIDE_RIGHT.search(text)), bool(_SIDE_LEFT.search(text))
    if right and left:
        return "both"
    return "right" if right else "left" if left else None


def locate(report: str, observation: str) -> Location:
    """What ``report`` says about where ``observation`` is (empty ``Location`` if nothing)."""
    pattern = KEYWORDS.get(observation)
    if pattern is None or not report:
        return Location()
    clauses = positive_mentions(report, pattern)
    if not clauses:
        return Location()
    sides = {s for s in (_side(c) for c in clauses) if s is not None}
    side = None if not sides else sides.pop() if len(sides) == 1 else "both"
    text = " ".join(clauses)
    lobe = _first(_LOBES, text)
    zone = _first(_ZONES, text)
    if lobe is not None and zone is None:
        zone = {"RUL": "upper", "LUL": "upper", "RML": "mid", "lingula": "mid"}.get(lobe, "lower")
    if lobe is not None and side is None:
        side = "right" if lobe.startswith("R") else "left"
    devices: tuple[str, ...] = ()
    if observation == "Support Devices":
        devices = tuple(name for name, rx in _DEVICES if rx.search(text))
    kind = _first(_LESION_KINDS, text) if observation == "Lung Lesion" else None
    return Location(side=side, zone=zone, lobe=lobe, medial=bool(_MEDIAL.search(text)),
                    size=_first(_SIZES, text), devices=devices, kind=kind)


def extract_locations(report: str) -> dict[str, Location]:
    """``locate`` for every observation that the report mentions positively."""
    found = {}
    for name in OBSERVATIONS:
        loc = locate(report, name)
        if loc != Location():
            found[name] = loc
    return found
