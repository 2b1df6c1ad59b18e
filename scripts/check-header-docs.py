"""Checks capi/include/atrank.h against the README's "API conventions": every function documents its
ownership, what NULL does and its thread-safety class, and every name it defines carries the
atrank_ / ATRANK_ prefix (cbindgen exports any public constant of src/ unless cbindgen.toml
excludes it). Exits 1 naming the offenders."""
import re
import sys
from pathlib import Path

header = Path(__file__).resolve().parent.parent / "capi" / "include" / "atrank.h"
text = header.read_text()
decl = re.compile(r"/\*\n((?: .*\n|\n)+?) \*/\n[^\n(]*?\b(atrank_\w+)\(")
found = {m.group(2): m.group(1) for m in decl.finditer(text)}
declared = set(re.findall(r"^[a-z][^\n(;]*?\b(atrank_\w+)\(", text, re.MULTILINE))
bad = []
for name in sorted(declared):
    doc = found.get(name, "")
    missing = [k for k in ("Ownership:", "NULL", "Thread safety:") if k not in doc]
    if re.search(r"Thread safety: (thread-safe|exclusive)", doc) is None:
        missing.append("a class (thread-safe or exclusive)")
    if missing:
        bad.append(f"{name}: missing {', '.join(missing)}")
for name in re.findall(r"^#define (\w+)", text, re.MULTILINE):
    if not name.startswith("ATRANK_"):
        bad.append(f"#define {name}: not prefixed ATRANK_ (exclude it in cbindgen.toml?)")
for name in re.findall(r"^typedef (?:struct |enum )?\w+ (\w+);", text, re.MULTILINE):
    if not name.startswith("atrank_"):
        bad.append(f"typedef {name}: not prefixed atrank_")
# Every struct type (opaque handles and plain structs) states its threading contract.
types = re.compile(r"/\*\n((?: .*\n|\n)+?) \*/\ntypedef struct (atrank_\w+)")
for m in types.finditer(text):
    if "hread safety" not in m.group(1):
        bad.append(f"struct {m.group(2)}: no thread-safety statement")
if not declared or bad:
    print("header check failed:\n  " + "\n  ".join(bad or ["no functions found"]), file=sys.stderr)
    sys.exit(1)
print(f"header docs: {len(declared)} functions state ownership, NULL and thread safety; every struct its threading contract; all names prefixed")
