#!/bin/sh
# The movie_search program: one real query, and bad input that fails with a message and the
# documented exit status (never a crash). Usage: cli_test.sh PATH/TO/movie_search
# Needs MOVIES_ITEMS, MOVIES_INTERACTIONS and ATRANK_PACKAGE (exits 77, "skipped", without).
set -u
bin="$1"
for v in MOVIES_ITEMS MOVIES_INTERACTIONS ATRANK_PACKAGE; do
  eval "val=\${$v:-}"
  if [ -z "$val" ]; then echo "SKIPPED: $v is not set"; exit 77; fi
done
backend="${ATRANK_BACKEND:-tract}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect STATUS PATTERN ARGS...: runs movie_search ARGS, wants exit STATUS and PATTERN in its output.
expect() {
  want="$1"; pattern="$2"; shift 2
  "$bin" "$@" >"$tmp/out" 2>&1
  rc=$?
  if [ "$rc" -ne "$want" ] || ! grep -q -- "$pattern" "$tmp/out"; then
    echo "FAILED: movie_search $* -> exit $rc (want $want), output:"
    sed 's/^/  | /' "$tmp/out"
    echo "  (wanted the pattern: $pattern)"
    failures=$((failures + 1))
  fi
}

data="--items $MOVIES_ITEMS --interactions $MOVIES_INTERACTIONS --package $ATRANK_PACKAGE --backend $backend"
# shellcheck disable=SC2086
{
  # A real query: ten ranked rows, item 50 (Star Wars) among the candidates.
  expect 0 '^ *10 ' $data --query "star wars" --user 196
  expect 0 '  Star Wars (1977)' $data --query "star wars" --user 196 --candidates 1682
  expect 0 'final' $data --query "star wars" --user 196 --blend 0.3 --chunk 4
  expect 0 'no movie matches' $data --query "qwzxv" --user 196
  expect 0 ' 0 before request time 1' $data --query "toy story" --user 196 --time 1
  expect 0 'usage: movie_search' --help
  # Bad usage: exit 2.
  expect 2 'backend must be tract or ort' $data --query x --user 196 --backend gpu
  expect 2 '--top needs an integer >= 1' $data --query x --user 196 --top 0
  expect 2 '--candidates needs an integer' $data --query x --user 196 --candidates -5
  expect 2 '--blend needs a number in \[0, 1\]' $data --query x --user 196 --blend 2
  expect 2 '--time needs an integer' $data --query x --user 196 --time soon
  expect 2 'unknown option --frobnicate' $data --query x --user 196 --frobnicate 1
  expect 2 '--query is required' $data --user 196
  expect 2 '--user needs a value' $data --query x --user
  # Runtime errors: exit 1 with the cause.
  expect 1 'cannot open file' --items "$tmp/missing.item" --interactions "$MOVIES_INTERACTIONS" \
    --package "$ATRANK_PACKAGE" --query x --user 196
  printf 'item_id:token\tmovie_title:token_seq\n1\tToy Story\n' >"$tmp/bad.item"
  expect 1 "header lacks the column 'release_year'" --items "$tmp/bad.item" \
    --interactions "$MOVIES_INTERACTIONS" --package "$ATRANK_PACKAGE" --query x --user 196
  expect 1 "user 'no-such-user' has no ratings" $data --query "star wars" --user no-such-user
  expect 1 'atrank error 4' --items "$MOVIES_ITEMS" --interactions "$MOVIES_INTERACTIONS" \
    --package "$tmp/no-package" --query "star wars" --user 196
}

if [ "$failures" -ne 0 ]; then echo "cli_test: $failures failure(s)"; exit 1; fi
echo "cli_test: all checks passed"
