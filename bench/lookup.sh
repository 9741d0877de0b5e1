#!/usr/bin/env bash
# Audited, unmasked contact lookups by email over HTTP on loopback: wrk with 16
# connections against `consentry serve` (release build) holding N contacts
# (default 100,000). Every request writes an audit event (group commit).
# Beside it, the same load on /healthz (no auth, no store) as the baseline.
# Usage: bench/lookup.sh [CONTACTS] [SECONDS]
# With CONSENTRY_BENCH_POSTGRES_URL=postgres://USER@HOST:PORT/DB the store is a
# PostgreSQL database the script creates on that server and drops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-100000}"
secs="${2:-20}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
out="bench/out"
mkdir -p "$out"
cargo build --release --quiet --bin consentry
bin="${CARGO_TARGET_DIR:-target}/release/consentry"
csv="$out/contacts-$rows.csv"
[ -f "$csv" ] || python3 bench/gen_contacts.py "$rows" "$csv"
rm -rf "$out/lookup-data" "$out/lookup-owner.key"
pg_cleanup() { :; }
if [ -n "${CONSENTRY_BENCH_POSTGRES_URL:-}" ]; then
    pg_db="consentry_bench_lookup_$$"
    psql "$CONSENTRY_BENCH_POSTGRES_URL" -qc "CREATE DATABASE $pg_db"
    pg_cleanup() { psql "$CONSENTRY_BENCH_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true; }
    export CONSENTRY_DATABASE_URL="${CONSENTRY_BENCH_POSTGRES_URL%/*}/$pg_db"
    echo "store: PostgreSQL ($(psql "$CONSENTRY_BENCH_POSTGRES_URL" -Atc 'SHOW server_version'))"
fi
$bin --data-dir "$out/lookup-data" init --owner-key-file "$out/lookup-owner.key" >/dev/null 2>&1
$bin --data-dir "$out/lookup-data" import "$csv" --list bench --source "benchmark" --create-attributes --segmentable country,language,loyalty_tier >/dev/null 2>&1
port=18452
$bin --data-dir "$out/lookup-data" serve --listen "127.0.0.1:$port" >"$out/lookup-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; pg_cleanup' EXIT
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
python3 - "$csv" > "$out/emails.txt" <<'PY'
import csv, sys, random
rows = [r["email"] for r in csv.DictReader(open(sys.argv[1], encoding="utf-8"))]
random.Random(1).shuffle(rows)
print("\n".join(rows[:20000]))
PY
cat > "$out/lookup.lua" <<LUA
local emails = {}
for line in io.lines("$out/emails.txt") do emails[#emails + 1] = line end
local i = 0
request = function()
  i = i + 1
  local body = '{"email":"' .. emails[(i % #emails) + 1] .. '"}'
  return wrk.format("POST", "/api/v1/contacts/lookup", {
    ["Authorization"] = "Bearer $(cat "$out/lookup-owner.key")",
    ["Content-Type"] = "application/json",
    ["X-Consentry-Purpose"] = "benchmark",
  }, body)
end
LUA
echo "baseline: GET /healthz, 16 connections, ${secs}s"
wrk -t2 -c16 -d"${secs}s" --latency "http://127.0.0.1:$port/healthz" | grep -E "Requests/sec|99%|50%|Non-2xx"
echo "audited unmasked lookups by email, 16 connections, ${secs}s, $rows contacts"
wrk -t2 -c16 -d"${secs}s" --latency -s "$out/lookup.lua" "http://127.0.0.1:$port" | grep -E "Requests/sec|99%|50%|Non-2xx"
[ -n "${CONSENTRY_BENCH_LOW_LOAD:-}" ] && { echo "one connection:"; wrk -t1 -c1 -d5s --latency -s "$out/lookup.lua" "http://127.0.0.1:$port" | grep -E "Requests/sec|99%|50%"; }
kill $server; wait $server 2>/dev/null || true
$bin --data-dir "$out/lookup-data" audit verify
