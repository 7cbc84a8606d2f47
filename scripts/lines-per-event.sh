#!/usr/bin/env bash
# Cache lines each event of the event engine touches, per object: the connection (`Conn`), the
# client's endpoint (its session inside) and the server's session, over two simulated seconds of
# the bench shape's steady state with two sessions. valgrind's lackey traces every load and
# store of the probe test in `src/sim/engine/probe.rs`; an event starts at each store to the
# engine's event counter. It says which objects an event reaches and how spread their fields
# are. It does not predict wall time: a layout that cut the connection's lines per event from
# 23.2 to 20.0 ran slower (`docs/simulator.md`, "A compact layout, measured and dropped").
#
#   scripts/lines-per-event.sh        (about 10 s once the tests are built)
#
# Counts are of 64-byte lines by address, and depend on where the allocator put each object;
# a test build (opt-level 1) lays types out as a release build does.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 2; }
bin=$(cargo test --lib --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])')
out=$(mktemp -d)
valgrind --tool=lackey --trace-mem=yes --log-file="$out/trace" "$bin" --ignored --exact \
  sim::engine::probe::a_steady_heartbeat_window_is_marked_for_the_memory_trace --nocapture \
  --test-threads=1 2>"$out/addresses" >/dev/null
python3 - "$out" <<'PY'
import collections, re, sys
out = sys.argv[1]
text = open(f'{out}/addresses').read()
mark = int(re.search(r'MARK (0x[0-9a-f]+)', text).group(1), 16)
counter = int(re.search(r'EVENTS (0x[0-9a-f]+)', text).group(1), 16)
objects = [(m.group(1), int(m.group(2), 16), int(m.group(3)))
           for m in re.finditer(r'^(Conn|ClientEndpoint|Session) (0x[0-9a-f]+) (\d+)$', text, re.M)]
window, events, current = 0, [], collections.defaultdict(set)
for line in open(f'{out}/trace'):
    if len(line) < 4 or line[0] != ' ' or line[1] not in 'LSM':
        continue
    addr, size = line[3:].split(',')
    addr, size = int(addr, 16), int(size)
    if addr == mark and line[1] in 'SM':
        window += 1
        continue
    if window != 1:
        continue
    if addr == counter and line[1] in 'SM':
        if current:
            events.append(current)
        current = collections.defaultdict(set)
        continue
    for name, base, length in objects:
        if base <= addr < base + length:
            for a in (addr, addr + size - 1):
                current[(name, base)].add(a // 64)
if current:
    events.append(current)
kinds = collections.Counter()
totals = collections.Counter()
for e in events:
    per_kind = collections.Counter()
    for (name, _), lines in e.items():
        per_kind[name] += len(lines)
    kinds[tuple(sorted(per_kind.items()))] += 1
    totals.update(per_kind)
spans = {name: (base + length - 1) // 64 - base // 64 + 1 for name, base, length in objects}
print(f'{len(events)} events on {len(objects) // 3} connections touched these lines of each '
      f'object (which span: ' + ', '.join(f'{name} {n}' for name, n in sorted(spans.items())) + '):')
for kind, n in sorted(kinds.items(), key=lambda kv: -sum(c for _, c in kv[0])):
    print(f'  {n:3} events touching ' + ', '.join(f'{name} {c}' for name, c in kind))
print('per event: ' + ', '.join(f'{name} {c / len(events):.1f}' for name, c in sorted(totals.items())))
PY
rm -rf "$out"
