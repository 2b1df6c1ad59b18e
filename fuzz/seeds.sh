#!/usr/bin/env bash
# Writes the seed corpora that come straight from the fixture packages (run from anywhere; the
# output is committed, so a fresh checkout needs no run):
#   corpus/spec_json/  both fixtures' spec.json (format 3), plus a minimal format-3 spec;
#   corpus/graph_load/ each fixture graph, prefixed by the byte that picks its slot
#                      (0 tiny model.onnx, 1/2/3 tiny-multigroup model/encoder/scorer.onnx).
# The structured targets (preprocess, package_load, package_files, c_abi) read their input through
# `arbitrary`; their committed seeds are inputs kept by short fuzz runs, minimised with
# `cargo fuzz cmin` (see docs/fuzzing.md), not written here.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fx="$here/../tests/fixtures"
mkdir -p "$here/corpus/spec_json" "$here/corpus/graph_load"
cp "$fx/tiny/spec.json" "$here/corpus/spec_json/tiny.json"
cp "$fx/tiny-multigroup/spec.json" "$here/corpus/spec_json/tiny-multigroup.json"
# The smallest spec that passes validation (format 3, docs/package-format-v3.md): one table
# of one key, one group with a catalog, split graphs, external data; the former versions 1 and
# 2 are refused, so their seeds are gone.
rm -f "$here/corpus/spec_json/min-v1.json" "$here/corpus/spec_json/min-v2.json"
cat > "$here/corpus/spec_json/min-v3.json" <<'JSON'
{"format":"atrank-model-package","spec_version":3,"graph":{"file":"m.onnx","inputs":["a","b","c","d","f"],"output":"o","encoder":{"file":"e.onnx","outputs":["x","y"]},"scorer":{"file":"s.onnx","inputs":["x","y","f"],"output":"o"},"external_data":["t.bin"]},"hash":{"function":"xxh3_64","seed":0},"tables":{"t":{"vocab":"v.atv","size":1,"hash_buckets":2}},"groups":[{"name":"g","max_history":1,"features":[{"name":"id","table":"t","input":"a"}],"inputs":{"action":"b","time_bucket":"c","length":"d"},"catalog":{"keys":"v.atv","rows":1,"columns":{}}}],"target_group":"g","candidate_inputs":{"id":"f"},"actions":["x"],"time_buckets":{"unit_seconds":1,"offset":0,"boundaries":[0]},"limits":{"max_candidates":1,"max_behaviors":1},"files":{"m.onnx":{"sha256":"0000000000000000000000000000000000000000000000000000000000000000","bytes":1},"e.onnx":{"sha256":"0000000000000000000000000000000000000000000000000000000000000000","bytes":1},"s.onnx":{"sha256":"0000000000000000000000000000000000000000000000000000000000000000","bytes":1},"t.bin":{"sha256":"0000000000000000000000000000000000000000000000000000000000000000","bytes":0},"v.atv":{"sha256":"0000000000000000000000000000000000000000000000000000000000000000","bytes":49}}}
JSON
slot=0
for g in tiny/model.onnx tiny-multigroup/model.onnx tiny-multigroup/encoder.onnx tiny-multigroup/scorer.onnx; do
  name="$(echo "$g" | tr / -)"
  { printf "\\x$(printf %02x "$slot")"; cat "$fx/$g"; } > "$here/corpus/graph_load/$name"
  slot=$((slot + 1))
done
echo "seeds written to $here/corpus/{spec_json,graph_load}"
