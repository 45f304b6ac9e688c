#!/usr/bin/env python3
"""Generate heffl API keys outside the server, in the documented format (docs/api.md §3):
hk_<env>_ + 30 random base62 + base62 CRC-32 (zlib, IEEE) of everything before it, 6 digits,
most significant first, alphabet 0-9A-Za-z.

  keys.py one [ENV]                 print one well-formed key (unknown to any server)
  keys.py corrupt KEY               print KEY with its last (checksum) character changed
  keys.py seed N KEYS_FILE TSV_FILE write N keys (one a line) to KEYS_FILE and, for COPY into
                                    a staging table, "id<TAB>sha256-hex<TAB>hint" to TSV_FILE
"""
import hashlib
import secrets
import sys
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(value: int, width: int) -> str:
    digits = []
    while value:
        value, rem = divmod(value, 62)
        digits.append(ALPHABET[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def make_key(env: str = "live") -> str:
    body = f"hk_{env}_" + "".join(secrets.choice(ALPHABET) for _ in range(30))
    return body + base62(zlib.crc32(body.encode()) & 0xFFFFFFFF, 6)


def main(argv):
    command = argv[1] if len(argv) > 1 else ""
    if command == "one":
        print(make_key(argv[2] if len(argv) > 2 else "live"))
    elif command == "corrupt":
        key = argv[2]
        print(key[:-1] + ("B" if key[-1] == "A" else "A"))
    elif command == "seed":
        count, keys_path, tsv_path = int(argv[2]), argv[3], argv[4]
        with open(keys_path, "w") as keys, open(tsv_path, "w") as tsv:
            for i in range(count):
                key = make_key()
                digest = hashlib.sha256(key.encode()).hexdigest()
                keys.write(key + "\n")
                tsv.write(f"key_bench{i:08d}\t{digest}\t{key[:8]}…{key[-4:]}\n")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
