#!/usr/bin/python3
"""Hostile-input probe: crafted TCP segments sent to one echo listener (RFC
862), and what came back, as one JSON object of case -> outcome.

The same probe runs against Hydra's stack and against a Linux kernel
listener; the test that runs it compares the outcomes case by case. An
outcome is a short string that names what a client can observe (answers'
flags and whether they acknowledge the right bytes, whether data was echoed,
whether the connection still works), never sequence numbers themselves,
which differ by design between any two stacks.

The probe speaks from a source address no host owns (`--src`); the test
gives the router a static neighbour entry for it, so answers reach the
probe's link, where it sniffs them, while no kernel answers them with a
reset of its own.
"""

import argparse
import json
import random
import sys
import threading
import time

from scapy.all import IP, TCP, Raw, AsyncSniffer, conf, fragment, send

conf.verb = 0

MSS_OPTS = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]


class Probe:
    def __init__(self, target, port, src, iface):
        self.target = target
        self.port = port
        self.src = src
        self.iface = iface
        self.next_port = random.randint(20000, 50000)
        self.ts = 1000

    def fresh_port(self):
        self.next_port += 1
        return self.next_port

    def tsopt(self, echo=0, value=None):
        self.ts += 10
        return [("Timestamp", (self.ts if value is None else value, echo))]

    def exchange(self, packets, wait=0.4, sport=None):
        """Send `packets`, return the TCP segments the target sent back."""
        flt = f"tcp and src host {self.target} and dst host {self.src}"
        if sport is not None:
            flt += f" and dst port {sport}"
        # The sniffer's socket opens on its own thread (the first time after
        # compiling the filter): send nothing before it listens, or an
        # answer arriving first is missed.
        listening = threading.Event()
        sniffer = AsyncSniffer(iface=self.iface, filter=flt, store=True,
                               started_callback=listening.set)
        sniffer.start()
        if not listening.wait(5.0):
            raise RuntimeError(f"the sniffer on {self.iface} did not start")
        for p in packets:
            send(p)
        time.sleep(wait)
        got = sniffer.stop() or []
        return [p[TCP] for p in got if TCP in p]

    def ip(self, **kw):
        return IP(src=self.src, dst=self.target, **kw)

    def handshake(self):
        """Open a connection; returns its state or None."""
        sport = self.fresh_port()
        isn = random.randint(0, 2**32 - 1)
        syn = self.ip() / TCP(
            sport=sport, dport=self.port, flags="S", seq=isn, window=65535,
            options=MSS_OPTS + self.tsopt(),
        )
        answers = self.exchange([syn], sport=sport)
        synack = next((a for a in answers if a.flags.S and a.flags.A), None)
        if synack is None:
            return None
        c = {
            "sport": sport,
            "snd": (isn + 1) % 2**32,
            "rcv": (synack.seq + 1) % 2**32,
            "ts_recent": ts_value(synack),
        }
        ack = self.segment(c, "A")
        send(ack)
        time.sleep(0.05)
        return c

    def segment(self, c, flags, seq=None, ack=None, data=b"", window=65535,
                ts=None, options=None):
        opts = options if options is not None else self.tsopt(
            echo=c["ts_recent"] or 0, value=ts)
        tcp = TCP(
            sport=c["sport"], dport=self.port, flags=flags,
            seq=c["snd"] if seq is None else seq % 2**32,
            ack=c["rcv"] if ack is None else ack % 2**32,
            window=window, options=opts,
        )
        return self.ip() / tcp / Raw(data) if data else self.ip() / tcp

    def echo(self, c, data, wait=0.5):
        """Send `data` in sequence; returns what the echo sent back."""
        answers = self.exchange([self.segment(c, "PA", data=data)], wait=wait,
                                sport=c["sport"])
        c["snd"] = (c["snd"] + len(data)) % 2**32
        return self.absorb(c, answers)

    def absorb(self, c, answers, rounds=3):
        """Take the in-order data among `answers`, acknowledging it, and
        whatever it makes the target send next (Nagle holds a small write
        until the previous one is acknowledged); None after a reset."""
        out = b""
        for _ in range(rounds):
            got = b""
            for a in sorted(answers, key=lambda a: (a.seq - c["rcv"]) % 2**32):
                payload = bytes(a.payload) if a.payload else b""
                if a.flags.R:
                    return None
                if payload and a.seq == c["rcv"]:
                    got += payload
                    c["rcv"] = (c["rcv"] + len(payload)) % 2**32
                ts = ts_value(a)
                if ts is not None:
                    c["ts_recent"] = ts
            if not got:
                break
            out += got
            answers = self.exchange([self.segment(c, "A")], wait=0.3, sport=c["sport"])
        return out

    def alive(self, c):
        """The connection still echoes in order."""
        got = self.echo(c, b"alive?", wait=0.6)
        return got == b"alive?"

    def close(self, c):
        send(self.segment(c, "R"))


