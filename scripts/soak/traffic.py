#!/usr/bin/env python3
"""Steady mixed traffic for scripts/soak.sh, at a fixed rate for a fixed time.

  traffic.py BASE_URL WORKSPACE_ID SESSION_TOKEN KEYS_FILE SECONDS RATE

Each of 8 threads keeps one keep-alive connection and sends RATE/8 requests a second, cycling
through: valid keys (from KEYS_FILE), well-formed unknown keys, lead writes, and key creates
each followed by one use and a revoke. Prints one JSON line of counts by action and status.
"""
import http.client
import json
import secrets
import sys
import threading
import time
import urllib.parse
import zlib
from collections import Counter

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
THREADS = 8
# 20 slots: 12 valid, 3 unknown, 2 lead writes, 3 key lifecycles (create, use, revoke).
CYCLE = ["valid"] * 12 + ["unknown"] * 3 + ["lead"] * 2 + ["lifecycle"] * 3


def unknown_key():
    body = "hk_live_" + "".join(secrets.choice(ALPHABET) for _ in range(30))
    value, digits = zlib.crc32(body.encode()) & 0xFFFFFFFF, []
    while value:
        value, rem = divmod(value, 62)
        digits.append(ALPHABET[rem])
    return body + "".join(reversed(digits)).rjust(6, "0")


class Client:
    def __init__(self, base):
        url = urllib.parse.urlparse(base)
        self.host, self.port = url.hostname, url.port
        self.conn = None

    def request(self, method, path, headers, body=None):
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                data = json.dumps(body).encode() if body is not None else None
                if data is not None:
                    headers = dict(headers, **{"content-type": "application/json"})
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                payload = response.read()
                return response.status, payload
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
        return 0, b""


def worker(index, base, workspace, token, keys, deadline, interval, counts, lock):
    client = Client(base)
    bearer = {"authorization": f"Bearer {token}"}
    local = Counter()
    n = index
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        action = CYCLE[n % len(CYCLE)]
        if action == "valid":
            status, _ = client.request("GET", "/api/v1/me", {"x-api-key": keys[n % len(keys)]})
        elif action == "unknown":
            status, _ = client.request("GET", "/api/v1/me", {"x-api-key": unknown_key()})
        elif action == "lead":
            body = {"name": f"Soak lead {n}", "email": f"soak{n}@example.test"}
            status, _ = client.request("POST", "/api/v1/leads", {"x-api-key": keys[n % len(keys)]}, body)
        else:
            path = f"/app/v1/workspaces/{workspace}/api-keys"
            status, payload = client.request("POST", path, bearer, {"name": f"soak {n}", "rateLimitPerMinute": 0})
            if status == 201:
                created = json.loads(payload)
                local[("use", client.request("GET", "/api/v1/me", {"x-api-key": created["key"]})[0])] += 1
                revoke = f"{path}/{created['id']}/revoke"
                local[("revoke", client.request("POST", revoke, bearer)[0])] += 1
        local[(action, status)] += 1
        n += 1
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    with lock:
        counts.update(local)


def main(argv):
    base, workspace, token, keys_file, seconds, rate = argv[1:7]
    keys = [line.strip() for line in open(keys_file) if line.strip()]
    deadline = time.monotonic() + float(seconds)
    interval = THREADS / float(rate)
    counts, lock = Counter(), threading.Lock()
    threads = [
        threading.Thread(target=worker, args=(i, base, workspace, token, keys, deadline, interval, counts, lock))
        for i in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({f"{action} {status}": count for (action, status), count in sorted(counts.items())}))


if __name__ == "__main__":
    main(sys.argv)
