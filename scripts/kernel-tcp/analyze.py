#!/usr/bin/env python3
"""Computes the heartbeat-tail figures from raw run directories (kernel harness or simulator).

    python3 analyze.py RUNS_DIR [--json OUT.json]

RUNS_DIR holds <measurement>/<case>/<rep>/ directories, each with:
    meta.json   at least {"measurement": ..., "eta": seconds, "kind": ...} plus the fault's
                parameters ("seconds" of partition, "loss_pct", "user_timeout_ms")
    client.csv  seq,send_time,echo_time        (echo_time empty when no echo came)
    server.csv  seq,recv_time
    events.csv  time,source,event,detail       (events used: partition, heal, loss, loss_end,
                                                client error with detail ETIMEDOUT)
  optional (kernel harness; the simulator may leave them out, the tables then say n/a):
    tcpinfo_client.csv, tcpinfo_server.csv     TCP_INFO every ~100 ms (rto_ms, rtt_ms, backoff, ...)
    packets.csv time,dir,seq,ack,flags,len     every TCP segment on the server's interface
All times are seconds on one monotonic clock. Only the standard library is used.
"""
import argparse
import csv
import json
import math
import os
import statistics
import sys


# ------------------------------------------------------------------------------------ loading
def read_csv(path):
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class Run:
    def __init__(self, d):
        self.dir = d
        self.meta = json.load(open(os.path.join(d, "meta.json")))
        self.eta = float(self.meta["eta"])
        self.sends = {}
        self.echo = {}
        for r in read_csv(os.path.join(d, "client.csv")) or []:
            s = int(r["seq"])
            self.sends[s] = float(r["send_time"])
            if r["echo_time"]:
                self.echo[s] = float(r["echo_time"])
        self.srecv = {}
        for r in read_csv(os.path.join(d, "server.csv")) or []:
            self.srecv.setdefault(int(r["seq"]), float(r["recv_time"]))
        self.events = read_csv(os.path.join(d, "events.csv")) or []
        self.info = {side: read_csv(os.path.join(d, f"tcpinfo_{side}.csv")) for side in ("client", "server")}
        self.packets = read_csv(os.path.join(d, "packets.csv"))
        self.ss = {side: read_csv(os.path.join(d, f"ss_{side}.csv")) for side in ("client", "server")}

    def ev(self, name, source=None):
        for e in self.events:
            if e["event"] == name and (source is None or e["source"] == source):
                return float(e["time"])
        return None

    def ev_detail(self, name, source=None):
        for e in self.events:
            if e["event"] == name and (source is None or e["source"] == source):
                return e["detail"]
        return None


def load(root):
    runs = {}
    for dp, dn, fn in os.walk(root):
        if "meta.json" in fn and "client.csv" in fn:
            r = Run(dp)
            case = os.path.basename(os.path.dirname(dp))
            key = (r.meta.get("measurement", "?"), case)
            runs.setdefault(key, []).append(r)
    for v in runs.values():
        v.sort(key=lambda r: r.dir)
    return runs


# ------------------------------------------------------------------------------------ helpers
def q(xs, p):
    """Nearest-rank quantile of a sorted list."""
    if not xs:
        return None
    i = max(0, min(len(xs) - 1, math.ceil(p * len(xs)) - 1))
    return xs[i]


def poisson_cdf(n, lam):
    """P(X <= n) for X ~ Poisson(lam)."""
    if lam <= 0:
        return 1.0
    term = math.exp(-lam) if lam < 700 else 0.0
    if term == 0.0:  # large lam: sum in log space
        logt, acc = -lam, []
        for k in range(n + 1):
            acc.append(logt)
            logt += math.log(lam) - math.log(k + 1)
        m = max(acc)
        return min(1.0, math.exp(m) * sum(math.exp(a - m) for a in acc))
    total = 0.0
    for k in range(n + 1):
        total += term
        term *= lam / (k + 1)
    return min(1.0, total)


