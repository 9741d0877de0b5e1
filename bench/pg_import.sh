#!/usr/bin/env bash
# Import, re-import and export of a generated contact file (default 1,000,000 rows)
# with `consentry` on PostgreSQL (release build), beside PostgreSQL's own COPY of
# the same rows into a table with the same unique indexes (the floor), and the
# data model's own writes generated in SQL (bench/pg_model_floor.sh). Each run
# creates its databases and drops them. Usage: bench/pg_import.sh [ROWS]
# CONSENTRY_BENCH_LOOKUP_SECS=N: afterwards, audited lookups on the same database
# for N seconds (bench/lookup_load.sh). CONSENTRY_BENCH_SKIP_REIMPORT=1: no re-import.
# CONSENTRY_BENCH_KEEP=1: keeps the imported database and data directory for more
# lookup runs (the script prints how to run them and how to drop the database).
# Server: CONSENTRY_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
server="${CONSENTRY_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
base="${server%/*}"
out="bench/out"
mkdir -p "$out"
cargo build --release --quiet --bin consentry
bin="${CARGO_TARGET_DIR:-target}/release/consentry"
csv="$out/contacts-$rows.csv"
[ -f "$csv" ] || python3 bench/gen_contacts.py "$rows" "$csv"
floor_db="consentry_bench_floor_$$"
db="consentry_bench_$$"
cleanup() {
    psql "$server" -qc "DROP DATABASE IF EXISTS $floor_db WITH (FORCE)" >/dev/null 2>&1 || true
    if [ -n "${CONSENTRY_BENCH_KEEP:-}" ]; then
        echo "kept: CONSENTRY_DATABASE_URL=$base/$db bash bench/lookup_load.sh $out/pg-data $csv $out/pg-owner.key SECONDS"
        echo "drop: psql $server -c 'DROP DATABASE $db WITH (FORCE)'"
    else
        psql "$server" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
psql "$server" -qc "CREATE DATABASE $floor_db" -c "CREATE DATABASE $db"
rm -rf "$out/pg-data" "$out/pg-export.csv" "$out/pg-owner.key"

report() { # label, seconds, rss-kib, [consentry's CPU seconds, the machine's CPU seconds]
    python3 - "$1" "$2" "$rows" "$3" "${4:-}" "${5:-}" <<'PY'
import sys
label, secs, rows, rss, cpu, machine = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
rss = f"peak RSS {int(rss)/1024:6.1f} MiB" if rss else ""
cpu = f"  CPU us/row: consentry {float(cpu)*1e6/rows:.1f}, machine {float(machine)*1e6/rows:.1f}" if cpu else ""
print(f"{label:<46} {rows:>9} rows {secs:8.2f} s {rows/secs:>10.0f} rows/s  {rss}{cpu}")
PY
}
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
measure() { # label, command...
    local label="$1"; shift
    local start end b1 b2
    b1=$(busy)
    start=$(date +%s.%N)
    /usr/bin/time -f "%M %U %S" -o "$out/rss" "$@" >/dev/null 2>"$out/stderr" || { cat "$out/stderr"; exit 1; }
    end=$(date +%s.%N)
    b2=$(busy)
    read -r rss user sys < <(tail -1 "$out/rss")
    report "$label" "$(python3 -c "print($end - $start)")" "$rss" "$(python3 -c "print($user + $sys)")" \
        "$(python3 -c "print(($b2 - $b1) / $(getconf CLK_TCK))")"
}

echo "machine: $(nproc) cores, $(uname -m); rows: $rows; $(psql "$server" -Atc 'SELECT version()' | cut -d, -f1)"
echo "settings: $(psql "$server" -Atc "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'max_wal_size', 'checkpoint_timeout', 'fsync', 'synchronous_commit', 'full_page_writes')")"
psql "$base/$floor_db" -q <<'SQL'
CREATE TABLE contacts (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email TEXT, phone TEXT, first_name TEXT,
    last_name TEXT, country TEXT, language TEXT, loyalty_tier TEXT, customer_number TEXT);
