#!/usr/bin/env python3
"""Kernel TCP reference harness: heartbeats over real Linux TCP between two network namespaces,
with faults made by nft on the receivers' input hooks. Needs root (ip netns, veth, nft).

    sudo python3 scripts/kernel-tcp/measure.py all --reps 8 --loss-minutes 15   # the reference run, ~27 min
    sudo python3 scripts/kernel-tcp/measure.py partition|loss|usertimeout|longpartition|baseline
    sudo python3 scripts/kernel-tcp/measure.py all --quick           # smoke test, ~4 min
    sudo python3 scripts/kernel-tcp/measure.py cleanup               # remove leftover namespaces
    python3 scripts/kernel-tcp/analyze.py DIR                        # the figures, as Markdown

Each run gets its own directory DIR/<measurement>/<case>/rep<N>/ with client.csv, server.csv,
events.csv, meta.json (the inputs of analyze.py) plus tcpinfo_*.csv and packets.csv.
See README.md in this folder for the columns.
"""
import argparse
import atexit
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
HB = os.path.join(HERE, "hb.py")
PORT = 7000
NS_PREFIX_A, NS_PREFIX_B = "ktA", "ktB"

_children = set()
_children_lock = threading.Lock()
_pairs = []


def sh(*cmd, check=True, input=None):
    return subprocess.run(cmd, check=check, input=input, capture_output=True, text=True)


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    with _children_lock:
        _children.add(p)
    return p


def reap(p, term=True, timeout=10):
    if term and p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    with _children_lock:
        _children.discard(p)
    return out, err


def wait_ready(p, what):
    line = p.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"{what} did not start: {line!r} {p.stderr.read() if p.poll() is not None else ''}")


