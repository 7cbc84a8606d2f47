#!/usr/bin/env bash
# Instructions per heartbeat and its reply on the event engine, in steady state: callgrind on the
# engine_throughput bench shape (SESSIONS sessions, default 1,000, one thread), a 2-minute run
# minus a 1-minute one, divided by the heartbeats of that minute. Unlike wall time on a shared
# machine, the figure repeats to the instruction.
#
#   scripts/instructions-per-heartbeat.sh            (about 4 minutes once built)
#   CACHE=1 scripts/instructions-per-heartbeat.sh    (also first-level and last-level data misses
#                                                     per heartbeat: 48 KiB L1d, 2 MiB last level)
#
# The callgrind files stay in the printed directory for `callgrind_annotate`.
set -euo pipefail
cd "$(dirname "$0")/.."
sessions=${SESSIONS:-1000}
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 2; }
bin=$(cargo bench --bench engine_throughput --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "engine_throughput" in m["executable"]:
        print(m["executable"])')
out=$(mktemp -d)
cache=()
[ -n "${CACHE:-}" ] && cache=(--cache-sim=yes --D1=49152,12,64 --LL=2097152,16,64)
for m in 1 2; do
  SESSIONS=$sessions MINUTES=$m THREADS=1 ONLY=engine ALLOC_MINUTES=0 \
    valgrind --tool=callgrind "${cache[@]}" --callgrind-out-file="$out/minute-$m.out" \
    "$bin" --bench >/dev/null 2>"$out/minute-$m.log"
done
python3 - "$out" "$sessions" <<'PY'
import sys
out, sessions = sys.argv[1], int(sys.argv[2])
def totals(path):
    events = summary = None
    for line in open(path):
        if line.startswith('events:'):
            events = line.split()[1:]
        elif line.startswith('summary:') or line.startswith('totals:'):
            summary = [int(x) for x in line.split()[1:]]
    return dict(zip(events, summary))
a, b = totals(f'{out}/minute-1.out'), totals(f'{out}/minute-2.out')
heartbeats = sessions * 60
for event in ['Ir', 'D1mr', 'D1mw', 'DLmr', 'DLmw']:
    if event in a:
        print(f'{event:5} per heartbeat and reply: {(b[event] - a[event]) / heartbeats:,.1f}')
print(f'callgrind files: {out}')
PY
