#!/usr/bin/env bash
# Idle RSS of the agent daemon (docs/benchmarks.md, "Agent daemon idle RSS"): each agent binary
# given is enrolled against one real `agent-bom serve`, runs `agent-bom-agent run` connected over
# QUIC and watching the fixture home, and is read from /proc after it has settled. The binaries
# take turns, ROUNDS times, so a before and an after share the same machine and load.
#
#   tests/load/agent-rss.sh SERVER_BIN AGENT_BIN [AGENT_BIN...]
#
# Env: ROUNDS (3), SETTLE seconds before the first reading (40), SAMPLES (5, 5 s apart).
# Prints one line per reading: binary, round, median VmRSS / RssAnon / RssFile (kB), threads.
set -euo pipefail

server=$1
shift
rounds=${ROUNDS:-3}
settle=${SETTLE:-40}
samples=${SAMPLES:-5}
here="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
server_pid=""
agent_pid=""
cleanup() {
    if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; fi
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

api=127.0.0.1:18422
collector=127.0.0.1:18423
"$server" serve --data-dir "$work/data" --api-listen "$api" --collector-listen "$collector" \
    --no-dashboard >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    [ -s "$work/data/ca.pin" ] && grep -q "agent-bom serving" "$work/server.log" && break
    sleep 0.2
done
grep -q "agent-bom serving" "$work/server.log" || { cat "$work/server.log"; exit 1; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { awk -v k="$1" '$1 == k {print $2}' "/proc/$2/status"; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$rounds"); do
    for agent in "$@"; do
        state="$work/state-$round-$(basename "$(dirname "$agent")")"
        home="$work/home-$round"
        rm -rf "$home" && cp -r "$here/tests/fixtures/home-linux" "$home"
        "$agent" enroll --collector "$collector" --ca-pin "$(cat "$work/data/ca.pin")" \
            --token-file "$work/data/enrollment.token" --state-dir "$state" >/dev/null
        AGENT_BOM_LOG=warn "$agent" run --state-dir "$state" --home "$home" \
            >"$work/agent.log" 2>&1 &
        agent_pid=$!
        sleep "$settle"
        rss=() anon=() file=() threads=()
        for _ in $(seq 1 "$samples"); do
            rss+=("$(field VmRSS: $agent_pid)")
            anon+=("$(field RssAnon: $agent_pid)")
            file+=("$(field RssFile: $agent_pid)")
            threads+=("$(field Threads: $agent_pid)")
            sleep 5
        done
        printf '%s round %s: VmRSS %s kB, RssAnon %s kB, RssFile %s kB, threads %s, binary %s bytes\n' \
            "$agent" "$round" \
            "$(printf '%s\n' "${rss[@]}" | median)" "$(printf '%s\n' "${anon[@]}" | median)" \
            "$(printf '%s\n' "${file[@]}" | median)" "$(printf '%s\n' "${threads[@]}" | median)" \
            "$(stat -c %s "$agent")"
        kill "$agent_pid"
        wait "$agent_pid" 2>/dev/null || true
        agent_pid=""
    done
done
echo "machine after: load average $(cut -d' ' -f1-3 /proc/loadavg)"