def poisson_ci(n, level=0.95):
    """Exact (Garwood) interval for a Poisson mean given count n."""
    a = (1 - level) / 2

    def solve(f, lo, hi):
        for _ in range(100):
            mid = (lo + hi) / 2
            if f(mid):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2
    hi_bound = n + 10 * math.sqrt(n + 1) + 10
    lower = 0.0 if n == 0 else solve(lambda lam: 1 - poisson_cdf(n - 1, lam) < a, 0.0, hi_bound)
    upper = solve(lambda lam: poisson_cdf(n, lam) > a, 0.0, hi_bound)
    return lower, upper


def gaps(times):
    t = sorted(times)
    return [b - a for a, b in zip(t, t[1:])]


def ms(x, nd=0):
    return "n/a" if x is None else f"{x * 1000:.{nd}f}"


def mmm(xs, scale=1000, nd=0):
    """min / mean / max as one cell."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    f = lambda v: f"{v * scale:.{nd}f}"
    return f"{f(min(xs))} / {f(statistics.mean(xs))} / {f(max(xs))}"


def first_after(times, t0):
    after = [t for t in times if t >= t0]
    return min(after) if after else None


def burst(times, first, window=0.001):
    return sum(1 for t in times if first <= t <= first + window) if first is not None else 0


def retransmissions(run, t_from=None, t_to=None):
    """Client->server data segments that resend bytes already sent, from packets.csv.
    Returns (original send time of the first retransmitted byte, [retransmission times])."""
    if not run.packets:
        return None, []
    isn = None
    top = None          # highest sequence sent so far, relative to isn
    first_sent = {}     # relative seq -> first transmission time
    out = []
    for p in run.packets:
        if p["dir"] != "AB":
            continue
        seq = int(p["seq"])
        if "S" in p["flags"]:
            isn = seq
            continue
        ln = int(p["len"])
        if isn is None or ln <= 0:
            continue
        rel = (seq - isn) % (1 << 32)
        t = float(p["time"])
        if top is not None and rel < top:
            if (t_from is None or t >= t_from) and (t_to is None or t <= t_to):
                out.append((t, rel))
        else:
            first_sent.setdefault(rel, t)
        top = max(top or 0, rel + ln)
    if not out:
        return None, []
    head = min(rel for _, rel in out)   # the oldest byte ever resent: the first unacknowledged one
    orig = first_sent.get(head)
    if orig is None:  # a resend that merged segments: take the original that holds head
        cands = [x for x in first_sent if x <= head]
        orig = first_sent[max(cands)] if cands else None
    return orig, [t for t, _ in out]


def info_rows(run, side, t_from, t_to):
    rows = run.info.get(side) or []
    return [r for r in rows if t_from <= float(r["time"]) <= t_to]


# ------------------------------------------------------------------------------------ analyses
def analyze_partition(run):
    H = run.ev("heal")
    P = run.ev("partition")
    Pb = run.ev("partition_begin")
    D = float(run.meta["seconds"])
    ce = sorted(run.echo.values())
    sr = sorted(run.srecv.values())
    c_first = first_after(ce, H)
    s_first = first_after(sr, H)
    stalled = [s for s, t in run.sends.items() if t >= Pb and (s not in run.echo or run.echo[s] >= H)]
    first_unacked = min((run.sends[s] for s in stalled), default=None)
    # everything waiting when traffic resumed: sent after the partition began, before the first echo
    pending = sum(1 for s, t in run.sends.items() if Pb <= t < (c_first if c_first is not None else 1e18))
    orig, rtx = retransmissions(run)
    rtx_before = [t for t in rtx if t < H]
    first_ab_after = None
    if run.packets:
        for p in run.packets:
            t = float(p["time"])
            if p["dir"] == "AB" and t >= H and int(p["len"]) > 0:
                first_ab_after = t
                break
    rto_at_heal = None
    rows = run.info.get("client") or []
    before = [r for r in rows if float(r["time"]) <= H]
    if before:
        rto_at_heal = float(before[-1]["rto_ms"]) / 1000
    return {
        "partition_s": D,
        "stall_client": max(gaps(ce), default=None),
        "stall_server": max(gaps(sr), default=None),
        "heal_to_echo": None if c_first is None else c_first - H,
        "heal_to_server": None if s_first is None else s_first - H,
        "burst_client": burst(ce, c_first),
        "burst_server": burst(sr, s_first),
        "backlog": pending,
        "first_unacked_to_echo": None if (c_first is None or first_unacked is None) else c_first - first_unacked,
        "n_rtx_during": len(rtx_before),
        "rto_at_heal": rto_at_heal,
        "first_segment_after_heal": None if first_ab_after is None else first_ab_after - H,
        "heal_op_s": None if run.ev("heal_begin") is None else H - run.ev("heal_begin"),
        "error": run.ev_detail("error", "client"),
    }


def analyze_loss(run):
    L, E = run.ev("loss"), run.ev("loss_end")
    eta = run.eta
    hours = (E - L) / 3600
    seqs = [s for s, t in run.sends.items() if L <= t < E]
    rtts = sorted(run.echo[s] - run.sends[s] for s in seqs if s in run.echo)
    missing = sum(1 for s in seqs if s not in run.echo)
    owd = sorted(run.srecv[s] - run.sends[s] for s in seqs if s in run.srecv)
    eg = gaps([run.echo[s] for s in seqs if s in run.echo])
    sg = gaps([run.srecv[s] for s in seqs if s in run.srecv])
    res = {
        "loss_pct": run.meta.get("loss_pct"), "minutes": (E - L) / 60, "n": len(seqs), "missing_echo": missing,
        "errors": run.ev_detail("error", "client"),
        "rtt_gt_200ms_h": sum(1 for x in rtts if x > 0.2) / hours,
        "rtt_gt_1s_h": sum(1 for x in rtts if x > 1.0) / hours,
        "rtt_gt_200ms_n": sum(1 for x in rtts if x > 0.2),
        "rtt_gt_1s_n": sum(1 for x in rtts if x > 1.0),
        "gap_gt_200ms_h": sum(1 for g in eg if g > 0.2) / hours,
        "gap_gt_eta200_h": sum(1 for g in eg if g > eta + 0.2) / hours,
        "gap_gt_1s_h": sum(1 for g in eg if g > 1.0) / hours,
        "gap_gt_eta200_n": sum(1 for g in eg if g > eta + 0.2),
        "gap_gt_1s_n": sum(1 for g in eg if g > 1.0),
        "rtt_p50": q(rtts, .5), "rtt_p95": q(rtts, .95), "rtt_p99": q(rtts, .99), "rtt_p999": q(rtts, .999), "rtt_max": rtts[-1] if rtts else None,
        "longest_gap": max(eg, default=None),
        "owd_p50": q(owd, .5), "owd_p99": q(owd, .99), "owd_max": owd[-1] if owd else None,
        "sgap_gt_eta200_h": sum(1 for g in sg if g > eta + 0.2) / hours,
        "sgap_gt_1s_h": sum(1 for g in sg if g > 1.0) / hours,
        "longest_sgap": max(sg, default=None),
    }
    for side in ("client", "server"):
        rows = info_rows(run, side, L, E)
        rto = sorted(float(r["rto_ms"]) for r in rows)
        rto0 = sorted(float(r["rto_ms"]) for r in rows if int(r["backoff"]) == 0)
        rtt = sorted(float(r["rtt_ms"]) for r in rows)
        res[side + "_info"] = {
            "samples": len(rows),
            "rto_p50": q(rto, .5), "rto_p90": q(rto, .9), "rto_max": rto[-1] if rto else None,
            "rto_nobackoff_p50": q(rto0, .5), "rto_nobackoff_p90": q(rto0, .9),
            "rto_nobackoff_max": rto0[-1] if rto0 else None,
            "rtt_p50": q(rtt, .5), "rtt_p90": q(rtt, .9), "rtt_max": rtt[-1] if rtt else None,
            "backoff_max": max((int(r["backoff"]) for r in rows), default=None),
            "total_retrans": int(rows[-1]["total_retrans"]) - int(rows[0]["total_retrans"]) if rows else None,
        }
        srows = [r for r in (run.ss.get(side) or []) if L <= float(r["time"]) <= E]
        srto = sorted(float(r["rto_ms"]) for r in srows)
        res[side + "_ss"] = {"samples": len(srows), "rto_p50": q(srto, .5), "rto_p90": q(srto, .9),
                             "rto_max": srto[-1] if srto else None}
    return res


def analyze_usertimeout(run):
    Pb, P = run.ev("partition_begin"), run.ev("partition")
    err_t = run.ev("error", "client")
    err = run.ev_detail("error", "client")
    unacked = [t for s, t in run.sends.items() if t >= Pb - 0.001 and s not in run.echo]
    fu = min(unacked) if unacked else None
    orig, rtx = retransmissions(run)
    return {
        "ut_ms": run.meta.get("user_timeout_ms"), "error": err,
        "to_etimedout": None if (err_t is None or fu is None) else err_t - fu,
        "partition_to_etimedout": None if err_t is None else err_t - P,
        "rtx_times": [t - orig for t in rtx] if orig is not None else [],
    }


def analyze_baseline(run):
    rtts = sorted(run.echo[s] - run.sends[s] for s in run.sends if s in run.echo)
    owd = sorted(run.srecv[s] - run.sends[s] for s in run.sends if s in run.srecv)
    rows = run.info.get("client") or []
    krtt = sorted(float(r["rtt_ms"]) for r in rows)
    rto = sorted(float(r["rto_ms"]) for r in rows)
    return {"n": len(rtts), "rtt_p50": q(rtts, .5), "rtt_p99": q(rtts, .99), "rtt_max": rtts[-1] if rtts else None,
            "owd_p50": q(owd, .5), "kernel_srtt_p50_ms": q(krtt, .5), "rto_p50_ms": q(rto, .5)}


# ------------------------------------------------------------------------------------ report
def case_sort_key(item):
    (meas, case), runs = item
    m = runs[0].meta
    return (meas, runs[0].eta, float(m.get("seconds", 0)) if meas != "loss" else m.get("loss_pct", 0),
            m.get("user_timeout_ms", 0))


def span(v):
    return f"{min(v)}" if min(v) == max(v) else f"{min(v)}–{max(v)}"


def bursts(a, key):
    """'all N' when every repetition received its whole backlog within 1 ms, else the values."""
    same = sum(1 for x in a if x[key] == x["backlog"])
    vals = ", ".join(str(x[key]) for x in a)
    return f"all, {same}/{len(a)}" if same == len(a) else f"{vals} ({same}/{len(a)} whole backlog)"


def report(runs, out_json=None):
    allres = {}
    lines = []
    P = lines.append
    items = sorted(runs.items(), key=case_sort_key)

    base = [(k, v) for k, v in items if k[0] == "baseline"]
    if base:
        P("### Baseline (no fault)\n")
        P("| η | heartbeats | RTT p50 | RTT p99 | RTT max | one-way p50 | kernel srtt p50 | RTO p50 |")
        P("|---|---|---|---|---|---|---|---|")
        for (meas, case), rs in base:
            for r in rs:
                a = analyze_baseline(r)
                allres.setdefault(case, []).append(a)
                P(f"| {r.eta:g} s | {a['n']} | {ms(a['rtt_p50'], 3)} ms | {ms(a['rtt_p99'], 3)} ms | "
                  f"{ms(a['rtt_max'], 1)} ms | {ms(a['owd_p50'], 3)} ms | {a['kernel_srtt_p50_ms']} ms | "
                  f"{a['rto_p50_ms']} ms |")
        P("")

    part = [(k, v) for k, v in items if k[0] in ("partition", "longpartition")]
    if part:
        P("### Stall after a healed partition\n")
        P("Per case: min / mean / max over the repetitions, in ms. *Stall* = longest gap between consecutive "
          "receipts; *heal→first* = from the heal (both nft tables deleted) to the first receipt after it; "
          "*burst* = repetitions in which the whole backlog arrived within 1 ms of that first receipt "
          "(otherwise the counts that did); "
          "*first unacked → echo* = from the send of the first heartbeat that was held up to the first echo "
          "after the heal (how long the head of the queue waited). "
          "*backlog* = heartbeats sent from the partition's start until that first echo (what was waiting "
          "when traffic resumed). *RTO at heal* = the client's TCP_INFO rto (with backoff) at the last 100 ms "
          "sample before the heal.\n")
        P("| η | partition | reps | client stall | client heal→first echo | first unacked → echo | server stall "
          "| server heal→first recv | burst at client | burst at server | backlog | RTO at heal (client) |")
        P("|---|---|---|---|---|---|---|---|---|---|---|---|")
        part.sort(key=lambda kv: (kv[1][0].eta, float(kv[1][0].meta["seconds"])))
        for (meas, case), rs in part:
            a = [analyze_partition(r) for r in rs]
            allres[case] = a
            D = a[0]["partition_s"]
            P(f"| {rs[0].eta:g} s | {D:g} s | {len(a)} | {mmm([x['stall_client'] for x in a])} | "
              f"{mmm([x['heal_to_echo'] for x in a])} | {mmm([x['first_unacked_to_echo'] for x in a])} | "
              f"{mmm([x['stall_server'] for x in a])} | "
              f"{mmm([x['heal_to_server'] for x in a])} | {bursts(a, 'burst_client')} | "
              f"{bursts(a, 'burst_server')} | {span([x['backlog'] for x in a])} | "
              f"{mmm([x['rto_at_heal'] for x in a])} |")
        errs = [(case, x["error"]) for (m, case), rs in part for x in allres[case] if x["error"]]
        if errs:
            P(f"\nConnection errors: {errs}")
        heal_ops = [x["heal_op_s"] for (m, case), rs in part for x in allres[case] if x["heal_op_s"] is not None]
        if heal_ops:
            P(f"\nHeal operation (first table deletion started → last committed): max {ms(max(heal_ops), 2)} ms.")
        P("")

    loss = [(k, v) for k, v in items if k[0] == "loss"]
    if loss:
        P("### Random loss, each way\n")
        P("Counts are per hour of traffic under loss (raw count in brackets). RTT = echo receipt − send.\n")
        P("| η | loss | minutes | heartbeats | RTT>200ms /h | RTT>1s /h | gap>200ms /h | gap>η+200ms /h | gap>1s /h "
          "| RTT p50 | p99 | p99.9 | max | longest gap | missing echoes | errors |")
        P("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for (meas, case), rs in loss:
            for r in rs:
                a = analyze_loss(r)
                allres.setdefault(case, []).append(a)
                P(f"| {r.eta:g} s | {a['loss_pct']}% | {a['minutes']:.1f} | {a['n']} | "
                  f"{a['rtt_gt_200ms_h']:.0f} ({a['rtt_gt_200ms_n']}) | {a['rtt_gt_1s_h']:.0f} ({a['rtt_gt_1s_n']}) | "
                  f"{a['gap_gt_200ms_h']:.0f} | {a['gap_gt_eta200_h']:.0f} ({a['gap_gt_eta200_n']}) | "
                  f"{a['gap_gt_1s_h']:.0f} ({a['gap_gt_1s_n']}) | {ms(a['rtt_p50'], 2)} ms | {ms(a['rtt_p99'])} ms | "
                  f"{ms(a['rtt_p999'])} ms | {ms(a['rtt_max'])} ms | {ms(a['longest_gap'])} ms | "
                  f"{a['missing_echo']} | {a['errors'] or 0} |")
        P("\n95% intervals (exact Poisson on the raw count, per hour). Delays come in clusters (one lost "
          "segment holds back every heartbeat behind it), so the true spread is somewhat wider.\n")
        P("| η | loss | RTT>200ms /h | RTT>1s /h | gap>η+200ms /h | gap>1s /h |")
        P("|---|---|---|---|---|---|")
        for (meas, case), rs in loss:
            for a, r in zip(allres[case], rs):
                h = a["minutes"] / 60
                cells = []
                for k in ("rtt_gt_200ms_n", "rtt_gt_1s_n", "gap_gt_eta200_n", "gap_gt_1s_n"):
                    lo, hi = poisson_ci(a[k])
                    cells.append(f"{a[k] / h:.0f} [{lo / h:.0f}–{hi / h:.0f}]")
                P(f"| {r.eta:g} s | {a['loss_pct']}% | " + " | ".join(cells) + " |")
        P("\nServer side (one-way, client send → server receipt):\n")
        P("| η | loss | one-way p50 | p99 | max | server gap>η+200ms /h | server gap>1s /h | longest server gap |")
        P("|---|---|---|---|---|---|---|---|")
        for (meas, case), rs in loss:
            for a, r in zip(allres[case], rs):
                P(f"| {r.eta:g} s | {a['loss_pct']}% | {ms(a['owd_p50'], 2)} ms | {ms(a['owd_p99'])} ms | "
                  f"{ms(a['owd_max'])} ms | {a['sgap_gt_eta200_h']:.0f} | {a['sgap_gt_1s_h']:.0f} | "
                  f"{ms(a['longest_sgap'])} ms |")
        P("\nRTO from TCP_INFO (what `ss -tin` prints as rto/rtt/backoff), sampled every 100 ms under loss, ms. "
          "*RTO* includes backoff; *RTO at backoff 0* is the estimate SRTT + max(4·RTTVAR, 200 ms).\n")
        P("| η | loss | side | samples | RTO p50 | p90 | max | RTO at backoff 0: p50 | p90 | max | srtt p50 | srtt p90 "
          "| max backoff | retransmissions |")
        P("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for (meas, case), rs in loss:
            for a, r in zip(allres[case], rs):
                for side in ("client", "server"):
                    i = a[side + "_info"]
                    if not i["samples"]:
                        continue
                    P(f"| {r.eta:g} s | {a['loss_pct']}% | {side} | {i['samples']} | {i['rto_p50']:g} | "
                      f"{i['rto_p90']:g} | {i['rto_max']:g} | {i['rto_nobackoff_p50']:g} | {i['rto_nobackoff_p90']:g} | "
                      f"{i['rto_nobackoff_max']:g} | {i['rtt_p50']:g} | {i['rtt_p90']:g} | {i['backoff_max']} | "
                      f"{i['total_retrans']} |")
        if any(a[side + "_ss"]["samples"] for (m, case), rs in loss for a in allres[case] for side in ("client", "server")):
            P("\nCross-check: the same RTO read by `ss -tin` in the namespaces (every 0.5 s), ms.\n")
            P("| η | loss | side | samples | RTO p50 | p90 | max |")
            P("|---|---|---|---|---|---|---|")
            for (meas, case), rs in loss:
                for a, r in zip(allres[case], rs):
                    for side in ("client", "server"):
                        i = a[side + "_ss"]
                        if i["samples"]:
                            P(f"| {r.eta:g} s | {a['loss_pct']}% | {side} | {i['samples']} | {i['rto_p50']:g} | "
                              f"{i['rto_p90']:g} | {i['rto_max']:g} |")
        P("")

    ut = [(k, v) for k, v in items if k[0] == "usertimeout"]
    if ut:
        P("### TCP_USER_TIMEOUT, partition that does not heal\n")
        P("From the first unacknowledged send (first heartbeat sent after the partition began) to ETIMEDOUT at "
          "the client, ms.\n")
        P("| η | TCP_USER_TIMEOUT | reps | errors | first unacked send → ETIMEDOUT min / mean / max | all values |")
        P("|---|---|---|---|---|---|")
        for (meas, case), rs in ut:
            a = [analyze_usertimeout(r) for r in rs]
            allres[case] = a
            errs = ", ".join(sorted(set(str(x["error"]) for x in a)))
            P(f"| {rs[0].eta:g} s | {a[0]['ut_ms']} ms | {len(a)} | {errs} | {mmm([x['to_etimedout'] for x in a])} | "
              f"{', '.join(ms(x['to_etimedout']) for x in a)} |")
        P("\nRetransmissions seen on the wire before ETIMEDOUT (ms from the original send of the head segment):\n")
        for (meas, case), rs in ut:
            for x, r in zip(allres[case], rs):
                P(f"- η = {r.eta:g} s, {x['ut_ms']} ms, {os.path.basename(r.dir)}: "
                  f"{', '.join(f'{t * 1000:.0f}' for t in x['rtx_times'])}; ETIMEDOUT at {ms(x['to_etimedout'])} "
                  f"from the first unacked send")
        P("")

    lp = [(k, v) for k, v in items if k[0] == "longpartition"]
    if lp:
        P("### Retransmission schedule during a long partition (η = 1 s)\n")
        P("Times of the client's retransmissions, from the original send of the first unacknowledged segment "
          "(packets seen on the server's veth before the nft input hook), ms; then the client's TCP_INFO rto "
          "values (ms) as the backoff grows.\n")
        for (meas, case), rs in lp:
            for r in rs:
                H = r.ev("heal")
                orig, rtx = retransmissions(r, t_to=H)
                rows = [x for x in (r.info.get("client") or []) if r.ev("partition") <= float(x["time"]) <= H]
                seen = []
                for x in rows:
                    v = (int(x["backoff"]), float(x["rto_ms"]))
                    if not seen or seen[-1] != v:
                        seen.append(v)
                P(f"- {case}/{os.path.basename(r.dir)}: {', '.join(f'{(t - orig) * 1000:.0f}' for t in rtx)}")
                P(f"  - TCP_INFO (backoff, rto ms): {', '.join(f'({b}, {v:g})' for b, v in seen)}")
                srows = [x for x in (r.ss.get("client") or []) if r.ev("partition") <= float(x["time"]) <= H]
                steps = []
                for x in srows:
                    v = (int(x["backoff"]), float(x["rto_ms"]), int(x["retrans_total"]))
                    if not steps or steps[-1][1:] != v:
                        steps.append((float(x["time"]) - orig,) + v)
                if steps:
                    P(f"  - `ss -tin` every 100 ms, first sample showing each (backoff, rto, retrans total), "
                      f"ms after the first unacked send: "
                      f"{', '.join(f'{t * 1000:.0f}: ({b}, {v:g}, {n})' for t, b, v, n in steps)}")
                allres.setdefault(case + "_schedule", []).append(
                    {"rtx_ms": [(t - orig) * 1000 for t in rtx], "backoff_rto": seen})
        P("")

    text = "\n".join(lines)
    if out_json:
        with open(out_json, "w") as f:
            json.dump(allres, f, indent=1, default=str)
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs")
    ap.add_argument("--json")
    a = ap.parse_args()
    runs = load(a.runs)
    if not runs:
        sys.exit(f"no runs under {a.runs}")
    print(report(runs, a.json))


if __name__ == "__main__":
    main()
