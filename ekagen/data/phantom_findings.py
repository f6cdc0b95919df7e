"""The 13 drawable CheXpert findings, painted onto the phantom's density layers.

Each finding edits the layers of :class:`~ekagen.data.phantom_anatomy.Layers` (``fill`` replaces
lung air with fluid or tissue, ``extra`` adds density, ``lucent`` adds air, ``keep`` removes lung
markings, ``metal`` holds devices) and returns a bool mask of where it was drawn. Cardiomegaly,
Enlarged Cardiomediastinum and Fracture change the anatomy itself, so they are *planned* before
the anatomy is drawn (:func:`plan`) and only report their mask afterwards.

``strength`` is 1 for a positive finding and smaller for a faint (uncertain) one; it scales the
density drawn (and the size where size is the sign, as for cardiomegaly and pneumothorax).
Sides are patient sides: ``s = -1`` is the patient's right (image left), ``s = +1`` the left.

Where the report states side, zone, lobe or size (:mod:`ekagen.data.phantom_location`) it is
followed; otherwise each finding's default is drawn from its own per-study generator:

=========================  ===================================================================
Atelectasis                plate-like bands, basal; both sides 45 %, else one side
Cardiomegaly               CTR 0.56-0.66 (report "mild" 0.55-0.58, "large" 0.63-0.70)
Consolidation              dense lobar/segmental, sharp fissure edge, air bronchograms (70 %);
                           lower lobe 50 %, upper 30 %, middle lobe / lingula 20 %
Edema                      bilateral perihilar (bat-wing) haze, Kerley B lines at the bases
Enlarged Cardiomediastinum upper mediastinum widened x1.6-2.0
Fracture                   one lateral posterior rib: gap, step-off and callus; mid 45 %,
                           lower 30 %, upper 25 %
Lung Lesion                nodule 60 % / mass 25 % / calcified granuloma 15 %; upper 40 %,
                           mid 35 %, lower 25 %
Lung Opacity, Pneumonia    hazy (opacity) or patchy dense (pneumonia) blob, one side (20 %
                           both); lower 45 %, mid 35 %, upper 20 %
Pleural Effusion           basal with meniscus, blunted costophrenic angle; both sides 30 %;
                           small 35 % / moderate 45 % / large 20 %
Pleural Other              pleural thickening: apical cap 40 %, lateral chest wall 60 %
Pneumothorax               apical and lateral lucent rim, no markings, visible pleural line;
                           small 45 % / moderate 40 % / large 15 %
Support Devices            kinds named in the report, else one (65 %) or two of: central line,
                           pacemaker with leads, sternotomy wires, endotracheal tube, NG tube,
                           chest tube, surgical clips
=========================  ===================================================================
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ekagen.data.phantom_anatomy import (
    F32,
    Anatomy,
    Layers,
    Mods,
    ellipse_q,
    heart_geometry,
    lateral_edge,
    lung_field,
    smooth_noise,
    soft,
    spline,
)
from ekagen.data.phantom_location import Location

NO_LOCATION = Location()
DEVICE_KINDS = ("line", "pacemaker", "sternotomy", "ett", "ng", "chest_tube", "clips")
DEVICE_WEIGHTS = (0.3, 0.24, 0.18, 0.1, 0.1, 0.05, 0.03)


# --------------------------------------------------------------------------- locations
def _sides(loc: Location, rng: np.random.Generator, p_both: float = 0.0) -> list[int]:
    """Patient sides to draw on: the report's, else both with ``p_both``, else one at random."""
    draw_both, draw_left = rng.random() < p_both, rng.random() < 0.5
    if loc.side == "right":
        return [-1]
    if loc.side == "left":
        return [1]
    if loc.side == "both" or draw_both:
        return [-1, 1]
    return [1 if draw_left else -1]


def _zone(loc: Location, rng: np.random.Generator, weights=(0.3, 0.35, 0.35)) -> str:
    drawn = str(rng.choice(["upper", "mid", "lower"], p=np.array(weights) / sum(weights)))
    return loc.zone or drawn


