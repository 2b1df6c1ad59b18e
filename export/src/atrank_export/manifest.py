"""The content manifest of a model package: spec.json's ``files`` key.

Every file that spec.json names (graphs, tables.bin, vocabularies, catalog keys and columns)
is listed under its path
as written in the spec, with its SHA-256 and size::

    "files": {"model.onnx": {"sha256": "<64 lowercase hex>", "bytes": 1234}, ...}

The runtime checks each file's size and hash before it uses the file and refuses a package
whose files do not match (INVALID_PACKAGE). spec.json itself and golden.json (test data,
not read when scoring) are not listed. See docs/package-format.md, 'Integrity'.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPEC = "spec.json"


def referenced_files(spec: dict[str, Any]) -> list[str]:
    """The relative paths a spec (spec_version 3) names, in spec order, without duplicates:
    ``graph.file``, ``graph.encoder.file``, ``graph.scorer.file``, ``graph.external_data``,
    every ``tables[].vocab``, every ``groups[].catalog.keys`` and ``.columns`` value, every
    ``atv_index`` value."""
    version = spec.get("spec_version")
    if version != 3:
        raise ValueError(f"unknown spec_version {version!r} (this exporter writes 3)")
    graph = spec.get("graph", {})
    paths = [graph.get("file"), graph.get("encoder", {}).get("file"),
             graph.get("scorer", {}).get("file"), *graph.get("external_data", [])]
    paths += [t.get("vocab") for t in spec.get("tables", {}).values()]
    for g in spec.get("groups", []):
        cat = g.get("catalog") or {}
        paths.append(cat.get("keys"))
        paths += list(cat.get("columns", {}).values())
    paths += list(spec.get("atv_index", {}).values())
    return list(dict.fromkeys(p for p in paths if p is not None))


def file_manifest(package_dir: str | Path, relative_paths: Iterable[str]) -> dict[str, dict]:
    """{path: {"sha256": hex, "bytes": size}} of each file, read from ``package_dir``."""
    root = Path(package_dir)
    out = {}
    for rel in relative_paths:
        h, size = hashlib.sha256(), 0
        with open(root / rel, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
        out[rel] = {"sha256": h.hexdigest(), "bytes": size}
    return out


def write_manifest(package_dir: str | Path) -> dict[str, dict]:
    """(Re)write spec.json's ``files`` key from the files now in ``package_dir``; the rest of
    the spec is kept as it is (same key order, indent 2, as the exporters write it), with
    ``files`` last. Returns the manifest."""
    path = Path(package_dir) / SPEC
    spec = json.loads(path.read_text(encoding="utf-8"))
    spec.pop("files", None)
    spec["files"] = file_manifest(package_dir, referenced_files(spec))
    path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return spec["files"]


def add_atv_indexes(package_dir: str | Path) -> dict[str, str]:
    """Give every atv file the spec names (tables' vocabularies, catalogs' keys) a hashed index
    ``<file>x`` (docs/package-format.md, "The atv index file"), record them in spec.json's
    ``atv_index`` and rewrite ``files``: packages written before indexes existed look up
    faster after it, with the same answers. Returns ``atv_index``."""
    from .vocabfile import Atv, write_atv_index

    root = Path(package_dir)
    path = root / SPEC
    spec = json.loads(path.read_text(encoding="utf-8"))
    atvs = [t["vocab"] for t in spec.get("tables", {}).values()]
    atvs += [g["catalog"]["keys"] for g in spec.get("groups", []) if g.get("catalog")]
    index = {}
    for rel in dict.fromkeys(atvs):
        index[rel] = f"{rel}x"
        write_atv_index(root / index[rel], Atv.open(root / rel).keys())
    spec["atv_index"] = index
    path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    write_manifest(root)
    return index


def verify(package_dir: str | Path) -> list[str]:
    """Recompute every listed file's sha256 and size; -> the problems found (empty: intact).
    Also reports a file the spec names that ``files`` does not list, and a stale entry."""
    root = Path(package_dir)
    spec = json.loads((root / SPEC).read_text(encoding="utf-8"))
    files = spec.get("files")
    if not isinstance(files, dict):
        return [f"{root / SPEC}: no files manifest"]
    named = referenced_files(spec)
    problems = [f"{p}: named by the spec but not in files" for p in named if p not in files]
    problems += [f"{p}: in files but not named by the spec" for p in files if p not in named]
    for rel, entry in files.items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel}: missing or not a regular file")
            continue
        got = file_manifest(root, [rel])[rel]
        if got["bytes"] != entry.get("bytes"):
            problems.append(f"{rel}: {got['bytes']} bytes, files says {entry.get('bytes')}")
        elif got["sha256"] != entry.get("sha256"):
            problems.append(f"{rel}: sha256 {got['sha256']}, files says {entry.get('sha256')}")
    return problems
