#!/usr/bin/env python3
"""Writes a realistic contact CSV: email, phone, first and last name, country,
language and two custom attributes (loyalty_tier, customer_number).
Usage: gen_contacts.py ROWS OUT.csv"""
import random
import sys

FIRST = ["Anna", "Bram", "Chloé", "Daan", "Emma", "Finn", "Greta", "Hugo", "Iris", "Jens", "Kim", "Lotte", "Mila", "Noah", "Olaf", "Priya", "Quinn", "Ruben", "Sofía", "Tess", "Umar", "Vera", "Wout", "Xena", "Yara", "Zoë"]
LAST = ["de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit", "Meijer", "Mulder", "de Boer", "Müller", "O'Brien", "García", "Kowalski", "Nguyen"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example", "shop.example.nl"]
COUNTRY = [("NL", "nl"), ("BE", "nl"), ("DE", "de"), ("FR", "fr"), ("GB", "en"), ("ES", "es")]
TIERS = ["bronze", "silver", "gold", "platinum"]


def main():
    rows, out = int(sys.argv[1]), sys.argv[2]
    rnd = random.Random(20261127)
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write("email,phone,first_name,last_name,country,language,loyalty_tier,customer_number\r\n")
        buf = []
        for i in range(rows):
            first, last = rnd.choice(FIRST), rnd.choice(LAST)
            country, lang = rnd.choice(COUNTRY)
            email = f"{first.lower()}.{i}@{rnd.choice(DOMAINS)}"
            phone = f"+3161{i:07d}"
            last_field = f'"{last}"' if "'" in last or "," in last else last
            buf.append(f"{email},{phone},{first},{last_field},{country},{lang},{rnd.choice(TIERS)},C{i:09d}\r\n")
            if len(buf) >= 10000:
                f.write("".join(buf))
                buf = []
        f.write("".join(buf))


if __name__ == "__main__":
    main()
