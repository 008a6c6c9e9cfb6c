#!/usr/bin/env python3
"""INCR checker for a Redis-protocol store: C connections send INCR on K
keys for a while and record every acknowledged reply. Prints one JSON
verdict: per key the acknowledged INCRs, the largest value seen and the
final value read afterwards, and every violation found:

- a reply that does not exceed the previous reply for its key on the same
  connection (an increment lost or repeated, or the store going back);
- a final value below the acknowledged INCRs (an acknowledged increment
  lost) or above them plus the requests that were in flight when a
  connection broke (at most one per connection: each waits for its reply);
- any connection error (a reset, a timeout): the store is behind a group
  whose connections must survive a crash.
"""

import argparse
import json
import socket
import sys
import threading
import time


def send_incr(sock, key):
    k = key.encode()
    sock.sendall(b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(k), k))


def read_line(sock, buf):
    while b"\r\n" not in buf[0]:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        buf[0] += chunk
    line, buf[0] = buf[0].split(b"\r\n", 1)
    return line


def worker(i, args, keys, result, lock, stop_at):
    acked = {k: 0 for k in keys}
    last = {}
    violations = []
    in_flight = 0
    error = None
    try:
        sock = socket.create_connection((args.host, args.port), timeout=10)
        buf = [b""]
        n = 0
        while time.monotonic() < stop_at:
            key = keys[(i + n) % len(keys)]
            n += 1
            in_flight = 1
            send_incr(sock, key)
            line = read_line(sock, buf)
            in_flight = 0
            if not line.startswith(b":"):
                violations.append(f"conn {i}: {key}: unexpected reply {line!r}")
                break
            value = int(line[1:])
            if key in last and value <= last[key]:
                violations.append(f"conn {i}: {key}: reply {value} after {last[key]}")
            last[key] = value
            acked[key] += 1
        sock.close()
    except Exception as e:  # reported in the verdict, never swallowed
        error = f"conn {i}: {e!r}"
    with lock:
        for k in keys:
            result["acked"][k] += acked[k]
            result["max_seen"][k] = max(result["max_seen"][k], last.get(k, 0))
        result["in_flight"] += in_flight
        result["violations"] += violations
        if error:
            result["errors"].append(error)


def final_values(args, keys):
    sock = socket.create_connection((args.host, args.port), timeout=10)
    buf = [b""]
    out = {}
    for k in keys:
        kb = k.encode()
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(kb), kb))
        head = read_line(sock, buf)
        if head == b"$-1":
            out[k] = 0
            continue
        out[k] = int(read_line(sock, buf))
    sock.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--keys", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--prefix", default="chk")
    args = ap.parse_args()
    keys = [f"{args.prefix}:{j}" for j in range(args.keys)]
    result = {
        "acked": {k: 0 for k in keys},
        "max_seen": {k: 0 for k in keys},
        "in_flight": 0,
        "violations": [],
        "errors": [],
    }
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds
    threads = [
        threading.Thread(target=worker, args=(i, args, keys, result, lock, stop_at))
        for i in range(args.connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        final = final_values(args, keys)
    except Exception as e:
        result["errors"].append(f"final read: {e!r}")
        final = {}
    result["final"] = final
    for k in keys:
        if k not in final:
            continue
        low, high = result["acked"][k], result["acked"][k] + result["in_flight"]
        if not low <= final[k] <= high:
            result["violations"].append(
                f"{k}: final {final[k]} outside [{low}, {high}] (acknowledged INCRs, plus in flight)")
        if final[k] < result["max_seen"][k]:
            result["violations"].append(f"{k}: final {final[k]} below a reply seen ({result['max_seen'][k]})")
    result["ok"] = not result["violations"] and not result["errors"] and bool(final)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
