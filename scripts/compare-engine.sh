#!/usr/bin/env bash
# Wall time of the event engine in two builds of the engine_throughput bench, runs alternating
# between them: on a shared machine the same run varies by as much as 40% from one minute to the
# next (`docs/simulator.md`, "Speed"), so only runs side by side compare. Prints each run's ns
# per heartbeat and reply (one thread), then each build's median.
#
#   scripts/compare-engine.sh OLD_BENCH NEW_BENCH            (1,000 sessions, 20 simulated
#                                                             minutes, 3 runs each: about 6 s)
#   SESSIONS=100 MINUTES=600 ROUNDS=5 scripts/compare-engine.sh OLD_BENCH NEW_BENCH
#
# A bench binary is what `cargo bench --bench engine_throughput --no-run` prints. To build an
# older commit's without touching this checkout's target directory:
#   git worktree add /tmp/old <commit> && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target \
#     cargo bench --bench engine_throughput --no-run)
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 OLD_BENCH NEW_BENCH" >&2; exit 2; }
sessions=${SESSIONS:-1000}
minutes=${MINUTES:-20}
rounds=${ROUNDS:-3}
run() {
  SESSIONS=$sessions MINUTES=$minutes THREADS=1 ONLY=engine ALLOC_MINUTES=0 "$1" --bench 2>&1 |
    sed -n 's/.* \([0-9][0-9]*\) ns each per thread.*/\1/p'
}
old=() new=()
for ((i = 1; i <= rounds; i++)); do
  o=$(run "$1") n=$(run "$2")
  [ -n "$o" ] && [ -n "$n" ] || { echo "a run printed no figure" >&2; exit 1; }
  echo "round $i: old $o ns, new $n ns"
  old+=("$o") new+=("$n")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
echo "$sessions sessions, $minutes simulated minutes, one thread: median old $(median "${old[@]}") ns, new $(median "${new[@]}") ns per heartbeat and reply"
