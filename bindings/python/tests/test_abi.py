"""The ctypes mirror against capi/include/atrank.h: struct sizes and field offsets measured by a C
compiler on the real header, and the header's constants."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess

import pytest
from conftest import REPO

from atrank import _native
from atrank.errors import Code

HEADER = REPO / "capi" / "include" / "atrank.h"

STRUCTS = {
    "atrank_feature": _native.CFeature,
    "atrank_behavior": _native.CBehavior,
    "atrank_request": _native.CRequest,
    "atrank_call_stats": _native.CCallStats,
    "atrank_stats": _native.CStats,
}


def _header_text() -> str:
    return HEADER.read_text(encoding="utf-8")


def test_struct_layout_matches_header(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to measure the header's structs")
    header = _header_text()
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "atrank.h"', "int main(void) {"]
    for name, cls in STRUCTS.items():
        if f"typedef struct {name} {{" not in header:
            assert name == "atrank_request", f"{name} is not in the header"
            continue
        lines.append(f'printf("{name} size %zu\\n", sizeof({name}));')
        for field, _ in cls._fields_:
            lines.append(f'printf("{name}.{field} %zu\\n", offsetof({name}, {field}));')
    lines += ["return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines), encoding="utf-8")
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-Wall", "-Werror", f"-I{HEADER.parent}", str(src), "-o",
                    str(exe)], check=True)
    measured = dict(
        line.rsplit(" ", 1) for line in subprocess.run(
            [str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    )
    assert measured, "nothing measured"
    for key, value in measured.items():
        if key.endswith(" size"):
            cls = STRUCTS[key[: -len(" size")]]
            assert ctypes.sizeof(cls) == int(value), key
        else:
            struct, field = key.split(".")
            assert getattr(STRUCTS[struct], field).offset == int(value), key
    # Every field of the C struct is mirrored (no field the binding would leave out).
    for name, cls in STRUCTS.items():
        body = re.search(rf"typedef struct {name} \{{(.*?)\}} {name};", header, re.DOTALL)
        if body is None:
            continue
        code = re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.DOTALL)
        c_fields = re.findall(r"\b(\w+)(?:\[\w+\])?;", code)
        assert c_fields == [f for f, _ in cls._fields_], name


def _define(name: str) -> int:
    m = re.search(rf"^#define {name} (\d+)$", _header_text(), re.MULTILINE)
    assert m, f"{name} not in the header"
    return int(m.group(1))


def test_constants_match_header():
    assert _define("ATRANK_ABI_VERSION") == _native.ABI_VERSION
    assert _define("ATRANK_VERSION_MAJOR") == _native.VERSION_MAJOR
    for name in ("BACKEND_ORT", "BACKEND_TRACT", "GPU_OFF", "GPU_STRICT", "GPU_PERMISSIVE",
                 "VERIFY_HASHES_SMALL", "VERIFY_HASHES_ALL",
                 "SERVING_ORT_CPU", "SERVING_ORT_CUDA", "SERVING_TRACT"):
        assert _define(f"ATRANK_{name}") == getattr(_native, name), name
    assert _define("ATRANK_STATS_CODES") == _native.STATS_CODES
    assert _define("ATRANK_LATENCY_BUCKETS") == _native.LATENCY_BUCKETS
    if "ATRANK_MAX_BATCH_REQUESTS" in _header_text():
        assert _define("ATRANK_MAX_BATCH_REQUESTS") == _native.MAX_BATCH_REQUESTS
    codes = dict(re.findall(r"^\s*ATRANK_(?:ERROR_)?(\w+) = (\d+),$", _header_text(), re.MULTILINE))
    assert codes == {c.name: str(c.value) for c in Code}


def test_library_matches_header():
    lib = _native.load_library()
    assert lib.abi_version == _define("ATRANK_ABI_VERSION")
    assert lib.version == "{}.{}.{}".format(
        _define("ATRANK_VERSION_MAJOR"), _define("ATRANK_VERSION_MINOR"),
        _define("ATRANK_VERSION_PATCH"))
