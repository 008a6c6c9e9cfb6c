#!/usr/bin/env python3
"""Echo client for Hydra tests: N concurrent connections each send SIZE
seeded pseudo-random bytes and check that exactly those bytes come back.
Prints one JSON line: connections, bytes, resets, mismatches, errors,
the longest gap between received chunks (the client-observed stall) and
every gap over 20 ms."""
import argparse, hashlib, json, random, socket, sys, threading, time

def one(host, port, size, seed, chunk, pace, result, lock):
    rnd = random.Random(seed)
    data = rnd.randbytes(size)
    got = bytearray()
    gap = 0.0
    stalls = []
    err = None
    try:
        s = socket.create_connection((host, port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        def writer():
            for i in range(0, size, chunk):
                s.sendall(data[i:i + chunk])
                if pace:
                    time.sleep(pace)
            s.shutdown(socket.SHUT_WR)
        w = threading.Thread(target=writer)
        w.start()
        last = time.monotonic()
        while True:
            b = s.recv(65536)
            now = time.monotonic()
            gap = max(gap, now - last)
            if now - last > 0.02 and len(stalls) < 100:
                stalls.append(round((now - last) * 1000, 1))
            last = now
            if not b:
                break
            got += b
        w.join()
        s.close()
    except ConnectionResetError as e:
        err = "reset"
    except Exception as e:  # timeouts, refused: reported, never hidden
        err = f"{type(e).__name__}: {e}"
    with lock:
        result["connections"] += 1
        result["bytes"] += len(got)
        result["max_gap_ms"] = max(result["max_gap_ms"], gap * 1000)
        result["stalls_ms"].extend(stalls[: max(0, 100 - len(result["stalls_ms"]))])
        if err == "reset":
            result["resets"] += 1
        elif err:
            result["errors"].append(err)
        elif bytes(got) != data:
            result["mismatches"] += 1

def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("host"); p.add_argument("port", type=int)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--size", type=int, default=1 << 20)
    p.add_argument("--chunk", type=int, default=16384)
    p.add_argument("--pace", type=float, default=0.0, help="seconds to sleep between chunks")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    result = {"connections": 0, "bytes": 0, "resets": 0, "mismatches": 0, "errors": [], "max_gap_ms": 0.0, "stalls_ms": []}
    lock = threading.Lock()
    threads = [threading.Thread(target=one, args=(a.host, a.port, a.size, a.seed + i, a.chunk, a.pace, result, lock))
               for i in range(a.connections)]
    for t in threads: t.start()
    for t in threads: t.join()
    result["ok"] = (result["connections"] == a.connections and result["resets"] == 0
                    and result["mismatches"] == 0 and not result["errors"])
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)

if __name__ == "__main__":
    main()
