"""spec.json's "files" manifest: every file the spec names, with its sha256 and size."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from atrank_export.cli import main
from atrank_export.manifest import file_manifest, referenced_files, write_manifest

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
# What each committed fixture's spec names, written out by hand from the package format
# (docs/package-format.md), not from referenced_files().
GRAPHS = {"model.onnx", "encoder.onnx", "scorer.onnx", "tables.bin"}
ATV = {
    "tiny": {"vocab/item_id.atv", "vocab/category.atv", "catalog/item.atv"},
    "tiny-multigroup": {"vocab/category.atv", "vocab/coupon_id.atv", "vocab/item_id.atv",
                        "vocab/query_id.atv", "vocab/shop.atv", "catalog/item.atv",
                        "catalog/coupon.atv"},
}
# every atv file with its hashed index (<file>x)
NAMED = {
    "tiny": GRAPHS | ATV["tiny"] | {f"{a}x" for a in ATV["tiny"]}
    | {"catalog/item.category.u32"},
    "tiny-multigroup": GRAPHS | ATV["tiny-multigroup"]
    | {f"{a}x" for a in ATV["tiny-multigroup"]}
    | {"catalog/item.category.u32", "catalog/item.shop.u32", "catalog/coupon.category.u32",
       "catalog/coupon.shop.u32"},
}
# A package the exporter writes now, with tiny's layout: its catalog holds the id vocabulary's
# keys, so the spec names vocab/item_id.atv as the catalog's keys and no catalog/item.atv (nor
# its index) exists. The committed fixture was written before that rule.
EXPORTED_TINY = NAMED["tiny"] - {"catalog/item.atv", "catalog/item.atvx"}


def spec_of(pkg: Path) -> dict:
    return json.loads((pkg / "spec.json").read_text(encoding="utf-8"))


def independent_manifest(pkg: Path, paths) -> dict:
    """sha256 and size straight from hashlib and the file system (one read per file)."""
    out = {}
    for rel in paths:
        data = (pkg / rel).read_bytes()
        assert (pkg / rel).stat().st_size == len(data)
        out[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return out


def package_files(pkg: Path) -> set[str]:
    """Every file in a package directory except spec.json, golden.json and READMEs."""
    return {p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file()} - {
        "spec.json", "golden.json", "README.md"}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_referenced_files_are_exactly_what_the_spec_names(name):
    pkg = FIXTURES / name
    assert set(referenced_files(spec_of(pkg))) == NAMED[name]
    assert package_files(pkg) == NAMED[name]     # and nothing the spec names is missing


@pytest.mark.parametrize("name", sorted(NAMED))
def test_fixture_manifests_are_up_to_date(name):
    """Guards the committed fixtures: edit a fixture file without rerunning
    ``python -m atrank_export manifest --package tests/fixtures/<name>`` and this fails."""
    pkg = FIXTURES / name
    files = spec_of(pkg)["files"]
    assert files == independent_manifest(pkg, NAMED[name])
    for entry in files.values():
        assert set(entry) == {"sha256", "bytes"}
        assert len(entry["sha256"]) == 64 and entry["sha256"] == entry["sha256"].lower()
        assert isinstance(entry["bytes"], int) and entry["bytes"] > 0


def test_file_manifest_matches_hashlib(tmp_path):
    (tmp_path / "sub").mkdir()
    blobs = {"a.bin": bytes(range(256)) * 5000, "sub/b.txt": b"x\n", "empty": b""}
    for rel, data in blobs.items():
        (tmp_path / rel).write_bytes(data)
    got = file_manifest(tmp_path, blobs)
    assert got == {rel: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)}
                   for rel, d in blobs.items()}
    assert got["empty"]["sha256"] == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")  # sha256("")
    with pytest.raises(FileNotFoundError):
        file_manifest(tmp_path, ["missing.onnx"])


def test_exported_package_has_the_manifest(trained):
    pkg = trained / "pkg"
    spec = spec_of(pkg)
    assert list(spec)[-1] == "files"
    assert set(spec["files"]) == EXPORTED_TINY == package_files(pkg)
    assert spec["files"] == independent_manifest(pkg, EXPORTED_TINY)


def test_manifest_command_rewrites_only_files(tmp_path):
    pkg = tmp_path / "tiny"
    shutil.copytree(FIXTURES / "tiny", pkg)
    before = (pkg / "spec.json").read_bytes()
    assert main(["manifest", "--package", str(pkg)]) == 0
    assert (pkg / "spec.json").read_bytes() == before          # up to date: same bytes
    with open(pkg / "vocab" / "item_id.atv", "a", encoding="utf-8") as f:
        f.write("new-item\n")
    assert main(["manifest", "--package", str(pkg)]) == 0
    old, new = json.loads(before), spec_of(pkg)
    assert new["files"]["vocab/item_id.atv"] != old["files"]["vocab/item_id.atv"]
    assert new["files"]["vocab/item_id.atv"]["bytes"] == old["files"]["vocab/item_id.atv"]["bytes"] + 9
    assert {k: v for k, v in new.items() if k != "files"} == {
        k: v for k, v in old.items() if k != "files"}
    assert new["files"] == independent_manifest(pkg, NAMED["tiny"])
    # the rest of the file keeps the exporter's layout (indent 2, files last)
    assert (pkg / "spec.json").read_text(encoding="utf-8") == json.dumps(new, indent=2) + "\n"


def test_unknown_spec_version_is_refused(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps({"spec_version": 2}), encoding="utf-8")
    with pytest.raises(ValueError, match="spec_version"):
        write_manifest(tmp_path)
