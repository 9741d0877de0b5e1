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
trap pg_cleanup EXIT
bash bench/lookup_load.sh "$out/lookup-data" "$csv" "$out/lookup-owner.key" "$secs"