class Pair:
    """Namespaces ktA<i> (client) and ktB<i> (server) joined by veth ktva<i> <-> ktvb<i>,
    10.77.<i>.1 <-> 10.77.<i>.2. The namespaces have no other interface: traffic stays on them."""

    def __init__(self, i):
        self.i = i
        self.a, self.b = f"{NS_PREFIX_A}{i}", f"{NS_PREFIX_B}{i}"
        self.va, self.vb = f"ktva{i}", f"ktvb{i}"
        self.addr_a, self.addr_b = f"10.77.{i}.1", f"10.77.{i}.2"

    def up(self):
        self.down()
        sh("ip", "netns", "add", self.a)
        sh("ip", "netns", "add", self.b)
        _pairs.append(self)
        sh("ip", "link", "add", self.va, "type", "veth", "peer", "name", self.vb)
        sh("ip", "link", "set", self.va, "netns", self.a)
        sh("ip", "link", "set", self.vb, "netns", self.b)
        sh("ip", "-n", self.a, "addr", "add", f"{self.addr_a}/30", "dev", self.va)
        sh("ip", "-n", self.b, "addr", "add", f"{self.addr_b}/30", "dev", self.vb)
        for ns, dev in ((self.a, self.va), (self.b, self.vb)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", dev, "up")

    def down(self):
        self.stop_helpers()
        for ns in (self.a, self.b):
            sh("ip", "netns", "del", ns, check=False)

    # ---- faults: tables on the input hooks of both receivers, never on output.
    # One nftd helper per namespace applies a script at once; both get it together.
    def _nftd(self):
        if not getattr(self, "helpers", None):
            self.helpers = []
            for ns in (self.a, self.b):
                p = spawn(["ip", "netns", "exec", ns, sys.executable, HB, "nftd"], stdin=subprocess.PIPE)
                wait_ready(p, f"nftd in {ns}")
                self.helpers.append(p)
        return self.helpers

    def _nft_both(self, script_a, script_b, check=True):
        """Returns (first start, last commit) monotonic times."""
        hs = self._nftd()
        for h, s in zip(hs, (script_a, script_b)):
            h.stdin.write(json.dumps(s) + "\n")
            h.stdin.flush()
        tb, ta, errs = [], [], []
        for h in hs:
            r = h.stdout.readline().split(" ", 2)
            if r[0] == "ok":
                tb.append(float(r[1]))
                ta.append(float(r[2]))
            else:
                errs.append(" ".join(r))
        if errs and check:
            raise RuntimeError(f"nft: {errs}")
        return (min(tb) if tb else None, max(ta) if ta else None)

    def _table(self, name, drop_from, match):
        return (f"table inet {name} {{\n  chain input {{\n"
                f"    type filter hook input priority 0; policy accept;\n"
                f"    ip saddr {drop_from} {match}drop\n  }}\n}}\n")

    def partition(self):
        return self._nft_both(self._table("ktpart", self.addr_b, ""), self._table("ktpart", self.addr_a, ""))

    def loss(self, permille):
        m = f"numgen random mod 1000 < {permille} "
        return self._nft_both(self._table("ktloss", self.addr_b, m), self._table("ktloss", self.addr_a, m))

    def clear(self, table):
        return self._nft_both(f"delete table inet {table}\n", f"delete table inet {table}\n")

    def clear_all(self):
        self._nft_both("flush ruleset\n", "flush ruleset\n", check=False)

    def stop_helpers(self):
        for h in getattr(self, "helpers", None) or []:
            reap(h)
        self.helpers = []


def cleanup_all():
    with _children_lock:
        kids = list(_children)
    for p in kids:
        if p.poll() is None:
            p.kill()
    for p in _pairs:
        p.down()
    _pairs.clear()


def cleanup_stale():
    out = sh("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if (name.startswith(NS_PREFIX_A) or name.startswith(NS_PREFIX_B)) and name[3:].isdigit():
            sh("ip", "netns", "del", name, check=False)


def sleep_until(t):
    while True:
        d = t - time.monotonic()
        if d <= 0:
            return
        time.sleep(min(d, 0.05) if d > 0.002 else d)


def system_facts():
    def rd(path):
        try:
            return open(path).read().strip()
        except OSError:
            return ""
    hz = ""
    try:
        import gzip
        for line in gzip.open("/proc/config.gz", "rt"):
            if line.startswith("CONFIG_HZ="):
                hz = line.split("=", 1)[1].strip()
    except OSError:
        pass
    return {
        "kernel": os.uname().release,
        "congestion_control": rd("/proc/sys/net/ipv4/tcp_congestion_control"),
        "hz": hz,
        "tcp_retries2": rd("/proc/sys/net/ipv4/tcp_retries2"),
        "tcp_early_retrans": rd("/proc/sys/net/ipv4/tcp_early_retrans"),
        "tcp_recovery": rd("/proc/sys/net/ipv4/tcp_recovery"),
        "tcp_rto_min_us": rd("/proc/sys/net/ipv4/tcp_rto_min_us"),
        "nproc": os.cpu_count(),
    }


def run_one(pair, outdir, eta, warmup_hb, fault, seed):
    """One connection, one fault. fault: dict with kind in
    none | partition (seconds, post) | loss (permille, seconds, post) |
    usertimeout (user_timeout_ms, seconds_after) ; all get a random phase U(0, eta) after warm-up."""
    rng = random.Random(seed)
    if os.path.exists(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    pair.clear_all()
    events = []

    def ev(name, detail="", t=None):
        events.append((time.monotonic() if t is None else t, "orch", name, detail))

    kind = fault["kind"]
    warm = max(warmup_hb * eta, 3.0)
    fault_at = warm + rng.uniform(0, eta)
    if kind == "none":
        total = fault["seconds"]
    elif kind == "partition":
        total = fault_at + fault["seconds"] + fault["post"]
    elif kind == "loss":
        total = fault_at + fault["seconds"] + fault["post"]
    elif kind == "usertimeout":
        total = fault_at + fault["user_timeout_ms"] / 1000 + fault["seconds_after"]
    else:
        raise ValueError(kind)

    sniff = spawn(["ip", "netns", "exec", pair.b, sys.executable, HB, "sniff", "--iface", pair.vb,
                   "--a-addr", pair.addr_a, "--out", outdir])
    server = spawn(["ip", "netns", "exec", pair.b, sys.executable, HB, "server", "--bind", pair.addr_b,
                    "--port", str(PORT), "--out", outdir])
    client = None
    samplers = []
    every = fault.get("ss_every", 0)
    if every:
        for side, ns in (("client", pair.a), ("server", pair.b)):
            samplers.append(spawn(["ip", "netns", "exec", ns, sys.executable, HB, "ss", "--side", side, "--port",
                                   str(PORT), "--every", repr(every), "--out", outdir]))
    try:
        wait_ready(sniff, "sniffer")
        wait_ready(server, "server")
        t0 = time.monotonic() + 1.0
        ccmd = ["ip", "netns", "exec", pair.a, sys.executable, HB, "client", "--connect", pair.addr_b,
                "--port", str(PORT), "--eta", repr(eta), "--t0", f"{t0:.6f}", "--t-end",
                f"{t0 + total:.6f}", "--out", outdir]
        if kind == "usertimeout":
            ccmd += ["--user-timeout-ms", str(fault["user_timeout_ms"])]
        client = spawn(ccmd)
        ev("t0", "", t0)
        if kind == "partition":
            sleep_until(t0 + fault_at)
            tb, ta = pair.partition()
            ev("partition_begin", "", tb)
            ev("partition", f"{fault['seconds']}", ta)
            sleep_until(t0 + fault_at + fault["seconds"])
            tb, ta = pair.clear("ktpart")
            ev("heal_begin", "", tb)
            ev("heal", "", ta)
        elif kind == "loss":
            sleep_until(t0 + fault_at)
            tb, ta = pair.loss(fault["permille"])
            ev("loss_begin", "", tb)
            ev("loss", f"{fault['permille']}", ta)
            sleep_until(t0 + fault_at + fault["seconds"])
            tb, ta = pair.clear("ktloss")
            ev("loss_end_begin", "", tb)
            ev("loss_end", "", ta)
        elif kind == "usertimeout":
            sleep_until(t0 + fault_at)
            tb, ta = pair.partition()
            ev("partition_begin", "", tb)
            ev("partition", "no heal", ta)
        ev("t_end", "", t0 + total)
        try:
            client.wait(timeout=total + 30 - (time.monotonic() - t0))
        except subprocess.TimeoutExpired:
            ev("client_timeout")
        cout, cerr = reap(client)
        client = None
        for line in cout.splitlines():
            parts = line.split(",", 3)
            if len(parts) == 4:
                events.append((float(parts[0]), parts[1], parts[2], parts[3]))
        if cerr.strip():
            open(os.path.join(outdir, "client.stderr"), "w").write(cerr)
        if kind == "usertimeout":
            ev("cleanup_heal")
    finally:
        if client is not None:
            reap(client)
        time.sleep(0.3)
        sout, serr = reap(server)
        for line in sout.splitlines():
            parts = line.split(",", 3)
            if len(parts) == 4:
                events.append((float(parts[0]), parts[1], parts[2], parts[3]))
        reap(sniff)
        for p in samplers:
            reap(p)
        pair.clear_all()
    events.sort()
    with open(os.path.join(outdir, "events.csv"), "w") as f:
        f.write("time,source,event,detail\n")
        for t, src, name, det in events:
            f.write(f"{t:.6f},{src},{name},{det}\n")
    meta = dict(fault)
    meta.update(eta=eta, warmup_hb=warmup_hb, fault_offset=fault_at, seed=seed, pair=pair.i,
                client_addr=pair.addr_a, server_addr=pair.addr_b, **system_facts())
    with open(os.path.join(outdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return outdir


def run_jobs(jobs, parallel, base_index=0):
    """jobs: list of (outdir, eta, fault, seed). Runs them on `parallel` namespace pairs."""
    q = queue.Queue()
    for j in jobs:
        q.put(j)
    errors = []
    pairs = [Pair(base_index + i) for i in range(min(parallel, len(jobs)))]
    for p in pairs:
        p.up()

    def worker(pair):
        while True:
            try:
                outdir, eta, fault, seed = q.get_nowait()
            except queue.Empty:
                return
            t = time.monotonic()
            try:
                run_one(pair, outdir, eta, 20, fault, seed)
                print(f"  done {os.path.relpath(outdir)} ({time.monotonic() - t:.0f} s)", flush=True)
            except Exception as e:  # keep the other runs going; report at the end
                errors.append((outdir, repr(e)))
                print(f"  FAILED {outdir}: {e!r}", flush=True)

    threads = [threading.Thread(target=worker, args=(p,), daemon=True) for p in pairs]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    for p in pairs:
        p.down()
        if p in _pairs:
            _pairs.remove(p)
    if errors:
        raise RuntimeError(f"{len(errors)} run(s) failed: {errors}")


def fmt_s(x):
    return f"{x:g}s"


def jobs_partition(out, reps, quick):
    jobs = []
    cases = [(0.1, [0.5, 1, 3, 10]), (1.0, [1, 3, 10])]
    if quick:
        cases = [(0.1, [1]), (1.0, [3])]
    for eta, durs in cases:
        for d in durs:
            for r in range(reps):
                post = max(5.0, d + 3.0)
                jobs.append((os.path.join(out, "partition", f"eta{fmt_s(eta)}_part{fmt_s(d)}", f"rep{r}"),
                             eta, {"kind": "partition", "measurement": "partition", "seconds": d, "post": post},
                             zlib.crc32(repr(("p", eta, d, r)).encode())))
    # longest runs first so the pool finishes together
    jobs.sort(key=lambda j: -(j[2]["seconds"] + 20 * j[1]))
    return jobs


def jobs_loss(out, minutes, quick):
    jobs = []
    secs = 60 if quick else minutes * 60
    for eta in (0.1, 1.0):
        for pct in (1, 10, 20):
            jobs.append((os.path.join(out, "loss", f"eta{fmt_s(eta)}_loss{pct}pct", "rep0"), eta,
                         {"kind": "loss", "measurement": "loss", "permille": pct * 10, "loss_pct": pct,
                          "seconds": secs, "post": 5.0, "ss_every": 0.5}, zlib.crc32(repr(("l", eta, pct)).encode())))
    return jobs


def jobs_usertimeout(out, reps, quick):
    jobs = []
    for eta in (0.1, 1.0):
        for ut in (3000, 5000):
            for r in range(reps):
                jobs.append((os.path.join(out, "usertimeout", f"eta{fmt_s(eta)}_ut{ut}ms", f"rep{r}"), eta,
                             {"kind": "usertimeout", "measurement": "usertimeout", "user_timeout_ms": ut,
                              "seconds_after": 6.0}, zlib.crc32(repr(("u", eta, ut, r)).encode())))
    jobs.sort(key=lambda j: -j[1])
    return jobs


def jobs_longpartition(out, reps, seconds, quick):
    if quick:
        seconds, reps = 20, 1
    return [(os.path.join(out, "longpartition", f"eta1s_part{seconds}s", f"rep{r}"), 1.0,
             {"kind": "partition", "measurement": "longpartition", "seconds": seconds, "post": seconds,
              "ss_every": 0.1},
             zlib.crc32(repr(("lp", r)).encode())) for r in range(reps)]


def jobs_baseline(out, quick):
    return [(os.path.join(out, "baseline", f"eta{fmt_s(eta)}_nofault", "rep0"), eta,
             {"kind": "none", "measurement": "baseline", "seconds": 20 if quick else 120}, 1)
            for eta in (0.1, 1.0)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["all", "baseline", "partition", "loss", "usertimeout", "longpartition",
                                     "cleanup"])
    ap.add_argument("--out", default=os.path.join(HERE, "runs"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--parallel", type=int, default=5, help="namespace pairs used at once (loss uses 6)")
    ap.add_argument("--loss-minutes", type=float, default=12)
    ap.add_argument("--long-seconds", type=int, default=60)
    ap.add_argument("--quick", action="store_true", help="smoke test: 1-2 reps, short runs")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (ip netns, veth, nft)")
    import fcntl
    lock = open("/run/kernel-tcp-measure.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        sys.exit("another measure.py is running (it owns the ktA*/ktB* namespaces)")
    cleanup_stale()
    if a.what == "cleanup":
        return
    atexit.register(cleanup_all)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda *_: sys.exit(130))
    reps = 1 if a.quick else a.reps
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "system.json"), "w") as f:
        json.dump(system_facts(), f, indent=1)
    todo = ["baseline", "loss", "partition", "usertimeout", "longpartition"] if a.what == "all" else [a.what]
    for what in todo:
        t = time.monotonic()
        print(f"== {what}", flush=True)
        if what == "baseline":
            run_jobs(jobs_baseline(a.out, a.quick), 2)
        elif what == "partition":
            run_jobs(jobs_partition(a.out, reps, a.quick), a.parallel)
        elif what == "loss":
            run_jobs(jobs_loss(a.out, a.loss_minutes, a.quick), 6)
        elif what == "usertimeout":
            run_jobs(jobs_usertimeout(a.out, reps, a.quick), a.parallel)
        elif what == "longpartition":
            run_jobs(jobs_longpartition(a.out, 1 if a.quick else 3, a.long_seconds, a.quick), 3)
        print(f"== {what}: {time.monotonic() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
