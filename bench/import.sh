#!/usr/bin/env bash
# Import, re-import and export of a generated contact file (default 1,000,000 rows)
# with `consentry` (release build), beside a plain SQLite insert of the same rows
# (the floor), and beside the writes consentry's data model makes for each new
# contact and the reads a re-import makes for each row, prepared ahead and timed
# alone (examples/sqlite_floor.rs --data-model).
# Prints rows/s, peak RSS and CPU per row. Usage: bench/import.sh [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
out="bench/out"
mkdir -p "$out"
cargo build --release --quiet --bin consentry --example sqlite_floor
bin="${CARGO_TARGET_DIR:-target}/release/consentry"
csv="$out/contacts-$rows.csv"
[ -f "$csv" ] || python3 bench/gen_contacts.py "$rows" "$csv"
rm -rf "$out/data" "$out/model" "$out/model.key" "$out/floor.db"* "$out/export.csv" "$out/owner.key"

measure() { # label, command...
    local label="$1"; shift
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -f "%M %U %S" -o "$out/rss" "$@" >"$out/stdout" 2>"$out/stderr" || { cat "$out/stderr"; exit 1; }
    end=$(date +%s.%N)
    python3 - "$label" "$start" "$end" "$rows" $(tail -1 "$out/rss") <<'PY'
import sys
label, start, end, rows, rss = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
secs, cpu = end - start, float(sys.argv[6]) + float(sys.argv[7])
print(f"{label:<42} {rows:>9} rows {secs:8.2f} s {rows/secs:>10.0f} rows/s  peak RSS {rss/1024:6.1f} MiB"
      f"  CPU {cpu*1e6/rows:5.1f} us/row")
PY
}

echo "machine: $(nproc) cores, $(uname -m); rows: $rows"
floor="${CARGO_TARGET_DIR:-target}/release/examples/sqlite_floor"
measure "floor: plain SQLite insert, 2 unique idx" "$floor" "$csv" "$out/floor.db"
# The same with the keys consentry's unique indexes hold (keyed hashes, in random
# order), committed every 5,000 rows and, as consentry's import commits about
# every 3 s, every 100,000 rows.
rm -f "$out/floor.db"*
measure "floor, blind-index keys, 5,000-row commits" "$floor" "$csv" "$out/floor.db" --blind-index
rm -f "$out/floor.db"*
measure "floor, blind-index keys, 100,000-row commits" "$floor" "$csv" "$out/floor.db" --blind-index --commit-rows 100000
rm -f "$out/floor.db"*
# What the data model costs SQLite alone: the writes of a new contact (the contact,
# its two blind indexes, its list membership and its consent event) into consentry's
# own schema, 100,000 rows a transaction, then the reads a re-import makes for each
# row; values prepared before each transaction starts.
$bin --data-dir "$out/model" init --owner-key-file "$out/model.key" >/dev/null 2>&1
measure "floor: the data model, written, read again" "$floor" "$csv" "$out/model/consentry.db" --data-model
sed 's/^/    /' "$out/stdout"
rm -rf "$out/model" "$out/model.key"
$bin --data-dir "$out/data" init --owner-key-file "$out/owner.key" >/dev/null 2>&1
imp=(import "$csv" --list bench --source "benchmark signup form" --create-attributes --segmentable country,language,loyalty_tier)
measure "consentry import (empty store)" $bin --data-dir "$out/data" "${imp[@]}"
measure "consentry re-import (every row exists)" $bin --data-dir "$out/data" "${imp[@]}"
measure "consentry export to CSV" $bin --data-dir "$out/data" export --list bench --purpose benchmark --out "$out/export.csv"
$bin --data-dir "$out/data" audit verify
