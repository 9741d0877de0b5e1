#!/usr/bin/env bash
# What authentication adds to a request: median latency at low load (wrk, one
# connection) of GET /healthz (no authentication) against GET /api/v1/auth/me
# made with an API key and with a session cookie, on a real `consentry serve`
# (release build). The three loads alternate ROUNDS times so drift in the
# machine's load hits them alike; the overhead is each authenticated median
# minus the /healthz median of the same round.
# Usage: bench/auth_overhead.sh [SECONDS_PER_LOAD] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}" rounds="${2:-3}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet --bin consentry
bin="${CARGO_TARGET_DIR:-target}/release/consentry"
data="$(mktemp -d)"
port=18463
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$data"' EXIT
"$bin" --data-dir "$data/d" init --owner-key-file "$data/owner.key" >/dev/null 2>&1
token=$("$bin" --data-dir "$data/d" users add bench@example.com --role viewer)
printf '%s\n%s\n' "$token" "river quartz lantern mosaic" | "$bin" --data-dir "$data/d" users accept 2>/dev/null
"$bin" --data-dir "$data/d" serve --listen "127.0.0.1:$port" >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
key="$(cat "$data/owner.key")"
cookie=$(curl -fsS -D - -o /dev/null -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","password":"river quartz lantern mosaic"}' \
    "http://127.0.0.1:$port/api/v1/auth/login" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p')
[ -n "$cookie" ] || { echo "sign-in failed" >&2; exit 1; }
for h in "Authorization: Bearer $key" "Cookie: $cookie"; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "$h" "http://127.0.0.1:$port/api/v1/auth/me")" = 200 ] \
        || { echo "GET /api/v1/auth/me with ${h%%:*} did not answer 200" >&2; exit 1; }
done
median() { # wrk output on stdin -> median latency in microseconds
    python3 -c '
import re, sys
text = sys.stdin.read()
m = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
if not m: sys.exit("no median in wrk output:\n" + text)
v, unit = float(m.group(1)), m.group(2)
print(v * {"us": 1, "ms": 1000, "s": 1e6}[unit])'
}
load() { wrk -t1 -c1 -d"${secs}s" --latency "$@" | median; }
echo "round  healthz_us  key_us  session_us  key_overhead_us  session_overhead_us"
results=()
for r in $(seq 1 "$rounds"); do
    base=$(load "http://127.0.0.1:$port/healthz")
    k=$(load -H "Authorization: Bearer $key" "http://127.0.0.1:$port/api/v1/auth/me")
    s=$(load -H "Cookie: $cookie" "http://127.0.0.1:$port/api/v1/auth/me")
    line=$(python3 -c "print(f'{$r:5d}  {$base:10.1f}  {$k:6.1f}  {$s:10.1f}  {$k-$base:15.1f}  {$s-$base:19.1f}')")
    echo "$line"
    results+=("$k-$base" "$s-$base")
done
python3 - "${results[@]}" <<'PY'
import statistics, sys
pairs = [eval(x) for x in sys.argv[1:]]
key, session = pairs[0::2], pairs[1::2]
print(f"median overhead over {len(key)} rounds: API key {statistics.median(key):.1f} us, session {statistics.median(session):.1f} us (budget 200 us)")
PY