def zone_point(a: Anatomy, s: int, zone: str, medial: bool, rng: np.random.Generator):
    """A point (x, y) in ``zone`` of the lung on side ``s`` (anatomy coordinates)."""
    i = 0 if s < 0 else 1
    ap, dm = a.apex[i], a.dome[i]
    jitter = rng.uniform(-0.04, 0.04)
    y = {"upper": ap + 0.27 * (dm - ap), "mid": ap + 0.57 * (dm - ap)}.get(zone, dm - 0.13)
    y += jitter
    lat, med = lateral_edge(a, s, y), a.med[i] + 0.04
    frac = rng.uniform(0.15, 0.3) if medial else rng.uniform(0.45, 0.65)
    return s * (med + frac * (lat - med)), y


def _mask(field: np.ndarray, threshold: float) -> np.ndarray:
    """``field > threshold``, or the field's peak pixel when nothing passes (tiny findings)."""
    mask = field > threshold
    if not mask.any():
        mask = np.zeros(field.shape, bool)
        mask.flat[int(np.argmax(field))] = True
    return mask


def _thorax(layers: Layers) -> np.ndarray:
    return np.maximum(layers.lung, layers.heart)


# --------------------------------------------------------------------------- planned findings
def plan(name: str, a: Anatomy, mods: Mods, loc: Location | None, rng: np.random.Generator,
         strength: float) -> None:
    """Anatomy changes of the findings that alter the anatomy (others: nothing to do)."""
    loc = loc or NO_LOCATION
    if name == "Cardiomegaly":
        lo, hi = {"small": (0.55, 0.58), "large": (0.63, 0.7)}.get(loc.size or "", (0.56, 0.66))
        ctr = rng.uniform(lo, hi)
        mods.ctr = ctr if strength >= 1 else rng.uniform(0.51, 0.54)
    elif name == "Enlarged Cardiomediastinum":
        widen = rng.uniform(0.6, 1.0) if strength >= 1 else rng.uniform(0.3, 0.45)
        mods.mediastinum = 1.0 + widen
    elif name == "Fracture":
        s = _sides(loc, rng)[0]
        zone = _zone(loc, rng, (0.25, 0.45, 0.3))
        k = int(rng.integers(*{"upper": (1, 4), "mid": (4, 7)}.get(zone, (7, 10))))
        step = rng.uniform(0.42, 0.55) * rng.choice([-1.0, 1.0]) * strength
        callus = rng.uniform(0.12, 0.2) * strength
        mods.fracture = (s, k, rng.uniform(0.55, 0.8), step, 0.025 + 0.02 * strength, callus)


def _planned_mask(name: str, a: Anatomy, layers: Layers) -> np.ndarray:
    fr = layers.frame
    if name == "Cardiomegaly":
        return _mask(layers.heart_mask.astype(F32), 0.5)
    if name == "Enlarged Cardiomediastinum":
        return _mask(layers.mediastinum_mask.astype(F32), 0.5)
    sx, sy = layers.fracture_site
    return _mask(F32(1.0) - ellipse_q(fr.x, fr.y, sx, sy, 0.06, 0.05), 0.0)


# --------------------------------------------------------------------------- lung findings
def _atelectasis(a, layers, loc, rng, strength):
    fr = layers.frame
    field = np.zeros_like(layers.fill)
    zone = loc.zone or "lower"
    for s in _sides(loc, rng, p_both=0.45):
        for _ in range(int(rng.integers(1, 3))):
            cx, cy = zone_point(a, s, zone, loc.medial, rng)
            half = rng.uniform(0.1, 0.17)
            ang = math.radians(rng.uniform(-14, 8)) * -s
            c, sn = F32(math.cos(ang)), F32(math.sin(ang))
            dx, dy = fr.x - F32(cx), fr.y - F32(cy)
            along = (c * dx + sn * dy) * F32(1.0 / half)  # -1..1 along the band
            bow = F32(rng.uniform(-0.025, 0.025)) * (F32(1.0) - along * along)
            across = -sn * dx + c * dy - bow
            th = max(rng.uniform(0.014, 0.024), 1.1 * float(fr.px))
            taper = np.sqrt(np.clip(F32(1.0) - along * along, 0.0, 1.0))
            band = np.exp(-((across / F32(th)) ** 2)) * taper
            field = np.maximum(field, band)
    field *= soft(layers.lung - F32(0.05), 0.2)
    layers.fill += F32(0.75 * strength) * field
    layers.extra += F32(0.03 * strength) * field
    return _mask(field, 0.3)


