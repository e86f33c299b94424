#!/bin/bash
# CPU of each of the agent's threads per forwarded SMS, in the e2e benchmark's steady load
# (64 SIM800 modems, 20 SMS/s): user and system ticks (1/100 s, /proc/PID/task/TID/stat)
# over 20 s = 400 SMS, taken 25 s after the agent started. The event loop's thread and the
# SQLite writer's are the two that count (issue 19, bench/RESULTS.md).
#   usage: bench/thread_cpu.sh OUTPREFIX     (from the repository; writes OUTPREFIX.*)
# To measure another tree with this .venv, set PYTHONPATH to it (as the "before" runs did).
set -eu
OUT=${1:?usage: bench/thread_cpu.sh OUTPREFIX}
cd "$(dirname "$0")/.."
SIMEDGE_BENCH_E2E_SECONDS=50 SIMEDGE_BENCH_RAMP_SECONDS=0 .venv/bin/python -m bench.e2e_bench \
    > "$OUT.bench.txt" 2>&1 &
BENCH=$!
AGENT=
for _ in $(seq 1 300); do
    AGENT=$(pgrep -P $BENCH -f "simedge run --config" | head -1 || true)
    [ -n "$AGENT" ] && break
    sleep 1
done
[ -n "$AGENT" ] || { echo "thread_cpu: no agent started (see $OUT.bench.txt)" >&2; exit 1; }
sleep 25  # start-up over, the steady load running
snap() {
    for task in /proc/$AGENT/task/*; do
        echo "$(basename "$task") $(awk '{print $14, $15}' "$task/stat")"
    done
}
snap > "$OUT.a"
sleep 20
snap > "$OUT.b"
wait $BENCH
grep "per SMS" "$OUT.bench.txt" || true
join <(sort "$OUT.a") <(sort "$OUT.b") | awk '
    { user = $4 - $2; sys = $5 - $3; all_user += user; all_sys += sys
      if (user + sys > 0) printf "thread %s user %d sys %d ticks = %.2f ms/SMS\n", $1, user, sys, (user + sys) * 10 / 400 }
    END { printf "all threads: user %d sys %d = %.2f ms/SMS\n", all_user, all_sys, (all_user + all_sys) * 10 / 400 }'
