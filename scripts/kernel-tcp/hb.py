#!/usr/bin/env python3
"""Heartbeat endpoints and a packet logger, run inside network namespaces by measure.py.

    hb.py server  --bind ADDR --port P --out DIR
    hb.py client  --connect ADDR --port P --eta SECONDS --t0 MONO --t-end MONO --out DIR
                  [--user-timeout-ms MS]
    hb.py sniff   --iface IF --a-addr ADDR --out DIR
    hb.py ss      --side client|server --port P --every SECONDS --out DIR
                  (runs `ss -tinH` in its namespace every SECONDS until SIGTERM: ss_<side>.csv)
    hb.py nftd    (reads nft scripts, one JSON string a line, applies each at once through
                   libnftables and answers `ok T_BEFORE T_AFTER`: a fault takes < 1 ms, not the
                   ~30 ms of `ip netns exec NS nft ...`)

All times are CLOCK_MONOTONIC seconds (time.monotonic()), which is one clock for the whole
machine, so times written in different namespaces compare directly.

Workload: the client sends a 16-byte heartbeat (seq u64 big-endian, send time ns u64) at
t0 + k*eta for k = 0, 1, ... (a fixed schedule: a late send does not shift later ones) until
t_end, and reads the echoes; the server writes back every byte it reads as soon as it reads it.
Both sockets have TCP_NODELAY. Both sides sample TCP_INFO (the same struct `ss -tin` prints)
every 100 ms.

Files written in --out:
    client.csv   seq,send_time,echo_time          (echo_time empty: no echo received)
    server.csv   seq,recv_time
    tcpinfo_client.csv / tcpinfo_server.csv   see TCPINFO_COLUMNS
    packets.csv  time,dir,seq,ack,flags,len       (sniff; dir AB = from the client's side)
The client prints its own events on stdout as CSV lines `time,client,EVENT,DETAIL`.
"""
import argparse
import errno
import os
import select
import signal
import socket
import struct
import sys
import time

HB = struct.Struct(">QQ")
HB_LEN = HB.size  # 16
TCPINFO = struct.Struct("=8B24I")
TCPINFO_COLUMNS = ("time,state,ca_state,retransmits,probes,backoff,rto_ms,ato_ms,rtt_ms,rttvar_ms,"
                   "unacked,sacked,lost,retrans,snd_cwnd,total_retrans")
INFO_EVERY = 0.100


class Stop(Exception):
    pass


def _on_term(signum, frame):
    raise Stop()


def tcpinfo_row(sock, now):
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCPINFO.size)
    except OSError:
        return None
    if len(raw) < TCPINFO.size:
        return None
    v = TCPINFO.unpack(raw)
    (state, ca_state, retransmits, probes, backoff, _opt, _ws, _fl,
     rto, ato, _snd_mss, _rcv_mss, unacked, sacked, lost, retrans, _fackets,
     _lds, _las, _ldr, _lar, _pmtu, _rcv_ssth, rtt, rttvar, _snd_ssth, snd_cwnd,
     _advmss, _reord, _rcv_rtt, _rcv_space, total_retrans) = v
    return (f"{now:.6f},{state},{ca_state},{retransmits},{probes},{backoff},{rto/1000:.3f},"
            f"{ato/1000:.3f},{rtt/1000:.3f},{rttvar/1000:.3f},{unacked},{sacked},{lost},"
            f"{retrans},{snd_cwnd},{total_retrans}")


def write_lines(path, header, rows):
    with open(path, "w") as f:
        f.write(header + "\n")
        for r in rows:
            f.write(r + "\n")


# --------------------------------------------------------------------------------------- server
def run_server(a):
    signal.signal(signal.SIGTERM, _on_term)
    recv_rows, info_rows = [], []
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(4)
    print("ready", flush=True)
    conn = None
    try:
        conn, _ = ls.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setblocking(False)
        inbuf = b""
        outbuf = b""
        next_info = time.monotonic()
        p = select.poll()
        while True:
            now = time.monotonic()
            if now >= next_info:
                r = tcpinfo_row(conn, now)
                if r:
                    info_rows.append(r)
                next_info += INFO_EVERY
                if next_info < now:
                    next_info = now + INFO_EVERY
            p.register(conn, select.POLLIN | (select.POLLOUT if outbuf else 0))
            ev = p.poll(max(0.0, next_info - time.monotonic()) * 1000)
            if not ev:
                continue
            flags = ev[0][1]
            if flags & (select.POLLIN | select.POLLERR | select.POLLHUP):
                try:
                    data = conn.recv(65536)
                except BlockingIOError:
                    data = None
                except OSError as e:
                    print(f"{time.monotonic():.6f},server,error,{errno.errorcode.get(e.errno, e.errno)}",
                          flush=True)
                    break
                t = time.monotonic()
                if data == b"":
                    break
                if data:
                    inbuf += data
                    outbuf += data
                    n = len(inbuf) // HB_LEN
                    for i in range(n):
                        seq, _ = HB.unpack_from(inbuf, i * HB_LEN)
                        recv_rows.append(f"{seq},{t:.6f}")
                    inbuf = inbuf[n * HB_LEN:]
            if outbuf:
                try:
                    sent = conn.send(outbuf)
                    outbuf = outbuf[sent:]
                except BlockingIOError:
                    pass
                except OSError as e:
                    print(f"{time.monotonic():.6f},server,error,{errno.errorcode.get(e.errno, e.errno)}",
                          flush=True)
                    break
    except Stop:
        pass
    finally:
        write_lines(os.path.join(a.out, "server.csv"), "seq,recv_time", recv_rows)
        write_lines(os.path.join(a.out, "tcpinfo_server.csv"), TCPINFO_COLUMNS, info_rows)
        if conn is not None:
            conn.close()
        ls.close()