def _blob(layers, cx, cy, rx, ry, ang):
    q = ellipse_q(layers.frame.x, layers.frame.y, cx, cy, rx, ry, ang)
    return np.exp(-(q * q) * F32(1.5))


def _patchy(a, layers, loc, rng, strength, hazy: bool):
    fr = layers.frame
    field = np.zeros_like(layers.fill)
    zone = _zone(loc, rng, (0.2, 0.35, 0.45))
    for s in _sides(loc, rng, p_both=0.2):
        cx, cy = zone_point(a, s, zone, loc.medial, rng)
        big = 1.3 if hazy else 1.0
        rx, ry = rng.uniform(0.12, 0.2) * big, rng.uniform(0.1, 0.17) * big
        field = np.maximum(field, _blob(layers, cx, cy, rx, ry, rng.uniform(-0.5, 0.5)))
    noise = smooth_noise(rng, fr.size, 9 if hazy else 16)
    noise -= F32(float((noise * field).sum()) / max(float(field.sum()), 1e-6))  # centre in blob
    if hazy:
        field = field * np.clip(F32(0.75) + F32(0.25) * noise, 0.0, 1.0)
    else:
        field = field * np.clip(F32(0.55) + F32(0.55) * noise, 0.0, 1.0)
    field *= _thorax(layers)
    density = 0.5 if hazy else 0.9
    layers.fill += F32(density * strength) * field
    layers.extra += F32(0.08 * strength) * field
    return _mask(field, 0.2)


def _consolidation(a, layers, loc, rng, strength):
    fr = layers.frame
    x, y = fr.x, fr.y
    field = np.zeros_like(layers.fill)
    for s in _sides(loc, rng, p_both=0.1):
        i = 0 if s < 0 else 1
        lobe = loc.lobe if loc.lobe and (loc.lobe[0] == "R") == (s < 0) else None
        zone = {"RUL": "upper", "LUL": "upper", "RML": "mid", "lingula": "mid"}.get(
            lobe or "", loc.zone or _zone(NO_LOCATION, rng, (0.3, 0.2, 0.5)))
        fissure = a.hilum[i] + 0.02
        w = a.side_w(s)
        side = layers.side_mask(s)
        if zone == "upper":
            region = soft(F32(fissure) - y, 1.5 * float(fr.px) if s < 0 else 0.06)
        elif zone == "mid":
            region = soft(y - F32(fissure), 1.5 * float(fr.px)) * soft(
                F32(0.55 * w) - np.abs(x), 0.08)
        else:
            region = soft(y - F32(fissure + 0.08), 0.12)
        cx, cy = zone_point(a, s, zone, loc.medial, rng)
        seg = _blob(layers, cx, cy, rng.uniform(0.2, 0.35) * w, rng.uniform(0.18, 0.3), 0.0)
        field = np.maximum(field, region * np.minimum(seg * F32(1.6), F32(1.0)) * side)
    field *= _thorax(layers)
    texture = F32(0.9) + F32(0.1) * smooth_noise(rng, fr.size, 20)
    bronchogram = np.minimum(layers.vessels * F32(1.3), F32(1.0)) * (rng.random() < 0.7)
    layers.fill += F32(0.92 * strength) * field * texture * (F32(1.0) - F32(0.55) * bronchogram)
    layers.extra += F32(0.07 * strength) * field
    return _mask(field, 0.3)


def _edema(a, layers, loc, rng, strength):
    fr = layers.frame
    field = np.zeros_like(layers.fill)
    kerley = np.zeros_like(layers.fill)
    for i, s in enumerate((-1, 1)):
        w = a.side_w(s)
        cx, cy = s * (a.med[i] + 0.2 * w), a.hilum[i] + 0.04
        field = np.maximum(field, _blob(layers, cx, cy, 0.34 * w, 0.36, 0.0))
        for _ in range(int(rng.integers(4, 8))):
            yy = a.cp[i] - rng.uniform(0.1, 0.32)
            edge = lateral_edge(a, s, yy) - 0.005
            ln = rng.uniform(0.035, 0.06)
            pts = np.array([[s * edge, yy], [s * (edge - ln), yy + rng.uniform(-0.005, 0.005)]])
            fr.stamp(kerley, pts, max(0.006, 1.0 * float(fr.px)), 1.0)
    kerley *= layers.lung
    field *= layers.lung * (F32(0.85) + F32(0.15) * smooth_noise(rng, fr.size, 10))
    layers.fill += F32(0.6 * strength) * field
    layers.keep *= F32(1.0) - F32(0.5) * field
    layers.extra += F32(0.1 * strength) * kerley + F32(0.03 * strength) * field
    return _mask(field, 0.25) | (kerley > 0.3)