def ts_value(tcp):
    for name, value in tcp.options:
        if name == "Timestamp":
            return value[0]
    return None


def flags_of(answers):
    """The answers' flags, in order, e.g. 'A' or 'SA,R' ('-' for none)."""
    names = []
    for a in answers:
        f = ""
        for bit, ch in (("S", "S"), ("F", "F"), ("R", "R"), ("A", "A")):
            if getattr(a.flags, bit):
                f += ch
        names.append(f)
    return ",".join(sorted(set(names))) or "-"


def acks_exactly(answers, value):
    return bool(answers) and all(a.flags.A and a.ack == value for a in answers
                                 if not a.flags.R)


# ---------------------------------------------------------------- the cases


def case_syn(p):
    sport = p.fresh_port()
    syn = p.ip() / TCP(sport=sport, dport=p.port, flags="S", seq=1000,
                       window=65535, options=MSS_OPTS + p.tsopt())
    answers = p.exchange([syn], sport=sport)
    synack = [a for a in answers if a.flags.S and a.flags.A]
    if not synack:
        return "no SYN-ACK (" + flags_of(answers) + ")"
    ok = synack[0].ack == 1001 and any(n == "MSS" for n, _ in synack[0].options)
    send(p.ip() / TCP(sport=sport, dport=p.port, flags="R", seq=1001))
    return "SYN-ACK acking the SYN, with MSS" if ok else "malformed SYN-ACK"


def case_bad_checksum(p):
    sport = p.fresh_port()
    syn = p.ip() / TCP(sport=sport, dport=p.port, flags="S", seq=5, chksum=0x1234)
    return "answers " + flags_of(p.exchange([syn], sport=sport))


def case_bad_ip_header_length(p):
    sport = p.fresh_port()
    # IHL 4 (16 bytes) is below the minimum header.
    syn = IP(src=p.src, dst=p.target, ihl=4) / TCP(sport=sport, dport=p.port, flags="S")
    # IHL 15 (60 bytes) runs into the TCP header: options of garbage.
    long = IP(src=p.src, dst=p.target, ihl=15) / TCP(sport=sport, dport=p.port, flags="S")
    return "answers " + flags_of(p.exchange([syn, long], sport=sport))


def case_truncated_options(p):
    sport = p.fresh_port()
    # An MSS option whose length runs past the header's end.
    raw = TCP(sport=sport, dport=p.port, flags="S", seq=9, dataofs=6,
              options=[])
    pkt = p.ip() / raw / Raw(b"\x02\x08\x05\xb4")
    pkt[TCP].dataofs = 6
    return "answers " + flags_of(p.exchange([pkt], sport=sport))


def case_fragmented_syn(p):
    sport = p.fresh_port()
    syn = p.ip() / TCP(sport=sport, dport=p.port, flags="S", seq=77,
                       options=MSS_OPTS + p.tsopt())
    frags = fragment(syn, fragsize=16)
    answers = p.exchange(frags, sport=sport)
    if any(a.flags.S and a.flags.A for a in answers):
        send(p.ip() / TCP(sport=sport, dport=p.port, flags="R", seq=78))
        return "reassembled: SYN-ACK"
    return "answers " + flags_of(answers)


