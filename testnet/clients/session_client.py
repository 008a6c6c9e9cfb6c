#!/usr/bin/env python3
"""Client of the `session` demo app (passive replication): N concurrent
sessions each send REQUESTS lines, one at a time, and check every reply:
`seq` counts 1, 2, 3... with no gap or repeat, `total` is the sum of the
rolls this session saw, `roll` is 1-6. Ends each session by closing its
side and expects the server to close too. Prints one JSON line: sessions,
replies, resets, errors, bad (inconsistent replies, with the first few),
the longest wait for a reply and every wait over 20 ms."""
import argparse, json, socket, threading, time


def one(host, port, requests, pace, result, lock):
    replies, bad, waits, resets, err = 0, [], [], 0, None
    longest = 0.0
    total = 0
    try:
        s = socket.create_connection((host, port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        for i in range(1, requests + 1):
            sent = time.monotonic()
            s.sendall(b"roll\n")
            line = f.readline()
            wait = time.monotonic() - sent
            longest = max(longest, wait)
            if wait > 0.02 and len(waits) < 100:
                waits.append(round(wait * 1000, 1))
            if not line.endswith(b"\n"):
                bad.append(f"reply {i}: stream ended")
                break
            fields = dict(kv.split("=", 1) for kv in line.decode().split())
            roll = int(fields["roll"])
            total += roll
            if int(fields["seq"]) != i or int(fields["total"]) != total or not 1 <= roll <= 6:
                bad.append(f"reply {i}: {line.decode().strip()} (expected seq={i} total={total})")
                total = int(fields["total"])
            replies += 1
            if pace:
                time.sleep(pace)
        s.shutdown(socket.SHUT_WR)
        if f.read() != b"":
            bad.append("bytes after the last reply")
        s.close()
    except ConnectionResetError as e:
        resets, err = 1, str(e)
    except Exception as e:  # noqa: BLE001 - every failure is reported
        err = f"{type(e).__name__}: {e}"
    with lock:
        result["replies"] += replies
        result["resets"] += resets
        result["bad"] += len(bad)
        result["bad_examples"].extend(bad[: max(0, 5 - len(result["bad_examples"]))])
        result["max_wait_ms"] = max(result["max_wait_ms"], round(longest * 1000, 1))
        result["waits_over_20ms"].extend(waits)
        if err:
            result["errors"].append(err)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--pace", type=float, default=0.01)
    a = p.parse_args()
    result = {"sessions": a.sessions, "replies": 0, "resets": 0, "bad": 0,
              "bad_examples": [], "errors": [], "max_wait_ms": 0.0, "waits_over_20ms": []}
    lock = threading.Lock()
    threads = [threading.Thread(target=one, args=(a.host, a.port, a.requests, a.pace, result, lock))
               for _ in range(a.sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result["ok"] = (result["replies"] == a.sessions * a.requests and result["bad"] == 0
                    and result["resets"] == 0 and not result["errors"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