def _lesion(a, layers, loc, rng, strength):
    fr = layers.frame
    kind = loc.kind or ("mass" if loc.size == "large" else None)
    kind = kind or str(rng.choice(["nodule", "mass", "granuloma"], p=[0.6, 0.25, 0.15]))
    field = np.zeros_like(layers.fill)
    zone = _zone(loc, rng, (0.4, 0.35, 0.25))
    for s in _sides(loc, rng):
        cx, cy = zone_point(a, s, zone, loc.medial, rng)
        lo, hi = {"mass": (0.07, 0.12), "granuloma": (0.015, 0.025)}.get(kind, (0.028, 0.05))
        r = max(rng.uniform(lo, hi), 1.3 * float(fr.px))
        dx, dy = fr.x - F32(cx), fr.y - F32(cy)
        dist = np.hypot(dx, dy)
        theta = np.arctan2(dy, dx)
        p1, p2 = rng.uniform(0, 2 * math.pi, 2)
        rr = F32(r) * (F32(1.0) + F32(0.1) * np.cos(3 * theta + F32(p1))
                       + F32(0.05) * np.cos(5 * theta + F32(p2)))
        blob = soft(rr - dist, 1.3 * float(fr.px)) * (F32(0.8) + F32(0.2) * soft(rr - dist, r))
        field = np.maximum(field, blob)
    layers.fill += F32(strength) * field
    layers.extra += F32((0.3 if kind == "granuloma" else 0.1) * strength) * field
    return _mask(field, 0.3)


def _effusion(a, layers, loc, rng, strength):
    fr = layers.frame
    x, y = fr.x, fr.y
    field = np.zeros_like(layers.fill)
    size = loc.size or str(rng.choice(["small", "moderate", "large"], p=[0.35, 0.45, 0.2]))
    lo, hi = {"small": (0.13, 0.19), "moderate": (0.25, 0.35)}.get(size, (0.45, 0.6))
    for s in _sides(loc, rng, p_both=0.3):
        i = 0 if s < 0 else 1
        h = rng.uniform(lo, hi) * (1.0 if strength >= 1 else 0.7)
        gu = np.abs(x) * F32(1.0 / a.side_w(s))
        level = F32(a.cp[i] - h) + F32(0.08 + 0.4 * h) * np.maximum(F32(1.0) - gu, F32(0.0)) ** 2
        side = layers.side_mask(s)
        field = np.maximum(field, soft(y - level, 0.05) * side)
    field *= soft(layers.lung - F32(0.02), 0.1)
    layers.fill += F32(strength) * field
    layers.extra += F32(0.05 * strength) * field
    return _mask(field, 0.35)


def _pleural_other(a, layers, loc, rng, strength):
    fr = layers.frame
    x, y = fr.x, fr.y
    field = np.zeros_like(layers.fill)
    for s in _sides(loc, rng, p_both=0.25):
        i = 0 if s < 0 else 1
        apical = loc.zone == "upper" or (loc.zone is None and rng.random() < 0.4)
        t = rng.uniform(0.035, 0.06) * (1.0 if strength >= 1 else 0.7)
        t = max(t, 1.5 * float(fr.px))
        thick = F32(t) * (F32(1.0) + F32(0.35) * smooth_noise(rng, fr.size, 8))
        inner = F32(1.0) - F32(2.3 / (0.53 * a.side_w(s))) * thick
        band = soft(layers.egg - inner, 0.08)
        if apical:
            window = soft(F32(a.apex[i] + 0.22) - y, 0.06)
        else:
            window = soft(y - F32(a.apex[i] + 0.25), 0.08) * soft(F32(a.cp[i] - 0.12) - y, 0.08)
            window = window * soft(np.abs(x) - F32(0.55 * a.side_w(s)), 0.05)
        side = layers.side_mask(s)
        field = np.maximum(field, band * window * side)
    field *= layers.lung
    layers.fill += F32(0.95 * strength) * field
    layers.extra += F32(0.06 * strength) * field
    return _mask(field, 0.3)