# --------------------------------------------------------------------------------------- client
def run_client(a):
    signal.signal(signal.SIGTERM, _on_term)
    sends = []      # (seq, send_time)
    echoes = {}     # seq -> echo_time
    info_rows = []

    def event(name, detail=""):
        print(f"{time.monotonic():.6f},client,{name},{detail}", flush=True)

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if a.user_timeout_ms:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, a.user_timeout_ms)
    try:
        s.connect((a.connect, a.port))
        event("connected")
        s.setblocking(False)
        p = select.poll()
        inbuf = b""
        outbuf = b""
        k = 0
        next_send = a.t0
        next_info = a.t0
        grace_end = a.t_end + a.grace
        while True:
            now = time.monotonic()
            if now >= grace_end:
                event("end")
                break
            if now >= next_send and next_send < a.t_end:
                outbuf += HB.pack(k, int(now * 1e9))
                sends.append((k, now))
                k += 1
                next_send = a.t0 + k * a.eta
            if now >= next_info:
                r = tcpinfo_row(s, now)
                if r:
                    info_rows.append(r)
                next_info += INFO_EVERY
                if next_info < now:
                    next_info = now + INFO_EVERY
            if outbuf:
                try:
                    sent = s.send(outbuf)
                    outbuf = outbuf[sent:]
                except BlockingIOError:
                    pass
                except OSError as e:
                    event("error", errno.errorcode.get(e.errno, e.errno))
                    break
            # stop early once every heartbeat is echoed after t_end
            if now >= a.t_end and len(echoes) == len(sends):
                event("end")
                break
            deadline = min(next_send if next_send < a.t_end else grace_end, next_info, grace_end)
            p.register(s, select.POLLIN | (select.POLLOUT if outbuf else 0))
            ev = p.poll(max(0.0, deadline - time.monotonic()) * 1000)
            if not ev:
                continue
            flags = ev[0][1]
            if flags & (select.POLLIN | select.POLLERR | select.POLLHUP):
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    event("error", errno.errorcode.get(e.errno, e.errno))
                    break
                t = time.monotonic()
                if data == b"":
                    event("eof")
                    break
                inbuf += data
                n = len(inbuf) // HB_LEN
                for i in range(n):
                    seq, _ = HB.unpack_from(inbuf, i * HB_LEN)
                    echoes[seq] = t
                inbuf = inbuf[n * HB_LEN:]
    except Stop:
        event("terminated")
    except OSError as e:
        event("error", errno.errorcode.get(e.errno, e.errno))
    finally:
        rows = []
        for seq, st in sends:
            et = echoes.get(seq)
            rows.append(f"{seq},{st:.6f}," + (f"{et:.6f}" if et is not None else ""))
        write_lines(os.path.join(a.out, "client.csv"), "seq,send_time,echo_time", rows)
        write_lines(os.path.join(a.out, "tcpinfo_client.csv"), TCPINFO_COLUMNS, info_rows)
        s.close()


# --------------------------------------------------------------------------------------- sniff
SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003


