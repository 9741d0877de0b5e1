#!/usr/bin/env bash
# The lookup load of bench/lookup.sh and bench/pg_import.sh: serves DATA_DIR (on
# the store CONSENTRY_DATABASE_URL names, if set), drives audited unmasked lookups
# by email of contacts sampled from CSV with wrk (16 connections, SECONDS), beside
# the same load on /healthz as the baseline; with CONSENTRY_BENCH_LOW_LOAD=1 also
# one connection. Stops the server and verifies the audit chain.
# Usage: bench/lookup_load.sh DATA_DIR CSV OWNER_KEY_FILE SECONDS
set -euo pipefail
cd "$(dirname "$0")/.."
data="$1" csv="$2" key_file="$3" secs="$4"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
out="bench/out"
bin="${CARGO_TARGET_DIR:-target}/release/consentry"
port=18452
$bin --data-dir "$data" serve --listen "127.0.0.1:$port" >"$out/lookup-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
# 20,000 addresses sampled evenly from the whole file (reservoir sampling).
python3 - "$csv" > "$out/emails.txt" <<'PY'
import random, sys
rnd, sample = random.Random(1), []
with open(sys.argv[1], encoding="utf-8") as f:
    next(f)
    for i, line in enumerate(f):
        email = line.split(",", 1)[0]
        if i < 20000:
            sample.append(email)
        else:
            j = rnd.randrange(i + 1)
            if j < 20000:
                sample[j] = email
rnd.shuffle(sample)
print("\n".join(sample))
PY
cat > "$out/lookup.lua" <<LUA
local emails = {}
for line in io.lines("$out/emails.txt") do emails[#emails + 1] = line end
local i = 0
request = function()
  i = i + 1
  local body = '{"email":"' .. emails[(i % #emails) + 1] .. '"}'
  return wrk.format("POST", "/api/v1/contacts/lookup", {
    ["Authorization"] = "Bearer $(cat "$key_file")",
    ["Content-Type"] = "application/json",
    ["X-Consentry-Purpose"] = "benchmark",
  }, body)
end
LUA
echo "baseline: GET /healthz, 16 connections, ${secs}s"
wrk -t2 -c16 -d"${secs}s" --latency "http://127.0.0.1:$port/healthz" | grep -E "Requests/sec|99%|50%|Non-2xx"
echo "audited unmasked lookups by email, 16 connections, ${secs}s"
wrk -t2 -c16 -d"${secs}s" --latency -s "$out/lookup.lua" "http://127.0.0.1:$port" | grep -E "Requests/sec|99%|50%|Non-2xx"
if [ -n "${CONSENTRY_BENCH_LOW_LOAD:-}" ]; then
    echo "one connection, 5s:"
    wrk -t1 -c1 -d5s --latency -s "$out/lookup.lua" "http://127.0.0.1:$port" | grep -E "Requests/sec|99%|50%"
fi
kill $server
wait $server 2>/dev/null || true
trap - EXIT
$bin --data-dir "$data" audit verify