def _pneumothorax(a, layers, loc, rng, strength):
    fr = layers.frame
    x, y = fr.x, fr.y
    region = np.zeros_like(layers.fill)
    line = np.zeros_like(layers.fill)
    size = loc.size or str(rng.choice(["small", "moderate", "large"], p=[0.45, 0.4, 0.15]))
    lo, hi = {"small": (0.84, 0.9), "moderate": (0.72, 0.82)}.get(size, (0.55, 0.68))
    for s in _sides(loc, rng, p_both=0.05):
        i = 0 if s < 0 else 1
        c = rng.uniform(lo, hi)
        c = 1.0 - (1.0 - c) * (1.0 if strength >= 1 else 0.6)
        ax, ay = s * 0.15 * a.side_w(s), a.dome[i]
        xs, ys = F32(ax) + (x - F32(ax)) * F32(1 / c), F32(ay) + (y - F32(ay)) * F32(1 / c)
        col, _ = lung_field(a, xs, ys, float(fr.px) / c)
        side = layers.side_mask(s) * layers.lung
        side = side * np.maximum(soft(np.abs(x) - F32(0.35 * a.side_w(s)), 0.1),
                                 soft(F32(a.hilum[i] - 0.1) - y, 0.1))
        region = np.maximum(region, side * (F32(1.0) - col))
        line = np.maximum(line, side * F32(4.0) * col * (F32(1.0) - col))
    layers.keep *= F32(1.0) - region
    layers.lucent += F32(0.14 * strength) * region
    layers.extra += F32(0.16 * strength) * line
    return _mask(region, 0.5) | (line > 0.5)