def with_connection(fn):
    def run(p):
        c = p.handshake()
        if c is None:
            return "handshake failed"
        try:
            return fn(p, c)
        finally:
            p.close(c)
    run.__name__ = fn.__name__
    return run


@with_connection
def case_rst_out_of_window(p, c):
    answers = p.exchange([p.segment(c, "R", seq=c["snd"] + 2**30)], sport=c["sport"])
    return f"answers {flags_of(answers)}, alive {p.alive(c)}"


@with_connection
def case_rst_in_window_not_exact(p, c):
    answers = p.exchange([p.segment(c, "R", seq=c["snd"] + 100)], sport=c["sport"])
    challenge = acks_exactly(answers, c["snd"])
    return f"challenge ACK {challenge}, alive {p.alive(c)}"


@with_connection
def case_rst_exact(p, c):
    send(p.segment(c, "R"))
    time.sleep(0.1)
    answers = p.exchange([p.segment(c, "PA", data=b"after reset")], sport=c["sport"])
    return "after: " + flags_of(answers)


@with_connection
def case_syn_on_established(p, c):
    answers = p.exchange([p.segment(c, "S", seq=c["snd"] + 5)], sport=c["sport"])
    challenge = acks_exactly(answers, c["snd"])
    return f"challenge ACK {challenge}, alive {p.alive(c)}"


@with_connection
def case_data_beyond_window(p, c):
    seg = p.segment(c, "PA", seq=c["snd"] + 2**29, data=b"far away")
    answers = p.exchange([seg], sport=c["sport"])
    echoed = any(a.payload and bytes(a.payload) for a in answers)
    return f"dup ACK {acks_exactly(answers, c['snd'])}, echoed {echoed}, alive {p.alive(c)}"


@with_connection
def case_ack_of_unsent_data(p, c):
    seg = p.segment(c, "PA", ack=c["rcv"] + 100000, data=b"bad ack")
    answers = p.exchange([seg], wait=0.6, sport=c["sport"])
    echoed = p.absorb(c, answers) == b"bad ack"
    if echoed:
        # The target took the bytes: the stream goes on after them.
        c["snd"] = (c["snd"] + len(b"bad ack")) % 2**32
    return f"answers {flags_of(answers)}, echoed {echoed}, alive {p.alive(c)}"


@with_connection
def case_paws_old_timestamp(p, c):
    old = (c["ts_recent"] or 0) and (p.ts - 2**31 + 5) % 2**32
    seg = p.segment(c, "PA", data=b"stale", ts=old)
    answers = p.exchange([seg], sport=c["sport"])
    echoed = any(a.payload and bytes(a.payload) for a in answers)
    return f"dup ACK {acks_exactly(answers, c['snd'])}, echoed {echoed}, alive {p.alive(c)}"


@with_connection
def case_overlapping_segments(p, c):
    base = c["snd"]
    first = p.segment(c, "PA", seq=base, data=b"abcdef")
    second = p.segment(c, "PA", seq=base + 3, data=b"defghi")
    answers = p.exchange([first, second], wait=0.6, sport=c["sport"])
    c["snd"] = (base + 9) % 2**32
    got = p.absorb(c, answers)
    return f"echo {got!r}"


@with_connection
def case_retransmitted_segment(p, c):
    base = c["snd"]
    seg = p.segment(c, "PA", seq=base, data=b"hello")
    answers = p.exchange([seg, seg], wait=0.6, sport=c["sport"])
    c["snd"] = (base + 5) % 2**32
    got = p.absorb(c, answers)
    return f"echo {got!r}"


