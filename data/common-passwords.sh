#!/usr/bin/env bash
# Writes data/common-passwords.txt: the 10,000 most common passwords of the xato
# 10-million-password corpus, in rank order, one per line, as ranked in the
# frequency list that the zxcvbn crate (MIT, a dependency) ships. consentry refuses
# these as passwords whatever their length. Usage: bash data/common-passwords.sh
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=$(cargo metadata --format-version 1 | python3 -c '
import json, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(p["manifest_path"] for p in pkgs if p["name"] == "zxcvbn"))')
python3 - "$(dirname "$manifest")/src/frequency_lists.rs" > data/common-passwords.txt <<'PY'
import re, sys
src = open(sys.argv[1], encoding="utf-8").read()
words = re.search(r'const PASSWORDS: &str = "([^"]*)"', src).group(1).split(",")
seen = []
for w in words:
    if w and w not in seen:
        seen.append(w)
    if len(seen) == 10000:
        break
assert len(seen) == 10000, len(seen)
print("\n".join(seen))
PY
wc -l data/common-passwords.txt
