#!/usr/bin/env python3
"""Rewrites a contact CSV of bench/gen_contacts.py with its email and phone
replaced by what consentry's unique indexes hold: a keyed hash (HMAC-SHA256
under a random key, first 128 bits) of each, as PostgreSQL bytea hex (\\x...).
The floors of the import benchmarks copy these into a table with the same two
unique indexes: keys in random order, as blind indexes arrive, where the
numbered addresses of the generated file arrive nearly in index order.
Usage: blind_index_csv.py IN.csv OUT.csv"""
import csv
import hashlib
import hmac
import os
import sys


def main():
    src, dst = sys.argv[1], sys.argv[2]
    key = os.urandom(32)

    def bidx(kind, value):
        return "\\x" + hmac.new(key, kind + b"\0" + value.encode(), hashlib.sha256).digest()[:16].hex()

    with open(src, newline="", encoding="utf-8") as f, open(dst, "w", newline="", encoding="utf-8") as out:
        reader, writer = csv.reader(f), csv.writer(out, lineterminator="\r\n")
        writer.writerow(next(reader))
        for row in reader:
            row[0], row[1] = bidx(b"email", row[0]), bidx(b"phone", row[1])
            writer.writerow(row)


if __name__ == "__main__":
    main()
