#!/usr/bin/env bash
# Passkeys in a real browser: starts `consentry serve` on a fresh data directory,
# makes a user, and runs passkeys.mjs (Chromium with a virtual authenticator).
# Needs chromium (Debian package) and node; installs playwright-core from
# package-lock.json. CONSENTRY_BIN names the binary (default: target/debug).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${CONSENTRY_BIN:-$root/target/debug/consentry}"
[ -x "$bin" ] || { echo "no consentry binary at $bin (cargo build first)" >&2; exit 1; }
command -v "${CHROMIUM:-/usr/bin/chromium}" >/dev/null || { echo "chromium is required" >&2; exit 1; }
(cd "$here" && npm ci --no-audit --no-fund --silent)

data="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export CONSENTRY_DATA_DIR="$data"
"$bin" init --owner-key-file "$data/owner.key" >/dev/null
"$bin" serve --listen "127.0.0.1:$port" >"$data/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

key="$(cat "$data/owner.key")"
email="passkey-user@example.com"
password="vlinder kapstok zonnebril 7"
token="$(curl -fs -H "Authorization: Bearer $key" -H 'content-type: application/json' \
    -d "{\"email\": \"$email\", \"role\": \"admin\"}" "http://127.0.0.1:$port/api/v1/users" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
curl -fs -H 'content-type: application/json' -d "{\"token\": \"$token\", \"password\": \"$password\"}" \
    "http://127.0.0.1:$port/api/v1/invitations/accept" >/dev/null

node "$here/passkeys.mjs" "http://localhost:$port" "$email" "$password"
"$bin" audit verify >/dev/null
echo "passkeys in Chromium: ok"
