#!/usr/bin/env bash
# Writes the seed corpora that come straight from the fixture packages (run from anywhere; the
# output is committed, so a fresh checkout needs no run):
#   corpus/spec_json/  both fixtures' spec.json, plus a minimal spec of each version;
#   corpus/graph_load/ each fixture graph, prefixed by the byte that picks its slot
#                      (0 tiny model.onnx, 1/2/3 tiny-multigroup model/encoder/scorer.onnx).
# The structured targets (preprocess, package_load, c_abi) read their input through
# `arbitrary`; their committed seeds are inputs kept by short fuzz runs, minimised with
# `cargo fuzz cmin` (see docs/fuzzing.md), not written here.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fx="$here/../tests/fixtures"
mkdir -p "$here/corpus/spec_json" "$here/corpus/graph_load"
cp "$fx/tiny/spec.json" "$here/corpus/spec_json/tiny.json"
cp "$fx/tiny-multigroup/spec.json" "$here/corpus/spec_json/tiny-multigroup.json"
# The smallest specs that pass validation, one per version (fields as in docs/package-format.md).
cat > "$here/corpus/spec_json/min-v1.json" <<'JSON'
{"format":"atrank-model-package","spec_version":1,"graph":{"file":"m.onnx","inputs":{"history":{"item":"a","category":"b","action":"c","time_bucket":"d"},"history_length":"e","candidate":{"item":"f","category":"g"}},"output":"o"},"groups":[{"name":"item","max_history":1,"features":[{"name":"item","vocab":"v"},{"name":"category","vocab":"w"}]}],"actions":[],"time_buckets":{"unit_seconds":1,"offset":0,"boundaries":[]},"catalog":{"file":"c","key":"item","features":["category"]},"limits":{"max_candidates":1,"max_behaviors":1}}
JSON
cat > "$here/corpus/spec_json/min-v2.json" <<'JSON'
{"format":"atrank-model-package","spec_version":2,"graph":{"file":"m.onnx","inputs":["a","b","c","d","f"],"output":"o","encoder":{"file":"e.onnx","outputs":["x","y"]},"scorer":{"file":"s.onnx","inputs":["x","y","f"],"output":"o"}},"tables":{"t":"v"},"groups":[{"name":"g","max_history":1,"features":[{"name":"id","table":"t","input":"a"}],"inputs":{"action":"b","time_bucket":"c","length":"d"},"catalog":"k"}],"target_group":"g","candidate_inputs":{"id":"f"},"actions":["x"],"time_buckets":{"unit_seconds":1,"offset":0,"boundaries":[0]},"limits":{"max_candidates":1,"max_behaviors":1}}
JSON
slot=0
for g in tiny/model.onnx tiny-multigroup/model.onnx tiny-multigroup/encoder.onnx tiny-multigroup/scorer.onnx; do
  name="$(echo "$g" | tr / -)"
  { printf "\\x$(printf %02x "$slot")"; cat "$fx/$g"; } > "$here/corpus/graph_load/$name"
  slot=$((slot + 1))
done
echo "seeds written to $here/corpus/{spec_json,graph_load}"
