#!/usr/bin/env bash
# Measures one `mcpsim serve` holding N concurrent sessions that heartbeat every second, driven
# by one `mcpsim client --connections N` process on loopback.
#
#   scripts/bench-sessions.sh [N] [MEASURE_SECONDS]      (defaults: 10000 sessions, 30 s)
#   INTERVAL=250ms scripts/bench-sessions.sh 19500 20     (heartbeat interval, default 1s)
#
# A process here may hold at most 20,000 file descriptors (a hard limit this sandbox does not
# let us raise), so N stops near 19,500. To load the server beyond that, shorten INTERVAL: N
# sessions at η = 250 ms send as many heartbeats as 4·N sessions at 1 s (memory is still that of
# N sessions).
#
# Reports, over the measurement window after every session is connected: the server's CPU
# (percent of one core, from /proc/PID/stat), its peak RSS (VmHWM), and the heartbeat round
# trip p50/p99/max seen by the clients (from their stats lines). Loopback only; everything it
# starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
measure=${2:-30}
port=${PORT:-7870}
interval=${INTERVAL:-1s}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet
bin=target/release/mcpsim
out=$(mktemp -d)
cleanup() { kill "${client_pid:-}" "${server_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

"$bin" serve --listen "127.0.0.1:$port" --max-connections $((n + 100)) --max-sessions $((n + 100)) \
  --heartbeat-interval "$interval" >"$out/server.log" 2>&1 &
server_pid=$!
sleep 0.5
"$bin" client --connect "127.0.0.1:$port" --connections "$n" --heartbeat-interval "$interval" \
  --stats-interval 5s --max-attempts 0 >"$out/client.log" 2>"$out/client.err" &
client_pid=$!

# Wait until every session is connected (at most 120 s).
for _ in $(seq 1 240); do
  if grep -q "connected=$n/$n" "$out/client.err" 2>/dev/null; then break; fi
  sleep 0.5
done
grep -q "connected=$n/$n" "$out/client.err" || { echo "not all $n sessions connected" >&2; tail -3 "$out/client.err" >&2; exit 1; }

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
lines_before=$(wc -l <"$out/client.err")
c0=$(cpu "$server_pid"); cc0=$(cpu "$client_pid"); t0=$(date +%s.%N)
sleep "$measure"
c1=$(cpu "$server_pid"); cc1=$(cpu "$client_pid"); t1=$(date +%s.%N)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
crss=$(awk '/VmHWM/ {print $2}' "/proc/$client_pid/status")

echo "sessions:            $n (heartbeat every $interval, one-way, empty 16-byte heartbeats)"
awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$ticks" \
  'BEGIN { printf "server CPU:          %.1f%% of one core over %.0f s\n", 100 * (b - a) / hz / (t1 - t0), t1 - t0 }'
awk -v a="$cc0" -v b="$cc1" -v t0="$t0" -v t1="$t1" -v hz="$ticks" \
  'BEGIN { printf "client CPU:          %.1f%% of one core (the load generator)\n", 100 * (b - a) / hz / (t1 - t0) }'
echo "server peak RSS:     $((rss / 1024)) MiB"
echo "client peak RSS:     $((crss / 1024)) MiB"
echo "client RTT per 5 s window during the measurement (p50 / p99 / max, ms):"
tail -n +"$((lines_before + 1))" "$out/client.err" | grep -o 'rtt_ms p50=[^ ]* p99=[^ ]* max=[^ ]* (n=[0-9]*)' | sed 's/^/  /'
