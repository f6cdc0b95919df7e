"""The HTML gallery of test studies: image, ADM, diagnosis, knowledge, generated vs reference."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ekagen.observations import OBSERVATIONS

#: column heads of the label table: distinct (the first six letters are not: Pleura, Pneumo)
SHORT_NAMES = {"Atelectasis": "Atel", "Cardiomegaly": "Cardio", "Consolidation": "Consol",
               "Edema": "Edema", "Enlarged Cardiomediastinum": "EnlCM", "Fracture": "Fract",
               "Lung Lesion": "Lesion", "Lung Opacity": "Opacity", "No Finding": "NoFind",
               "Pleural Effusion": "Effusion", "Pleural Other": "PlOther",
               "Pneumonia": "Pneumonia", "Pneumothorax": "PTX", "Support Devices": "Devices"}


def overlay_rgb(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The uint8 radiograph as RGB with the ADM tinted red (plain when ``mask`` is None)."""
    rgb = np.repeat(image[..., None], 3, axis=2).astype(np.float32)
    if mask is not None and mask.any():
        rgb[mask] = 0.6 * rgb[mask] + 0.4 * np.array([255.0, 30.0, 30.0])
    return rgb.clip(0, 255).astype(np.uint8)


def overlay_png(image: np.ndarray, mask: np.ndarray | None, path: Path) -> None:
    """:func:`overlay_rgb` saved as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_rgb(image, mask)).save(path)


def _labels_row(values: np.ndarray) -> str:
    cells = []
    for v in values:
        text, css = {1: ("+", "pos"), 0: ("−", "neg"), -1: ("?", "unc")}.get(
            int(v) if v == v else 9, ("", "blank"))
        cells.append(f'<td class="{css}">{text}</td>')
    return "".join(cells)


def write_gallery(path: str | Path, rows: Sequence[dict]) -> Path:
    """``rows``: dicts with id, image (relative png), adm (relative png), diagnosis (list),
    knowledge (text), knowledge_rule, generated, reference, generated_labels and
    reference_labels (14 values: 1/0/-1/NaN)."""
    path = Path(path)
    head = "".join(f"<th title='{html.escape(o)}'>{html.escape(SHORT_NAMES[o])}</th>"
                   for o in OBSERVATIONS)
    blocks = []
    for r in rows:
        blocks.append(f"""
<section><h3>{html.escape(str(r['id']))}</h3>
<div class="imgs"><figure><img src="{r['image']}"><figcaption>image</figcaption></figure>
<figure><img src="{r['adm']}"><figcaption>ADM</figcaption></figure></div>
<div class="text">
<p><b>Diagnosis:</b> {html.escape(', '.join(r['diagnosis']) or 'none')}</p>
<p><b>Knowledge</b> ({html.escape(r['knowledge_rule'])}): <i>{html.escape(r['knowledge'])}</i></p>
<p><b>Generated:</b> {html.escape(r['generated'])}</p>
<p><b>Reference:</b> {html.escape(r['reference'])}</p>
<table><tr><th></th>{head}</tr>
<tr><th>generated</th>{_labels_row(r['generated_labels'])}</tr>
<tr><th>reference</th>{_labels_row(r['reference_labels'])}</tr></table>
</div></section>""")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>ekagen gallery</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}
section{{border-bottom:1px solid #ccc;padding:8px 0;display:flex;gap:16px}}
section h3{{width:110px;font-size:13px}} .imgs{{display:flex;gap:6px}}
img{{width:180px;height:180px;image-rendering:pixelated}} figure{{margin:0;font-size:11px}}
.text{{flex:1;font-size:13px}} table{{border-collapse:collapse;font-size:11px}}
td,th{{border:1px solid #ddd;padding:1px 4px;text-align:center}}
.pos{{background:#f7b0b0}} .neg{{background:#c8e6c9}} .unc{{background:#fff3b0}}</style>
</head><body><h1>ekagen: test studies</h1>
<p>Labels by the project's labeler: + positive, − negative, ? uncertain, blank not mentioned.
</p>{''.join(blocks)}</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