# --------------------------------------------------------------------------- devices
def _devices(a, layers, loc, rng, strength):
    fr = layers.frame
    kinds = list(loc.devices)
    drawn = rng.choice(len(DEVICE_KINDS), size=2, replace=False, p=DEVICE_WEIGHTS)
    if not kinds:
        kinds = [DEVICE_KINDS[j] for j in drawn[: 1 + int(rng.random() < 0.35)]]
    canvas = np.zeros_like(layers.fill)
    v = float(strength)
    (lvx, lvy, lvrx, lvry, lvang), (rax, ray, _, rary, _) = heart_geometry(a, a.ctr)
    top = a.clav_y
    for kind in kinds:
        if kind == "ett":
            tip = a.carina - rng.uniform(0.08, 0.16)
            fr.stamp(canvas, spline([(0.0, -1.2), (0.01, -0.85), (0.0, tip)], 12), 0.045, 0.1 * v)
            fr.stamp(canvas, spline([(0.0, -1.2), (0.01, -0.85), (0.0, tip)], 12), 0.012, 0.9 * v)
        elif kind == "ng":
            d = a.dome[1]
            pts = [(0.015, -1.2), (0.03, top), (0.04, a.hilum[1]), (0.07, d - 0.03),
                   (0.3 * a.w[1], d + 0.14), (0.45 * a.w[1], d + 0.2), (0.38 * a.w[1], d + 0.28)]
            fr.stamp(canvas, spline(pts, 16), 0.013, 0.75 * v)
        elif kind == "line":
            s = -1 if loc.side == "right" else 1 if loc.side == "left" else rng.choice([-1, 1])
            tip = (-0.05, a.carina + rng.uniform(0.08, 0.2))
            if rng.random() < 0.55:  # internal jugular line
                pts = [(s * 0.3, -1.2), (s * 0.2, top - 0.08), (s * 0.09, top + 0.08), tip]
            else:  # PICC from the arm
                pts = [(s * 1.1, a.shoulder + 0.4), (s * 0.9 * a.w[1], top + 0.08),
                       (s * 0.3, top + 0.1), (-0.04, top + 0.2), tip]
            fr.stamp(canvas, spline(pts, 20), 0.011, 0.85 * v)
        elif kind == "pacemaker":
            s = -1 if loc.side == "right" else 1 if loc.side == "left" else (
                1 if rng.random() < 0.8 else -1)
            gx, gy = s * 0.62 * a.side_w(s), top + rng.uniform(0.08, 0.14)
            q = ellipse_q(fr.x, fr.y, gx, gy, 0.085, 0.06, rng.uniform(-0.3, 0.3))
            canvas = np.maximum(canvas, F32(v) * soft((F32(1.0) - q * q) * F32(0.04), fr.px))
            entry = [(gx - s * 0.07, gy), (s * 0.22, top + 0.06), (-0.02, top + 0.18),
                     (-0.06, a.carina + 0.12)]
            ra_pt = (rax - 0.02, ray - 0.2 * rary)
            rv_pt = (lvx + 0.5 * lvrx * math.cos(lvang), lvy + 0.5 * lvrx * math.sin(lvang))
            for target in [ra_pt, rv_pt][: 1 + int(rng.random() < 0.7)]:
                fr.stamp(canvas, spline(entry + [target], 16), 0.011, 0.9 * v)
        elif kind == "sternotomy":
            n = int(rng.integers(5, 8))
            for yy in np.linspace(top + 0.08, a.carina + 0.42, n):
                t = np.linspace(0, 2 * math.pi, 40)
                cx = rng.normal(0.0, 0.01)
                loop = np.stack([cx + 0.032 * np.cos(t), yy + 0.011 * np.sin(t)], axis=1)
                tail = np.array([[cx + 0.03, yy], [cx + 0.045, yy - 0.012]])
                fr.stamp(canvas, np.vstack([loop, tail]), 0.009, 1.0 * v)
        elif kind == "chest_tube":
            s = -1 if loc.side == "right" else 1 if loc.side == "left" else rng.choice([-1, 1])
            i = 0 if s < 0 else 1
            w = a.side_w(s)
            pts = [(s * (w + 0.14), a.cp[i] - 0.08), (s * (w - 0.03), a.cp[i] - 0.2),
                   (s * 0.62 * w, a.hilum[i] - 0.1), (s * 0.45 * w, a.apex[i] + 0.15)]
            fr.stamp(canvas, spline(pts, 16), 0.032, 0.3 * v)
            fr.stamp(canvas, spline(pts, 16), 0.008, 0.9 * v)
        else:  # clips
            cx, cy = (-0.35, a.dome[0] + 0.15) if rng.random() < 0.5 else (
                rng.choice([-1, 1]) * 0.55, top + 0.25)
            for _ in range(int(rng.integers(3, 6))):
                px, py = cx + rng.normal(0, 0.04), cy + rng.normal(0, 0.03)
                ang = rng.uniform(0, math.pi)
                d = 0.018 * np.array([math.cos(ang), math.sin(ang)])
                fr.stamp(canvas, np.array([[px, py] - d, [px, py] + d]), 0.01, 1.0 * v)
    canvas = ndimage.gaussian_filter(canvas, 0.5, truncate=2.0) if fr.size >= 96 else canvas
    layers.metal = np.maximum(layers.metal, canvas)
    return _mask(canvas, 0.05 * v)


_DRAW = {
    "Atelectasis": _atelectasis,
    "Consolidation": _consolidation,
    "Edema": _edema,
    "Lung Lesion": _lesion,
    "Lung Opacity": lambda *args: _patchy(*args, hazy=True),
    "Pleural Effusion": _effusion,
    "Pleural Other": _pleural_other,
    "Pneumonia": lambda *args: _patchy(*args, hazy=False),
    "Pneumothorax": _pneumothorax,
    "Support Devices": _devices,
}
PLANNED = ("Cardiomegaly", "Enlarged Cardiomediastinum", "Fracture")


def draw(name: str, a: Anatomy, layers: Layers, loc: Location | None, rng: np.random.Generator,
         strength: float) -> np.ndarray:
    """Draw one finding onto ``layers``; returns its (non-empty) bool mask."""
    if name in PLANNED:
        return _planned_mask(name, a, layers)
    return _DRAW[name](a, layers, loc or NO_LOCATION, rng, strength)

