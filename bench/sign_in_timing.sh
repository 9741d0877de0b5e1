#!/usr/bin/env bash
# No user enumeration through sign-in: N failed sign-ins for existing accounts
# (wrong password) and N for unknown addresses against a real `consentry serve`
# (release build). Prints the statuses, whether all bodies are byte-identical once
# the per-request id is removed, and the median and p90 time of each kind.
# Each attempt uses its own address and its own client (X-Forwarded-For from a
# trusted proxy), so throttling does not enter. Usage: bench/sign_in_timing.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200}"
cargo build --release --quiet --bin consentry
bin="${CARGO_TARGET_DIR:-target}/release/consentry"
data="$(mktemp -d)"
port=18461
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$data"' EXIT
"$bin" --data-dir "$data/d" init --owner-key-file "$data/owner.key" >/dev/null 2>&1
sed -i 's/^trusted_proxies = \[\]/trusted_proxies = ["127.0.0.1"]/' "$data/d/consentry.toml"
grep -q '^trusted_proxies = \["127.0.0.1"\]' "$data/d/consentry.toml"
echo "creating $n users..."
for i in $(seq 1 "$n"); do
    token=$("$bin" --data-dir "$data/d" users add "member$i@example.com" --role viewer)
    printf '%s\n%s\n' "$token" "river quartz lantern mosaic $i" | "$bin" --data-dir "$data/d" users accept 2>/dev/null
done
"$bin" --data-dir "$data/d" serve --listen "127.0.0.1:$port" >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
python3 - "$port" "$n" <<'PY'
import http.client, json, statistics, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
def attempt(email, client):
    body = json.dumps({"email": email, "password": "not the right password here"})
    start = time.perf_counter()
    conn.request("POST", "/api/v1/auth/login", body, {"Content-Type": "application/json", "X-Forwarded-For": client})
    r = conn.getresponse()
    raw = r.read()
    elapsed = (time.perf_counter() - start) * 1000
    doc = json.loads(raw)
    doc.pop("request_id", None); doc.pop("instance", None)
    return r.status, json.dumps(doc, sort_keys=True), elapsed
results = {"existing": [], "unknown": []}
for i in range(1, n + 1):  # interleaved, so drift in the machine's load hits both alike
    results["existing"].append(attempt(f"member{i}@example.com", f"10.1.{i // 250}.{i % 250}"))
    results["unknown"].append(attempt(f"stranger{i}@example.com", f"10.2.{i // 250}.{i % 250}"))
statuses = {k: sorted({s for s, _, _ in v}) for k, v in results.items()}
bodies = {b for v in results.values() for _, b, _ in v}
print(f"attempts: {n} existing, {n} unknown; statuses {statuses}; distinct bodies: {len(bodies)}")
for k, v in results.items():
    t = sorted(e for _, _, e in v)
    print(f"{k:<9} median {statistics.median(t):6.2f} ms  p90 {t[int(len(t) * 0.9)]:6.2f} ms")
gap = abs(statistics.median(e for _, _, e in results["existing"]) - statistics.median(e for _, _, e in results["unknown"]))
print(f"difference of medians: {gap:.2f} ms (budget: under 5 ms)")
PY
