#!/usr/bin/env bash
# Password hashing must not starve the API: audited lookups by email (wrk, 16
# connections) against a real `consentry serve` (release build) with N contacts,
# first alone, then while 50 connections keep sending wrong-password sign-ins
# (each for another address typed and from another client address, through a
# trusted proxy's X-Forwarded-For, so that throttling answers none of them and
# every one is hashed). Prints both lookup rates, their ratio (budget >= 80%)
# and the sign-in rate under load.
# Usage: bench/sign_in_load.sh [CONTACTS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-20000}" secs="${2:-15}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
out="bench/out"
mkdir -p "$out"
cargo build --release --quiet --bin consentry
bin="${CARGO_TARGET_DIR:-target}/release/consentry"
csv="$out/contacts-$rows.csv"
[ -f "$csv" ] || python3 bench/gen_contacts.py "$rows" "$csv"
data="$(mktemp -d)"
port=18464
server="" flood=""
trap '[ -n "$flood" ] && kill "$flood" 2>/dev/null; [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$data"' EXIT
"$bin" --data-dir "$data/d" init --owner-key-file "$data/owner.key" >/dev/null 2>&1
"$bin" --data-dir "$data/d" import "$csv" --list bench --source benchmark --create-attributes \
    --segmentable country,language,loyalty_tier >/dev/null 2>&1
sed -i 's/^trusted_proxies = \[\]/trusted_proxies = ["127.0.0.1"]/' "$data/d/consentry.toml"
grep -q '^trusted_proxies = \["127.0.0.1"\]' "$data/d/consentry.toml"
"$bin" --data-dir "$data/d" serve --listen "127.0.0.1:$port" >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
key="$(cat "$data/owner.key")"
python3 - "$csv" > "$data/emails.txt" <<'PY'
import random, sys
with open(sys.argv[1], encoding="utf-8") as f:
    next(f)
    emails = [line.split(",", 1)[0] for line in f]
random.Random(1).shuffle(emails)
print("\n".join(emails[:20000]))
PY
cat > "$data/lookup.lua" <<LUA
local emails = {}
for line in io.lines("$data/emails.txt") do emails[#emails + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/api/v1/contacts/lookup", {
    ["Authorization"] = "Bearer $key",
    ["Content-Type"] = "application/json",
    ["X-Consentry-Purpose"] = "benchmark",
  }, '{"email":"' .. emails[(i % #emails) + 1] .. '"}')
end
LUA
cat > "$data/sign_in.lua" <<'LUA'
local n = 0
setup = function(thread) thread:set("id", math.random(1, 1000000)) end
request = function()
  n = n + 1
  local who = id * 1000000 + n
  return wrk.format("POST", "/api/v1/auth/login", {
    ["Content-Type"] = "application/json",
    ["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.floor(who / 65536) % 256, math.floor(who / 256) % 256, who % 256),
  }, '{"email":"stranger' .. who .. '@example.com","password":"not the right password at all"}')
end
LUA
rate() { sed -n 's/^Requests\/sec:\s*\([0-9.]*\).*/\1/p'; }
echo "lookups alone: 16 connections, ${secs}s"
alone=$(wrk -t2 -c16 -d"${secs}s" -s "$data/lookup.lua" "http://127.0.0.1:$port" | tee "$data/alone.txt" | rate)
grep -E "Requests/sec|Non-2xx" "$data/alone.txt"
echo "lookups while 50 connections send wrong-password sign-ins"
wrk -t1 -c50 -d"$((secs + 6))s" -s "$data/sign_in.lua" "http://127.0.0.1:$port" >"$data/flood.txt" 2>&1 &
flood=$!
sleep 3
loaded=$(wrk -t2 -c16 -d"${secs}s" -s "$data/lookup.lua" "http://127.0.0.1:$port" | tee "$data/loaded.txt" | rate)
grep -E "Requests/sec|Non-2xx" "$data/loaded.txt"
wait "$flood" || true
flood=""
if grep -q "\.lua:" "$data/flood.txt"; then cat "$data/flood.txt" >&2; exit 1; fi
echo "sign-ins during the run (all should be refused after hashing: 401):"
grep -E "requests in|Requests/sec|Non-2xx|Latency " "$data/flood.txt"
kill "$server"; wait "$server" 2>/dev/null || true; server=""
# Every attempt that reached the password check was audited as a failed sign-in.
sent=$(sed -n 's/^\s*\([0-9]*\) requests in.*/\1/p' "$data/flood.txt")
hashed=$(sqlite3 "$data/d/consentry.db" "SELECT COUNT(*) FROM audit_events WHERE action = 'user.sign_in_failed'")
echo "sign-ins answered: $sent; checked against a password hash and audited: $hashed"
python3 -c "print(f'lookups: alone {$alone:.0f}/s, under the sign-in flood {$loaded:.0f}/s = {100*$loaded/$alone:.1f}% (budget >= 80%)')"
"$bin" --data-dir "$data/d" audit verify