def run_sniff(a):
    """Logs every TCP segment on IFACE with its kernel receive timestamp. On the server's veth
    this sees the client's segments before the nft input hook, so retransmissions dropped by a
    partition are still logged."""
    signal.signal(signal.SIGTERM, _on_term)
    rows = []
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((a.iface, 0))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    a_addr = socket.inet_aton(a.a_addr)
    print("ready", flush=True)
    try:
        while True:
            data, anc, _flags, _addr = s.recvmsg(256, socket.CMSG_SPACE(16))
            mono_now = time.monotonic()
            real_now = time.time()
            t = mono_now
            for level, typ, cd in anc:
                if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(cd) >= 16:
                    sec, nsec = struct.unpack("=qq", cd[:16])
                    t = mono_now - (real_now - (sec + nsec * 1e-9))
            if len(data) < 14 + 20 or data[12:14] != b"\x08\x00":
                continue
            ip = data[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] != 6:
                continue
            tot_len = struct.unpack(">H", ip[2:4])[0]
            tcp = ip[ihl:]
            if len(tcp) < 20:
                continue
            seq, ack = struct.unpack(">II", tcp[4:12])
            doff = (tcp[12] >> 4) * 4
            fl = tcp[13]
            flags = "".join(c for c, b in (("F", 1), ("S", 2), ("R", 4), ("P", 8), ("A", 16))
                            if fl & b)
            plen = tot_len - ihl - doff
            d = "AB" if ip[12:16] == a_addr else "BA"
            rows.append(f"{t:.6f},{d},{seq},{ack},{flags},{plen}")
    except Stop:
        pass
    finally:
        write_lines(os.path.join(a.out, "packets.csv"), "time,dir,seq,ack,flags,len", rows)


# --------------------------------------------------------------------------------------- ss
def run_ss(a):
    import re
    import subprocess
    signal.signal(signal.SIGTERM, _on_term)
    rows = []
    pat = {k: re.compile(v) for k, v in (("rto", r"\brto:([\d.]+)"), ("rtt", r"\brtt:([\d.]+)/([\d.]+)"),
                                          ("backoff", r"\bbackoff:(\d+)"), ("retrans", r"\bretrans:(\d+)/(\d+)"),
                                          ("unacked", r"\bunacked:(\d+)"))}
    filt = f"( sport = :{a.port} or dport = :{a.port} )"
    nxt = time.monotonic()
    try:
        while True:
            t = time.monotonic()
            out = subprocess.run(["ss", "-tinH", "state", "established", filt], capture_output=True,
                                 text=True).stdout
            info = " ".join(out.split("\n")[1:]) if out else ""
            if "rto:" in info:
                g = {k: p.search(info) for k, p in pat.items()}
                rows.append(f"{t:.6f},{g['rto'].group(1)},"
                            f"{g['rtt'].group(1) if g['rtt'] else ''},{g['rtt'].group(2) if g['rtt'] else ''},"
                            f"{g['backoff'].group(1) if g['backoff'] else 0},"
                            f"{g['retrans'].group(1) if g['retrans'] else 0},"
                            f"{g['retrans'].group(2) if g['retrans'] else 0},"
                            f"{g['unacked'].group(1) if g['unacked'] else 0}")
            nxt += a.every
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)
            else:
                nxt = time.monotonic()
    except Stop:
        pass
    finally:
        write_lines(os.path.join(a.out, f"ss_{a.side}.csv"),
                    "time,rto_ms,rtt_ms,rttvar_ms,backoff,retrans_now,retrans_total,unacked", rows)


# --------------------------------------------------------------------------------------- nftd
def run_nftd(a):
    import ctypes
    import json
    import subprocess
    try:
        lib = ctypes.CDLL("libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_buffer_error(ctx)
        lib.nft_ctx_buffer_output(ctx)
    except OSError:
        lib = None

    def apply(script):
        if lib is not None:
            rc = lib.nft_run_cmd_from_buffer(ctx, script.encode())
            return rc, (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
        r = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
        return r.returncode, r.stderr

    print("ready", flush=True)
    for line in sys.stdin:
        script = json.loads(line)
        tb = time.monotonic()
        rc, err = apply(script)
        ta = time.monotonic()
        if rc == 0:
            print(f"ok {tb:.6f} {ta:.6f}", flush=True)
        else:
            print("err " + json.dumps(err), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("server")
    sv.add_argument("--bind", required=True)
    sv.add_argument("--port", type=int, required=True)
    sv.add_argument("--out", required=True)
    cl = sub.add_parser("client")
    cl.add_argument("--connect", required=True)
    cl.add_argument("--port", type=int, required=True)
    cl.add_argument("--eta", type=float, required=True)
    cl.add_argument("--t0", type=float, required=True)
    cl.add_argument("--t-end", type=float, required=True)
    cl.add_argument("--grace", type=float, default=3.0)
    cl.add_argument("--user-timeout-ms", type=int, default=0)
    cl.add_argument("--out", required=True)
    sn = sub.add_parser("sniff")
    sn.add_argument("--iface", required=True)
    sn.add_argument("--a-addr", required=True)
    sn.add_argument("--out", required=True)
    sub.add_parser("nftd")
    ss = sub.add_parser("ss")
    ss.add_argument("--side", required=True)
    ss.add_argument("--port", type=int, required=True)
    ss.add_argument("--every", type=float, default=0.1)
    ss.add_argument("--out", required=True)
    a = ap.parse_args()
    {"server": run_server, "client": run_client, "sniff": run_sniff, "nftd": run_nftd, "ss": run_ss}[a.cmd](a)


if __name__ == "__main__":
    main()
