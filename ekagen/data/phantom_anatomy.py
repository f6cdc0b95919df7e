"""Procedural chest anatomy for the phantom radiographs.

Everything is built as attenuation ("density") layers on a pixel grid, in *anatomy coordinates*:
x from -1 (image left = patient right) to 1, y from -1 (top) to 1 (bottom), the midline at x = 0.
A :class:`Frame` maps pixels to anatomy coordinates with the acquisition's rotation, shift and
magnification, so every structure moves together when a view is positioned differently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage

F32 = np.float32
RIB_GROWTH = 0.3  # posterior rib spacing grows by this fraction per unit of height


# --------------------------------------------------------------------------- grids and drawing
@lru_cache(maxsize=32)
def _axis(size: int) -> np.ndarray:
    """Pixel-centre coordinates from -1 to 1 along one axis."""
    a = ((np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0).astype(F32)
    a.flags.writeable = False
    return a


@lru_cache(maxsize=64)
def _interp_matrix(size: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, cells) Gaussian interpolation weights from a coarse lattice to pixels."""
    pos = (np.arange(size) + 0.5) / size * (cells - 1)
    d = pos[:, None] - np.arange(cells)[None, :]
    w = np.exp(-0.5 * (d / 0.75) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    w = w.astype(F32)
    wt = np.ascontiguousarray(w.T)
    w.flags.writeable = False
    wt.flags.writeable = False
    return w, wt


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth zero-mean, roughly unit-variance noise with ``cells`` blobs across the image."""
    m, mt = _interp_matrix(size, cells)
    coarse = rng.standard_normal((cells, cells), dtype=F32)
    rows = (m[:, :, None] * coarse[None, :, :]).sum(axis=1)  # (size, cells)
    out = rows[:, 0:1] * mt[0:1, :]  # outer products, not BLAS: no thread pool on small work
    for k in range(1, cells):
        out += rows[:, k : k + 1] * mt[k : k + 1, :]
    return out * F32(1.0 / max(float(out.std()), 1e-6))


@lru_cache(maxsize=64)
def _disc_offsets(radius10: int) -> tuple[np.ndarray, np.ndarray]:
    r = max(radius10 / 10.0, 0.5)
    n = int(math.ceil(r))
    oy, ox = np.mgrid[-n : n + 1, -n : n + 1]
    keep = ox**2 + oy**2 <= r * r + 0.3
    return oy[keep].astype(np.int64), ox[keep].astype(np.int64)


@dataclass
class Frame:
    """Pixel grid of one acquisition and its pixel <-> anatomy mapping."""

    size: int
    cos: float = 1.0
    sin: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    scale: float = 1.0
    x: np.ndarray = field(init=False, repr=False)  # anatomy x of every pixel
    y: np.ndarray = field(init=False, repr=False)  # anatomy y of every pixel
    px: np.float32 = field(init=False, repr=False)  # one pixel in anatomy units

    def __post_init__(self) -> None:
        a = _axis(self.size)
        c, s, k = self.cos / self.scale, self.sin / self.scale, 1.0 / self.scale
        dx, dy = a - F32(self.tx), a - F32(self.ty)
        self.x = (F32(c) * dx)[None, :] + (F32(s) * dy)[:, None]
        self.y = (F32(-s) * dx)[None, :] + (F32(c) * dy)[:, None]
        self.px = F32(2.0 * k / self.size)

    def to_pixels(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) anatomy points -> (rows, cols) float pixel coordinates."""
        xa, ya = pts[:, 0] * self.scale, pts[:, 1] * self.scale
        x = self.cos * xa - self.sin * ya + self.tx
        y = self.sin * xa + self.cos * ya + self.ty
        return (y + 1.0) * 0.5 * self.size - 0.5, (x + 1.0) * 0.5 * self.size - 0.5

    def stamp(self, canvas: np.ndarray, pts: np.ndarray, width: float, value) -> None:
        """Draw a polyline (N, 2) of ``width`` (anatomy units) into ``canvas`` by maximum."""
        pts = np.asarray(pts, dtype=np.float64)
        value = np.broadcast_to(np.asarray(value, dtype=np.float64), (len(pts),))
        if len(pts) > 1:  # resample at ~0.5 px spacing
            seg = np.hypot(*np.diff(pts, axis=0).T) / float(self.px)
            t = np.concatenate([[0.0], np.cumsum(seg)])
            tt = np.linspace(0.0, t[-1], max(int(t[-1] / 0.5) + 2, 2))
            value = np.interp(tt, t, value)
            pts = np.stack([np.interp(tt, t, pts[:, 0]), np.interp(tt, t, pts[:, 1])], axis=1)
        self.stamp_points(canvas, pts, width, value)

    def stamp_points(self, canvas: np.ndarray, pts: np.ndarray, width: float, values) -> None:
        """Draw discs of diameter ``width`` at dense points (N, 2) into ``canvas`` by maximum."""
        if len(pts) == 0:
            return
        rows, cols = self.to_pixels(pts)
        oy, ox = _disc_offsets(int(round(5.0 * width / float(self.px))))
        r = np.rint(rows).astype(np.int64)[:, None] + oy[None, :]
        c = np.rint(cols).astype(np.int64)[:, None] + ox[None, :]
        v = np.broadcast_to(np.asarray(values, dtype=F32).reshape(-1, 1), r.shape)
        ok = (r >= 0) & (r < self.size) & (c >= 0) & (c < self.size)
        idx, v = (r * self.size + c)[ok], v[ok]
        order = np.argsort(v, kind="stable")  # ascending: the last (largest) write wins
        idx, v = idx[order], v[order]
        flat = canvas.reshape(-1)
        flat[idx] = np.maximum(flat[idx], v)


def soft(v: np.ndarray, width) -> np.ndarray:
    """0 -> 1 ramp of ``v`` (a signed distance, positive inside) over ``width``."""
    return np.clip(v / F32(width) + F32(0.5), F32(0.0), F32(1.0))


def ellipse_q(x, y, cx, cy, rx, ry, angle=0.0) -> np.ndarray:
    """Normalised squared radius of an (optionally rotated) ellipse."""
    dx, dy = x - F32(cx), y - F32(cy)
    if angle:
        c, s = F32(math.cos(angle)), F32(math.sin(angle))
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    return (dx * F32(1.0 / rx)) ** 2 + (dy * F32(1.0 / ry)) ** 2


def segment_distance(x, y, p0, p1) -> np.ndarray:
    """Distance of every pixel from the segment p0-p1 (anatomy units)."""
    ax, ay = p0
    bx, by = p1
    vx, vy = bx - ax, by - ay
    ll = max(vx * vx + vy * vy, 1e-12)
    t = np.clip(((x - F32(ax)) * F32(vx) + (y - F32(ay)) * F32(vy)) * F32(1.0 / ll), 0.0, 1.0)
    return np.hypot(x - F32(ax) - t * F32(vx), y - F32(ay) - t * F32(vy))


def spline(ctrl, n: int = 40) -> np.ndarray:
    """Catmull-Rom curve through the control points (K, 2) -> (n*(K-1), 2)."""
    p = np.asarray(ctrl, dtype=np.float64)
    p = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    t = np.linspace(0.0, 1.0, n, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    out.append(p[-2][None, :])
    return np.vstack(out)


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Anatomy:
    """One patient's body habitus (drawn once per study; shared by all its views)."""

    w: tuple[float, float]  # lateral lung extent, (patient right, patient left)
    apex: tuple[float, float]  # y of the lung apices
    dome: tuple[float, float]  # y of the diaphragm domes (right higher)
    cp: tuple[float, float]  # y of the costophrenic angles
    widest: float  # y where the lungs are widest
    body_margin: float  # chest wall soft tissue beyond the lungs
    shoulder: float  # y of the shoulders
    neck: float  # half-width of the neck
    med: tuple[float, float]  # upper mediastinal half-widths
    knob: float  # aortic knob bulge
    ctr: float  # cardiothoracic ratio of the normal heart
    heart_tilt: float  # radians
    carina: float  # y of the carina
    hilum: tuple[float, float]  # y of the hila
    rib_y0: float
    rib_sp: float
    clav_y: float
    spine_phase: float
    breast: float  # 0 (none) or density of breast shadows
    bubble: float  # size of the gastric air bubble (0 none)
    thickness: float  # soft tissue density
    vessel_seed: int

    def side_w(self, s: int) -> float:
        return self.w[0] if s < 0 else self.w[1]


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    u = rng.uniform
    wr = u(0.72, 0.82)
    wl = wr * u(0.97, 1.04)
    apex = u(-0.80, -0.68)
    dome_r = u(0.30, 0.42)
    dome_l = dome_r + u(0.03, 0.08)
    cp = max(dome_r, dome_l) + u(0.17, 0.24)
    hil = apex + u(0.52, 0.6)
    return Anatomy(
        w=(wr, wl), apex=(apex + u(-0.02, 0.02), apex + u(-0.02, 0.02)), dome=(dome_r, dome_l),
        cp=(cp - u(0.0, 0.03), cp), widest=apex + u(0.70, 0.80) * (cp - apex),
        body_margin=u(0.07, 0.15), shoulder=apex - u(0.04, 0.14), neck=u(0.17, 0.23),
        med=(u(0.10, 0.13), u(0.11, 0.14)), knob=u(0.035, 0.055), ctr=u(0.40, 0.46),
        heart_tilt=math.radians(u(28.0, 42.0)), carina=hil - u(0.08, 0.14),
        hilum=(hil, hil - u(0.02, 0.06)), rib_y0=apex - u(0.02, 0.06), rib_sp=u(0.105, 0.125),
        clav_y=apex + u(0.12, 0.2), spine_phase=u(0.0, 1.0),
        breast=u(0.06, 0.12) if rng.random() < 0.4 else 0.0,
        bubble=u(0.7, 1.3) if rng.random() < 0.75 else 0.0, thickness=u(0.92, 1.02),
        vessel_seed=int(rng.integers(0, 2**31 - 1)),
    )


@dataclass
class Mods:
    """Finding-driven changes made while the anatomy itself is drawn."""

    ctr: float | None = None  # target cardiothoracic ratio (None: the patient's normal)
    mediastinum: float = 1.0  # widening factor of the upper mediastinum
    fracture: tuple | None = None  # (side, rib, lateral position, step, gap, callus)


# --------------------------------------------------------------------------- geometry helpers
def side_params(a: Anatomy, x: np.ndarray):
    """Per-pixel parameters picked by the side of the midline the pixel lies on."""
    right = x < 0

    def pick(pair):
        return np.where(right, F32(pair[0]), F32(pair[1]))

    return right, pick


def lung_egg(a: Anatomy, x, y, pick):
    """Egg-shaped lung outline: value < 1 inside. Returns (value, lateral radius)."""
    w = pick(a.w)
    u = np.abs(x)
    u0 = F32(0.47) * w
    rad = np.where(u > u0, w - u0, u0 - F32(0.02))
    ap = pick(a.apex)
    yc = F32(a.widest)
    b = np.where(y < yc, yc - ap, F32(0.55))
    return (np.abs(u - u0) / rad) ** F32(2.3) + ((y - yc) / b) ** 2, rad


def dome_y(a: Anatomy, u, pick):
    """Height of the diaphragm at lateral distance ``u`` from the midline."""
    w, pk, cp = pick(a.w), pick(a.dome), pick(a.cp)
    upk = F32(0.42) * w
    lat = pk + (cp - pk) * ((u - upk) / (w - upk)) ** 2
    med = pk + F32(0.07) * ((upk - u) / upk) ** 2
    return np.where(u > upk, lat, med)


def medial_edge(a: Anatomy, y, pick, widen: float = 1.0):
    """Half-width of the mediastinum (the lungs' medial border) at height ``y``."""
    m = pick(a.med)
    knob_y = a.carina - 0.07
    right = pick((0.0, 1.0))
    knob = right * F32(a.knob) * np.sqrt(np.maximum(F32(1.0) - ((y - F32(knob_y)) / F32(0.1))
                                                    ** 2, F32(0.0)))
    upper = soft(F32(a.hilum[0] + 0.1) - y, 0.2) * soft(y - F32(a.clav_y - 0.15), 0.2)
    grow = F32(1.0) + F32(widen - 1.0) * upper
    return (m + knob) * grow


def lung_field(a: Anatomy, x, y, px: float, widen: float = 1.0):
    """Soft (anti-aliased) lung mask of both lungs at coordinates ``x``, ``y``."""
    _, pick = side_params(a, x)
    e, rad = lung_egg(a, x, y, pick)
    u = np.abs(x)
    ew = F32(1.4 * px)
    s_egg = soft((F32(1.0) - e) * rad * F32(0.45), ew)
    s_dome = soft(dome_y(a, u, pick) - y, ew)
    s_med = soft(u - medial_edge(a, y, pick, widen), ew)
    return s_egg * s_dome * s_med, e


def lateral_edge(a: Anatomy, s: int, y: float) -> float:
    """Lateral lung border |x| on side ``s`` at height ``y`` (scalar version of lung_egg)."""
    w = a.side_w(s)
    ap = a.apex[0] if s < 0 else a.apex[1]
    b = (a.widest - ap) if y < a.widest else 0.55
    t = max(1.0 - ((y - a.widest) / b) ** 2, 0.0)
    return 0.47 * w + (w - 0.47 * w) * t ** (1 / 2.3)


def rib_y(a: Anatomy, s: int, r: float, gu: float) -> float:
    """Height of posterior-rib coordinate ``r`` at lateral fraction ``gu`` on side ``s``."""
    phi = a.rib_y0 + math.expm1(r * RIB_GROWTH * 0.85 * a.rib_sp) / RIB_GROWTH
    return phi + a.side_w(s) * (0.46 * gu * gu - 0.12 * gu)


def heart_geometry(a: Anatomy, ctr: float):
    """Two ellipses (left ventricle, right atrium) sized to the requested CTR."""
    wm = 0.5 * (a.w[0] + a.w[1])
    base = 0.5 * (a.dome[0] + a.dome[1]) + 0.1
    t = a.heart_tilt
    lv = [0.14 * wm, -0.38 * wm, 0.52 * wm, 0.31 * wm, t]
    ra = [-0.13 * wm, -0.36 * wm, 0.15 * wm, 0.33 * wm, 0.0]

    def half_w(e):
        return math.sqrt((e[2] * math.cos(e[4])) ** 2 + (e[3] * math.sin(e[4])) ** 2)

    left = lv[0] + half_w(lv)
    right = min(lv[0] - half_w(lv), ra[0] - half_w(ra))
    k = ctr * (a.w[0] + a.w[1]) / (left - right)
    out = []
    for e in (lv, ra):
        out.append((e[0] * k, base + e[1] * k, e[2] * k, e[3] * k, e[4]))
    return out


def heart_field(a: Anatomy, x, y, px: float, ctr: float) -> np.ndarray:
    h = None
    for cx, cy, rx, ry, ang in heart_geometry(a, ctr):
        q = ellipse_q(x, y, cx, cy, rx, ry, ang)
        v = soft((F32(1.0) - np.sqrt(q)) * F32(min(rx, ry)), F32(1.4 * px))
        h = v if h is None else np.maximum(h, v)
    return h


# --------------------------------------------------------------------------- layers
@dataclass
class Layers:
    """Density layers of one rendering; findings edit ``fill``/``extra``/``metal``/``keep``."""

    frame: Frame
    tissue: np.ndarray  # soft-tissue density of the body
    lung: np.ndarray  # soft mask of both lungs
    egg: np.ndarray  # lung outline value (< 1 inside), for pleural bands
    air: np.ndarray  # lung air (before findings)
    heart: np.ndarray  # soft heart
    heart_mask: np.ndarray  # bool, heart above the diaphragm
    bone: np.ndarray
    vessels: np.ndarray  # pulmonary vessel tree (0..1, not yet limited to the lungs)
    airway: np.ndarray  # trachea, bronchi, gastric bubble (air to subtract)
    soft_extra: np.ndarray  # hila, breasts, aortic knob
    mediastinum_mask: np.ndarray  # bool, upper mediastinum
    fracture_site: tuple[float, float] | None = None
    fill: np.ndarray = field(init=False)  # fraction of lung air replaced by a finding
    extra: np.ndarray = field(init=False)  # density added by findings
    metal: np.ndarray = field(init=False)  # devices
    lucent: np.ndarray = field(init=False)  # air added by findings (pneumothorax)
    keep: np.ndarray = field(init=False)  # fraction of vessel markings kept

    def __post_init__(self) -> None:
        shape = self.tissue.shape
        self.fill = np.zeros(shape, F32)
        self.extra = np.zeros(shape, F32)
        self.metal = np.zeros(shape, F32)
        self.lucent = np.zeros(shape, F32)
        self.keep = np.ones(shape, F32)

    def side_mask(self, s: int) -> np.ndarray:
        """Pixels on patient side ``s`` (-1 right = image left, +1 left)."""
        return self.frame.x < 0 if s < 0 else self.frame.x >= 0


def _body(a: Anatomy, fr: Frame, pick) -> tuple[np.ndarray, np.ndarray]:
    x, y = fr.x, fr.y
    u = np.abs(x)
    bw = pick(a.w) + F32(a.body_margin) + F32(0.06) * soft(y - F32(a.cp[1]), 0.6)
    ew = F32(1.5 * fr.px)
    shoulder_w = bw + F32(0.1)
    ramp = np.clip((u - F32(a.neck)) / (shoulder_w - F32(a.neck)), 0.0, 1.0)
    top = F32(a.shoulder) - F32(0.3) * (F32(1.0) - ramp) ** 2 + F32(0.12) * ramp**6
    torso = soft(bw - u, ew) * soft(y - top, 4 * ew)
    t_torso = torso * np.clip(F32(1.0) - (u / bw) ** 2, 0.0, 1.0) ** F32(0.3)
    neck = soft(F32(a.neck) - u, ew) * np.sqrt(np.clip(F32(1.0) - (u / F32(a.neck)) ** 2, 0, 1))
    arm = soft(u - bw, 0.1) * soft(F32(a.shoulder + 0.3) - y, 0.25) * soft(y - top, 4 * ew)
    tissue = np.maximum(np.maximum(t_torso, F32(0.75) * neck), F32(0.6) * arm)
    tissue = tissue + F32(0.1) * soft(F32(a.clav_y + 0.05) - y, 0.25) * torso
    hum = ellipse_q(u, y, float(a.w[1] + a.body_margin + 0.13), a.shoulder + 0.14, 0.13, 0.15)
    hum_b = soft((F32(1.0) - np.sqrt(hum)) * F32(0.13), ew)
    humerus = hum_b * (F32(0.7) + F32(0.6) * np.exp(-(((hum - 0.85) / 0.12) ** 2)))
    return tissue * F32(a.thickness), humerus


def _ribs(a: Anatomy, fr: Frame, pick, mods: Mods) -> np.ndarray:
    x, y = fr.x, fr.y
    u = np.abs(x)
    w = pick(a.w)
    gu = u / w
    phi = y - w * (F32(0.46) * gu * gu - F32(0.12) * gu)
    r = np.log1p(F32(RIB_GROWTH) * np.maximum(phi - F32(a.rib_y0), F32(-1.0)))
    r = r * F32(1.0 / (RIB_GROWTH * 0.85 * a.rib_sp))
    tf = F32(0.36) + F32(0.08) * gu
    e = F32(1.3) * fr.px / F32(a.rib_sp)

    def profile(rr):
        f = rr - np.floor(rr)
        band = soft(f, e) * soft(tf - f, e)
        cortex = np.exp(-((f / F32(0.07)) ** 2)) + np.exp(-(((tf - f) / F32(0.06)) ** 2))
        return band * (F32(0.65) + F32(0.5) * cortex)

    post = profile(r)
    if mods.fracture is not None:  # lateral fragment of rib k displaced, with a lucent gap
        s, k, guf, step, gap_w, _ = mods.fracture
        side = (x < 0) if s < 0 else (x >= 0)
        on = side & (gu > guf)
        shifted = r - F32(step)
        post = np.where(on & (np.floor(r) == k), F32(0.0), post)
        post = post + (on & (np.floor(shifted) == k)) * profile(shifted)
        rib_k = side & (r > k - 0.6) & (r < k + 1.0)
        post = post * (F32(1.0) - rib_k * np.exp(-(((gu - F32(guf)) / F32(gap_w)) ** 2)))
    post = post * ((r >= 0) & (r < 11.6)) * soft(gu - F32(0.13), 0.06) * soft(F32(1.1) - gu, 0.06)
    phia = y - w * (F32(0.5) * np.maximum(F32(1.0) - gu, F32(0.0)) ** F32(1.2) + F32(0.3))
    ra = (phia - F32(a.rib_y0 + 0.03)) / F32(a.rib_sp * 1.08)
    fa = ra - np.floor(ra)
    ant = soft(fa, 2 * e) * soft(F32(0.3) - fa, 2 * e) * ((ra >= 0) & (ra < 7))
    ant = ant * soft(gu - F32(0.42), 0.15) * soft(F32(1.08) - gu, 0.06)
    return F32(0.11) * post + F32(0.05) * ant


def _clavicles(a: Anatomy, fr: Frame, pick) -> np.ndarray:
    x, y = fr.x, fr.y
    u = np.abs(x)
    span = pick(a.w) * F32(1.12)
    g = np.clip(u / span, 0.0, 1.2)
    yc = F32(a.clav_y) - F32(0.15) * g + F32(0.02) * np.sin(F32(2 * math.pi) * g)
    th = F32(0.028) + F32(0.012) * (F32(1.0) - g) + F32(0.012) * g**4
    d = th - np.abs(y - yc)
    band = soft(d, 1.3 * fr.px) * soft(u - F32(0.06), 0.03) * soft(span + F32(0.02) - u, 0.03)
    cortex = np.exp(-((d / th / F32(0.3)) ** 2))
    return band * (F32(0.22) + F32(0.14) * cortex)


def _spine(a: Anatomy, fr: Frame) -> np.ndarray:
    x, y = fr.x, fr.y
    ax = np.abs(x)
    pv = F32(0.095)
    v = y / pv + F32(a.spine_phase)
    fv = v - np.floor(v)
    band = soft(F32(0.062) - ax, 1.5 * fr.px)
    disc = soft(fv - F32(0.84), 0.05) * soft(F32(0.99) - fv, 0.05)
    plate = np.exp(-(((fv - 0.06) / 0.05) ** 2)) + np.exp(-(((fv - 0.8) / 0.05) ** 2))
    body = band * (F32(1.0) - F32(0.6) * disc + F32(0.3) * plate)
    ped = np.exp(-(((ax - F32(0.045)) / F32(0.012)) ** 2 + ((fv - F32(0.35)) / F32(0.13)) ** 2))
    spin = np.exp(-((x / F32(0.012)) ** 2 + ((fv - F32(0.62)) / F32(0.12)) ** 2))
    return F32(0.11) * body + F32(0.10) * ped + F32(0.07) * spin


def _vessels(a: Anatomy, fr: Frame) -> np.ndarray:
    rng = np.random.default_rng(a.vessel_seed)
    canvas = np.zeros((fr.size, fr.size), F32)
    widths, values = (0.022, 0.013, 0.008, 0.006, 0.004), (1.0, 0.75, 0.55, 0.42, 0.3)
    per_level: list[list[np.ndarray]] = [[] for _ in widths]
    per_value: list[list[np.ndarray]] = [[] for _ in widths]
    for i, s in enumerate((-1, 1)):
        w = a.side_w(s)
        start = np.array([[s * (a.med[i] + 0.04), a.hilum[i]]])
        base = np.radians(np.array([-95, -70, -45, -20, 5, 30, 55, 80]) + rng.uniform(-8, 8, 8))
        ang = np.where(s > 0, base, np.pi - base)
        start = np.repeat(start, len(ang), axis=0)
        length = rng.uniform(0.13, 0.19, len(ang)) * w / 0.68
        for lvl in range(len(widths)):
            d = np.stack([np.cos(ang), np.sin(ang)], axis=1)
            end = start + length[:, None] * d
            n = max(int(length.max() / float(fr.px) / 0.5) + 2, 2)
            t = np.linspace(0.0, 1.0, n)[None, :, None]
            bend = rng.normal(0.0, 0.12, len(ang))[:, None, None] * length[:, None, None]
            perp = np.stack([-d[:, 1], d[:, 0]], axis=1)[:, None, :]
            pts = start[:, None, :] + t * (end - start)[:, None, :] + bend * perp * np.sin(
                np.pi * t)
            per_level[lvl].append(pts.reshape(-1, 2))
            per_value[lvl].append(np.full(pts.shape[0] * n, values[lvl]))
            spread = np.radians(rng.uniform(16, 34, len(ang)))
            ang = np.concatenate([ang + spread, ang - spread]) + rng.normal(0, 0.1, 2 * len(ang))
            start = np.concatenate([end, end])
            length = np.concatenate([length, length]) * rng.uniform(0.62, 0.8, 2 * len(length))
    for lvl, wd in enumerate(widths):
        fr.stamp_points(canvas, np.concatenate(per_level[lvl]), wd,
                        np.concatenate(per_value[lvl]))
    return ndimage.gaussian_filter(canvas, 0.6, truncate=2.5)


def render_anatomy(a: Anatomy, fr: Frame, mods: Mods) -> Layers:
    x, y = fr.x, fr.y
    u = np.abs(x)
    _, pick = side_params(a, x)
    px = float(fr.px)
    tissue, humerus = _body(a, fr, pick)
    lung, egg = lung_field(a, x, y, px, mods.mediastinum)
    depth = F32(0.45) + F32(0.55) * np.clip((F32(1.0) - egg) * F32(2.2), 0.0, 1.0)
    dome = dome_y(a, u, pick)
    depth = depth * (F32(0.75) + F32(0.25) * np.clip((dome - y) * F32(8.0), 0.0, 1.0))
    ctr = a.ctr if mods.ctr is None else mods.ctr
    heart = heart_field(a, x, y, px, ctr)
    heart_mask = (heart > 0.5) & (y < dome + F32(0.01))
    bone = _ribs(a, fr, pick, mods) + _clavicles(a, fr, pick) + _spine(a, fr)
    bone = bone * soft(tissue - F32(0.05), 0.1) + F32(0.22) * humerus
    trachea = soft(F32(0.03) - u, 1.4 * px) * soft(F32(a.carina) - y, 0.03)
    airway = trachea
    for i, s in enumerate((-1, 1)):
        hil = (s * (a.med[i] + 0.06), a.hilum[i] - 0.03)
        d = segment_distance(x, y, (0.0, a.carina - 0.01), hil)
        airway = np.maximum(airway, soft(F32(0.018) - d, 1.4 * px) * (F32(1.0) - lung))
    if a.bubble:
        q = ellipse_q(x, y, 0.45 * a.w[1], a.dome[1] + 0.11, 0.11 * a.bubble, 0.06 * a.bubble)
        bubble = soft(F32(1.0) - q, 0.8) * soft(y - dome - F32(0.02), 0.04) * (x > 0)
        airway = airway + F32(0.7) * bubble
    soft_extra = np.zeros_like(tissue)
    for i, s in enumerate((-1, 1)):
        q = ellipse_q(x, y, s * (a.med[i] + 0.09), a.hilum[i], 0.07, 0.09)
        soft_extra += F32(0.2) * np.exp(-q * F32(1.5))
        if a.breast:
            cy, ry = a.dome[i] + 0.08, 0.3
            q = ellipse_q(x, y, s * 0.55 * a.side_w(s), cy, 0.5 * a.side_w(s), ry)
            top = np.clip((y - F32(cy - ry)) * F32(1.0 / (1.4 * ry)), 0.0, 1.0)
            soft_extra += F32(a.breast) * soft((F32(1.0) - q) * F32(0.2), 0.015) * top
    heart_top = min(c[1] - c[3] for c in heart_geometry(a, ctr))
    med = medial_edge(a, y, pick, mods.mediastinum)
    mediastinum_mask = (u < med) & (y > a.clav_y - 0.1) & (y < heart_top + 0.05)
    site = None
    if mods.fracture is not None:
        s, k, guf, _, _, callus = mods.fracture
        site = (s * guf * a.side_w(s), rib_y(a, s, k + 0.2, guf))
        q = ellipse_q(x, y, site[0], site[1], 0.045, 0.026, -s * 0.5)
        bone = bone + F32(callus) * np.exp(-q)
    return Layers(frame=fr, tissue=tissue, lung=lung, egg=egg, air=lung * depth, heart=heart,
                  heart_mask=heart_mask, bone=bone, vessels=_vessels(a, fr), airway=airway,
                  soft_extra=soft_extra, mediastinum_mask=mediastinum_mask, fracture_site=site)