CREATE UNIQUE INDEX contacts_email ON contacts(email);
CREATE UNIQUE INDEX contacts_phone ON contacts(phone);
SQL
start=$(date +%s.%N)
psql "$base/$floor_db" -qc "\\copy contacts (email, phone, first_name, last_name, country, language, loyalty_tier, customer_number) FROM '$csv' WITH (FORMAT csv, HEADER)"
end=$(date +%s.%N)
report "floor: PostgreSQL COPY, 2 unique indexes" "$(python3 -c "print($end - $start)")" ""
# The same rows with the keys consentry's unique indexes hold: keyed hashes of
# the email and phone, which arrive in random index order (the generated file's
# numbered addresses arrive nearly in order).
bidx_csv="$out/bidx-$rows.csv"
[ -f "$bidx_csv" ] || python3 bench/blind_index_csv.py "$csv" "$bidx_csv"
psql "$base/$floor_db" -q <<'SQL'
CREATE TABLE contacts_bidx (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email BYTEA, phone BYTEA, first_name TEXT,
    last_name TEXT, country TEXT, language TEXT, loyalty_tier TEXT, customer_number TEXT);
CREATE UNIQUE INDEX contacts_bidx_email ON contacts_bidx(email);
CREATE UNIQUE INDEX contacts_bidx_phone ON contacts_bidx(phone);
SQL
start=$(date +%s.%N)
psql "$base/$floor_db" -qc "\\copy contacts_bidx (email, phone, first_name, last_name, country, language, loyalty_tier, customer_number) FROM '$bidx_csv' WITH (FORMAT csv, HEADER)"
end=$(date +%s.%N)
report "floor: COPY, 2 unique indexes, blind-index keys" "$(python3 -c "print($end - $start)")" ""
psql "$server" -qc "DROP DATABASE IF EXISTS $floor_db WITH (FORCE)" >/dev/null
# What consentry's data model costs PostgreSQL alone, with no client: the rows of
# each new contact generated in SQL into consentry's schema, one backend and two.
bash bench/pg_model_floor.sh "$rows" 1
bash bench/pg_model_floor.sh "$rows" 2

export CONSENTRY_DATABASE_URL="$base/$db"
$bin --data-dir "$out/pg-data" init --owner-key-file "$out/pg-owner.key" >/dev/null 2>&1
imp=(import "$csv" --list bench --source "benchmark signup form" --create-attributes --segmentable country,language,loyalty_tier)
measure "consentry import on PostgreSQL (empty)" $bin --data-dir "$out/pg-data" "${imp[@]}"
[ -n "${CONSENTRY_BENCH_SKIP_REIMPORT:-}" ] ||
    measure "consentry re-import on PostgreSQL (all exist)" $bin --data-dir "$out/pg-data" "${imp[@]}"
measure "consentry export to CSV from PostgreSQL" $bin --data-dir "$out/pg-data" export --list bench --purpose benchmark --out "$out/pg-export.csv"
$bin --data-dir "$out/pg-data" audit verify
echo "database: $(psql "$base/$db" -Atc "SELECT pg_size_pretty(pg_database_size(current_database()))"), $(psql "$base/$db" -Atc "SELECT count(*) FROM contacts") contacts"
if [ -n "${CONSENTRY_BENCH_LOOKUP_SECS:-}" ]; then
    # A bulk load leaves PostgreSQL its first vacuum of the new rows and a
    # checkpoint spread over minutes (the WAL of the load is many times
    # max_wal_size): both are done here and timed, so that the lookups measure
    # the database in its steady state, not the write-back of the load.
    start=$(date +%s.%N)
    psql "$base/$db" -qc "VACUUM (ANALYZE)" -c "CHECKPOINT"
    end=$(date +%s.%N)
    echo "VACUUM (ANALYZE) and CHECKPOINT after the import: $(python3 -c "print(round($end - $start, 1))") s"
    bash bench/lookup_load.sh "$out/pg-data" "$csv" "$out/pg-owner.key" "$CONSENTRY_BENCH_LOOKUP_SECS"
fi