@with_connection
def case_out_of_order(p, c):
    base = c["snd"]
    late = p.segment(c, "PA", seq=base + 5, data=b"world")
    early = p.segment(c, "PA", seq=base, data=b"hello")
    answers = p.exchange([late], wait=0.3, sport=c["sport"])
    sack = any(n == "SAck" for a in answers for n, _ in a.options)
    answers += p.exchange([early], wait=0.5, sport=c["sport"])
    c["snd"] = (base + 10) % 2**32
    got = p.absorb(c, answers)
    return f"SACK {sack}, echo {got!r}"


@with_connection
def case_zero_window(p, c):
    # Close our window, then ask for an echo: the answer must wait, probing.
    seg = p.segment(c, "PA", data=b"z" * 10, window=0)
    answers = p.exchange([seg], wait=1.5, sport=c["sport"])
    c["snd"] = (c["snd"] + 10) % 2**32
    beyond = any(a.payload and len(bytes(a.payload)) > 1 for a in answers)
    # Open the window: the echo must come.
    opened = p.exchange([p.segment(c, "A")], wait=1.5, sport=c["sport"])
    got = p.absorb(c, answers + opened)
    return f"sent beyond a zero window {beyond}, echo after opening {got == b'z' * 10}"


def case_spoofed_handshake(p):
    """A blind handshake: SYN, then an ACK with a guessed number, then data."""
    sport = p.fresh_port()
    syn = p.ip() / TCP(sport=sport, dport=p.port, flags="S", seq=500)
    send(syn)  # the SYN-ACK is not looked at: the attacker cannot see it
    time.sleep(0.2)
    guess = random.randint(0, 2**32 - 1)
    ack = p.ip() / TCP(sport=sport, dport=p.port, flags="A", seq=501, ack=guess)
    data = p.ip() / TCP(sport=sport, dport=p.port, flags="PA", seq=501, ack=guess) / Raw(b"spoof")
    answers = p.exchange([ack, data], wait=0.5, sport=sport)
    echoed = any(a.payload and bytes(a.payload) == b"spoof" for a in answers)
    send(p.ip() / TCP(sport=sport, dport=p.port, flags="R", seq=501))
    return f"echoed {echoed}"


def case_syn_flood(p):
    """1,000 SYNs from spoofed ports, then a real connection still works."""
    base = p.fresh_port()
    p.next_port += 1000
    flood = [p.ip() / TCP(sport=base + i, dport=p.port, flags="S", seq=i * 7919,
                          options=MSS_OPTS) for i in range(1000)]
    send(flood)
    time.sleep(0.2)
    c = p.handshake()
    if c is None:
        return "handshake after the flood failed"
    ok = p.alive(c)
    p.close(c)
    # Reset the flood's half-open connections so they cost nothing more.
    send([p.ip() / TCP(sport=base + i, dport=p.port, flags="R", seq=i * 7919 + 1)
          for i in range(1000)])
    return f"connection after the flood works {ok}"


CASES = [
    case_syn,
    case_bad_checksum,
    case_bad_ip_header_length,
    case_truncated_options,
    case_fragmented_syn,
    case_rst_out_of_window,
    case_rst_in_window_not_exact,
    case_rst_exact,
    case_syn_on_established,
    case_data_beyond_window,
    case_ack_of_unsent_data,
    case_paws_old_timestamp,
    case_overlapping_segments,
    case_retransmitted_segment,
    case_out_of_order,
    case_zero_window,
    case_spoofed_handshake,
    case_syn_flood,
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--port", type=int, default=7)
    ap.add_argument("--src", required=True, help="source address no host owns")
    ap.add_argument("--iface", required=True, help="interface the answers arrive on")
    ap.add_argument("--only", help="comma-separated case names")
    args = ap.parse_args()
    random.seed(args.target)
    p = Probe(args.target, args.port, args.src, args.iface)
    only = set(args.only.split(",")) if args.only else None
    out = {}
    for case in CASES:
        name = case.__name__[len("case_"):]
        if only and name not in only:
            continue
        try:
            out[name] = case(p)
        except Exception as e:  # a probe bug must not hide the other cases
            out[name] = f"probe error: {e!r}"
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
