"""The content manifest of a model package: spec.json's ``files`` key.

Every file that spec.json names (graphs, vocabularies, catalogs) is listed under its path
as written in the spec, with its SHA-256 and size::

    "files": {"model.onnx": {"sha256": "<64 lowercase hex>", "bytes": 1234}, ...}

The runtime checks each file's size and hash before it uses the file and refuses a package
whose files do not match (INVALID_PACKAGE). spec.json itself and golden.json (test data,
not read when scoring) are not listed. See docs/package-format.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPEC = "spec.json"


def referenced_files(spec: dict[str, Any]) -> list[str]:
    """The relative paths a spec names, in spec order, without duplicates.

    spec_version 1: ``graph.file``, ``groups[].features[].vocab``, ``catalog.file``;
    spec_version 2: ``graph.file``, ``graph.encoder.file``, ``graph.scorer.file``, the values
    of ``tables`` and ``groups[].catalog``."""
    version = spec.get("spec_version")
    graph = spec.get("graph", {})
    paths = [graph.get("file")]
    if version == 1:
        paths += [f.get("vocab") for g in spec.get("groups", []) for f in g.get("features", [])]
        paths.append(spec.get("catalog", {}).get("file"))
    elif version == 2:
        paths += [graph.get("encoder", {}).get("file"), graph.get("scorer", {}).get("file")]
        paths += list(spec.get("tables", {}).values())
        paths += [g.get("catalog") for g in spec.get("groups", [])]
    else:
        raise ValueError(f"unknown spec_version {version!r}")
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
