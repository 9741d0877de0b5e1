#!/usr/bin/env bash
# The data model's floor on PostgreSQL: ROWS new contacts written as consentry's
# import writes them, into consentry's own schema (a database made by `consentry
# migrate`), generated inside PostgreSQL with no client work at all: per contact
# the contacts row (a 16-byte id in creation order, two blind indexes as random
# 16-byte keys, its wrapped key and five sealed fields of the sizes consentry's
# ciphertexts have), its list membership and its consent event, in transactions of
# 2,000 contacts (consentry's batch). With SESSIONS > 1 that many backends write
# disjoint ranges at the same time. Prints rows/s and the CPU the whole machine
# spent per row (every process, from /proc/stat), which is what the 2 cores have to
# share with consentry's own work. Usage: bench/pg_model_floor.sh [ROWS] [SESSIONS]
# Server: CONSENTRY_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
sessions="${2:-1}"
server="${CONSENTRY_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
base="${server%/*}"
db="consentry_bench_model_$$"
cargo build --release --quiet --bin consentry
bin="${CARGO_TARGET_DIR:-target}/release/consentry"
dir="$(mktemp -d)"
cleanup() {
    psql "$server" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
psql "$server" -qc "CREATE DATABASE $db"
CONSENTRY_DATABASE_URL="$base/$db" "$bin" --data-dir "$dir/data" init --owner-key-file "$dir/owner.key" >/dev/null 2>&1
psql "$base/$db" -qc "INSERT INTO lists (id, workspace_id, name, created_at) SELECT 'lst_floor', id, 'floor', 0 FROM workspaces"

# Session S of SESSIONS writes contacts S+1, S+1+SESSIONS*2000, ... in 2,000-row blocks.
write() { # session
    psql "$base/$db" -q -v ON_ERROR_STOP=1 <<SQL
DO \$\$
DECLARE
    ws text := (SELECT id FROM workspaces LIMIT 1);
    k bytea := decode(repeat('a1', 64), 'hex');
    e bytea := decode(repeat('b2', 53), 'hex');
    p bytea := decode(repeat('c3', 41), 'hex');
    f bytea := decode(repeat('d4', 33), 'hex');
    l bytea := decode(repeat('e5', 36), 'hex');
    a bytea := decode(repeat('f6', 61), 'hex');
    at bigint := 1796000000000000;
    lo bigint;
BEGIN
    FOR b IN 0 .. ($rows - 1) / 2000 LOOP
        CONTINUE WHEN b % $sessions <> $1;
        lo := b * 2000 + 1;
        INSERT INTO contacts (id, workspace_id, email_bidx, phone_bidx, contact_key, email_ct, phone_ct, first_name_ct,
            last_name_ct, attributes_ct, segment_attributes, created_at, updated_at)
        SELECT '\\x0000000000000000'::bytea || int8send(i), ws, substr(sha256(int8send(i) || '\\x01'::bytea), 1, 16),
            substr(sha256(int8send(i) || '\\x02'::bytea), 1, 16), k, e, p, f, l, a,
            '{"country":"DE","language":"de","loyalty_tier":"silver"}', at, at
        FROM generate_series(lo, least($rows, lo + 1999)) i;
        INSERT INTO list_members (list_id, contact_id, added_at)
        SELECT 'lst_floor', '\\x0000000000000000'::bytea || int8send(i), at FROM generate_series(lo, least($rows, lo + 1999)) i;
        INSERT INTO consent_events (id, workspace_id, contact_id, channel, purpose, action, method, source, evidence,
            private_evidence_ct, actor, occurred_at, recorded_at, audit_seq)
        SELECT '\\x0100000000000000'::bytea || int8send(i), ws, '\\x0000000000000000'::bytea || int8send(i), 'email',
            'marketing', 'granted', 'import', 'benchmark signup form',
            '{"import":"imp_01a2412b29d472b38aac8ac3770e1f12","row":' || (i + 1) || '}', NULL, 'cli', at, at, 1
        FROM generate_series(lo, least($rows, lo + 1999)) i;
        COMMIT;
    END LOOP;
END
\$\$;
SQL
}

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
ticks=$(getconf CLK_TCK)
b1=$(busy)
start=$(date +%s.%N)
pids=()
for ((s = 0; s < sessions; s++)); do
    write "$s" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
end=$(date +%s.%N)
b2=$(busy)
count=$(psql "$base/$db" -Atc "SELECT (SELECT count(*) FROM contacts) || ' contacts, ' || (SELECT count(*) FROM list_members) || ' memberships, ' || (SELECT count(*) FROM consent_events) || ' consent events'")
python3 - "$rows" "$sessions" "$start" "$end" "$b1" "$b2" "$ticks" "$count" <<'PY'
import sys
rows, sessions, start, end, b1, b2, ticks, count = sys.argv[1:]
rows, secs = int(rows), float(end) - float(start)
cpu = (int(b2) - int(b1)) / int(ticks)
print(f"floor: the data model in SQL, {sessions} session(s): {rows} rows {secs:.2f} s = {rows/secs:.0f} rows/s; "
      f"machine CPU {cpu:.1f} s = {cpu*1e6/rows:.1f} us a row ({count})")
PY
