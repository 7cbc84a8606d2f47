#!/usr/bin/env bash
# Whether two builds of mcpsim compute the same thing: every file in scenarios/ on 2 seeds and
# every pairing (`mcpsim run --json`), the default `mcpsim tune --json`, and segment-level
# traces (`mcpsim replay --trace-level segments`) of every file on the event engine and of three
# on turmoil. Wall-clock fields and the command line are left out of the JSON before comparing.
# A change meant only to be faster must print "same" for every line.
#
#   scripts/same-reports.sh OLD_BINARY NEW_BINARY        (about a minute per build on 2 cores)
#
# To get the binary of an older commit without touching this checkout's target directory:
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release) \
#     && cp /tmp/old/target/release/mcpsim /tmp/mcpsim-old
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

outputs() {
  local bin=$1 dir=$2
  mkdir -p "$dir"
  for f in scenarios/*.toml; do
    local n
    n=$(basename "$f" .toml)
    # A failing assertion exits 1 and still writes its report: the report is what is compared.
    "$bin" run "$f" --seeds 2 --json "$dir/run-$n.json" >/dev/null 2>&1 || true
    "$bin" replay "$f" --seed 3 --engine event --trace-level segments \
      --trace "$dir/trace-event-$n.txt" >/dev/null 2>&1 || true
  done
  for n in lossy-wan server-crash short-partitions; do
    "$bin" replay "scenarios/$n.toml" --seed 2 --engine turmoil --trace-level segments \
      --trace "$dir/trace-turmoil-$n.txt" >/dev/null 2>&1 || true
  done
  "$bin" tune --json "$dir/tune.json" >/dev/null 2>&1 || true
  local jsons=("$dir"/*.json)
  [ ${#jsons[@]} -gt 0 ] || return 0
  python3 - "${jsons[@]}" <<'PY'
import json, re, sys
def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items()
                if not re.search(r'wall|elapsed|cpu|per_sec|^command$', k)}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o
for p in sys.argv[1:]:
    with open(p) as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = [json.loads(line) for line in text.splitlines() if line.strip()]
    with open(p, 'w') as f:
        json.dump(strip(doc), f, indent=1, sort_keys=True)
PY
}

outputs "$1" "$out/old"
outputs "$2" "$out/new"
differ=0
names=$( (cd "$out/old" && ls; cd "$out/new" && ls) | sort -u)
[ -n "$names" ] || { echo "neither build wrote anything" >&2; exit 1; }
for name in $names; do
  if [ ! -s "$out/old/$name" ] || [ ! -s "$out/new/$name" ]; then
    echo "MISSING $name (a build wrote nothing)"
    differ=1
  elif cmp -s "$out/old/$name" "$out/new/$name"; then
    echo "same   $name"
  else
    echo "DIFFER $name"
    differ=1
  fi
done
exit "$differ"
