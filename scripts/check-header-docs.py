"""Checks that every function declared in include/atrank.h documents its ownership, what NULL
does and its thread-safety class (README, "API conventions"). Exits 1 naming the offenders."""
import re
import sys
from pathlib import Path

header = Path(__file__).resolve().parent.parent / "include" / "atrank.h"
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
if not declared or bad:
    print("header docs incomplete:\n  " + "\n  ".join(bad or ["no functions found"]), file=sys.stderr)
    sys.exit(1)
print(f"header docs: {len(declared)} functions state ownership, NULL and thread safety")
