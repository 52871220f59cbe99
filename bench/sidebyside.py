#!/usr/bin/env python3
"""sipcheck and SIPp side by side on 127.0.0.1: CPU per call (user and kernel time apart),
maximum call rate, media concurrency and quality under load, pacing at low load, memory per
call and per registered user agent, and how the cost per call grows with the calls.

Python 3 standard library only. It installs nothing: it needs `sipp` (Debian package
sip-tester, with its pcap files), `taskset` (util-linux) and a built `sipcheck` binary. Every
process it measures is started here, pinned to its own core (callers on one, responders on
the other), on loopback ports, with every load bounded in calls and in time, and stopped by
its PID (SIGINT, then SIGKILL). Every figure is measured in several runs (3), sipcheck and
SIPp alternated, and shown as median [min-max]. See bench/README.md.

    python3 bench/sidebyside.py --estimate         # the plan's time, without running it
    python3 bench/sidebyside.py --smoke            # every step at tiny sizes, 2 runs (CI, ~3 min)
    python3 bench/sidebyside.py                    # the full comparison, 3 runs (< 25 min)
    python3 bench/sidebyside.py --only caller --runs 3 --cores 0,1 --sipcheck BINARY
    python3 bench/sidebyside.py --only media --json out.json --markdown out.md
"""

import argparse
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SCENARIOS = os.path.join(HERE, "scenarios")
REGISTRAR_XML = os.path.join(HERE, "sipp", "registrar.xml")

CLK_TCK = os.sysconf("SC_CLK_TCK")
LOOPBACK = "127.0.0.1"

# Disjoint RTP port ranges: sipcheck run, sipcheck answer, SIPp (-mp).
RUN_RTP = "20000-29999"
ANSWER_RTP = "30000-39999"
SIPP_MP_FIRST, SIPP_MP_LAST = 40000, 59998

SECTIONS = ["caller", "responder", "maxrate", "media", "mediamax", "pacing", "memory", "growth"]


class StepError(Exception):
    """A step could not run at all (a process did not start, a report is missing, ...)."""


# --------------------------------------------------------------------------------------------
# Processes


def read_proc(pid):
    """(user s, system s, VmRSS KiB, VmHWM KiB, Cpus_allowed_list, last CPU) of a live
    process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # Fields after the parenthesised command name: state is field 3; utime, stime: 14, 15;
    # processor (the CPU it last ran on): 39.
    fields = stat[stat.rindex(")") + 2:].split()
    user, system = int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    last_cpu = int(fields[36]) if len(fields) > 36 else None
    rss = hwm = 0
    allowed = None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
        elif line.startswith("Cpus_allowed_list:"):
            allowed = line.split(":", 1)[1].strip()
    if fields[0] == "Z":  # a zombie has no memory left to read
        return None
    return user, system, rss, hwm, allowed, last_cpu


class Proc:
    """A child process, sampled by the Monitor, reaped with wait4 (for its rusage). With a
    `core` it runs under `taskset -c CORE` (taskset sets the affinity and execs the program:
    the PID is the program's, and every thread it starts inherits the affinity)."""

    def __init__(self, bench, name, argv, cwd=None, env=None, core=None):
        self.name = name
        self.core = core
        if core is not None:
            argv = ["taskset", "-c", str(core)] + argv
        self.argv = argv
        self.out_path = os.path.join(bench.logdir, name + ".out")
        self.err_path = os.path.join(bench.logdir, name + ".err")
        self.lock = threading.Lock()
        self.rc = None
        self.rusage = None
        self.peak_rss = 0  # KiB, sampled VmRSS
        self.hwm = 0  # KiB, the kernel's VmHWM at the last sample
        self.last_times = (0.0, 0.0)  # user, system seconds at the last sample
        self.allowed = None  # Cpus_allowed_list at the last sample (after taskset's exec)
        self.ran_on = set()  # the CPUs the main thread was seen on
        self.samples = []  # (seconds since start, cpu seconds, rss KiB)
        self.timed_out = False
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            try:
                self.popen = subprocess.Popen(
                    argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    start_new_session=True)  # the terminal's Ctrl-C reaches only this script
            except OSError as e:
                raise StepError(f"{name}: cannot start {argv[0]}: {e}") from e
        self.pid = self.popen.pid
        self.t0 = time.monotonic()
        self.t_end = None
        bench.monitor.add(self)
        bench.procs.append(self)
        bench.log(f"  started {name} (pid {self.pid}): {' '.join(argv)}")

    def sample(self):
        with self.lock:
            if self.rc is not None:
                return
            got = read_proc(self.pid)
            if got is not None:
                user, system, rss, hwm, allowed, last_cpu = got
                self.last_times = (user, system)
                self.peak_rss = max(self.peak_rss, rss)
                self.hwm = max(self.hwm, hwm)
                if time.monotonic() - self.t0 > 0.05:  # taskset has exec'd the program
                    self.allowed = allowed
                    if last_cpu is not None:
                        self.ran_on.add(last_cpu)
                self.samples.append((time.monotonic() - self.t0, user + system, rss))
            self._reap(os.WNOHANG)

    def _reap(self, flags):
        try:
            pid, status, ru = os.wait4(self.pid, flags)
        except ChildProcessError:
            return
        if pid == self.pid:
            self.rc = os.waitstatus_to_exitcode(status)
            self.rusage = ru
            self.t_end = time.monotonic()
            self.popen.returncode = self.rc
            # Not ru_maxrss: for a forked child it starts from the parent's RSS at fork
            # time (this script's own), so it would hide the child's real peak.

    def alive(self):
        with self.lock:
            if self.rc is None:
                self._reap(os.WNOHANG)
            return self.rc is None

    def times(self):
        """(user, system) CPU seconds so far, or in total once the process has exited."""
        with self.lock:
            if self.rc is not None:
                return self.rusage.ru_utime, self.rusage.ru_stime
            got = read_proc(self.pid)
            return (got[0], got[1]) if got else self.last_times

    def cpu(self):
        """CPU seconds (user + system) so far, or in total once the process has exited."""
        return sum(self.times())

    def user(self):
        return self.times()[0]

    def sys(self):
        """System (kernel) CPU seconds so far, or in total once the process has exited."""
        return self.times()[1]

    def rss(self):
        got = read_proc(self.pid) if self.rc is None else None
        return got[2] if got else None

    def peak(self):
        """Peak RSS in KiB: the largest VmRSS sample, or VmHWM when the kernel saw more."""
        return max(self.peak_rss, self.hwm)

    def elapsed(self):
        return (self.t_end or time.monotonic()) - self.t0

    def wait(self, timeout):
        """The exit code, or None if still running after `timeout` seconds."""
        end = time.monotonic() + timeout
        while True:
            if not self.alive():
                return self.rc
            if time.monotonic() >= end:
                return None
            time.sleep(0.02)

    def signal(self, sig):
        with self.lock:
            if self.rc is None:
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    pass

    def stop(self, grace=15.0):
        """SIGINT (SIPp ignores SIGTERM), then SIGKILL after `grace` seconds. The exit code."""
        if not self.alive():
            return self.rc
        self.signal(signal.SIGINT)
        rc = self.wait(grace)
        if rc is None:
            self.signal(signal.SIGKILL)
            rc = self.wait(10)
        return rc

    def stderr_tail(self, n=6):
        return tail_lines(self.err_path, n) + tail_lines(self.out_path, n)


class Monitor(threading.Thread):
    """Samples CPU and RSS of every live child every `interval` seconds; reaps the dead."""

    def __init__(self, interval):
        super().__init__(daemon=True)
        self.interval = interval
        self.procs = []
        self.lock = threading.Lock()
        self.stopping = False

    def add(self, proc):
        with self.lock:
            self.procs.append(proc)
        proc.sample()

    def live(self):
        with self.lock:
            return [p for p in self.procs if p.rc is None]

    def run(self):
        while not self.stopping:
            for p in self.live():
                p.sample()
            time.sleep(self.interval)


# --------------------------------------------------------------------------------------------
# Small helpers


def tail_lines(path, n):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in data.splitlines() if line.strip()][-n:]


def free_udp_port():
    """A UDP port free on 127.0.0.1 right now (the kernel picks it: bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


class MediaPorts:
    """Hands out SIPp -mp bases from 40000 up, each with `span` free ports after it."""

    def __init__(self):
        self.next = SIPP_MP_FIRST

    def take(self, span):
        for _ in range(200):
            base = self.next
            if base + span > SIPP_MP_LAST:
                base = self.next = SIPP_MP_FIRST
            self.next = base + span + 2
            probe = [base, base + 2] if span <= 4 else [base, base + 2, base + span // 2, base + span - 2]
            if all(port_free(p) for p in probe):
                return base
        raise StepError("no free RTP port block for SIPp between 40000 and 59998")


def udp_bound(port):
    """Whether some socket is bound to UDP `port` (IPv4 or IPv6)."""
    want = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    if line.split()[1].endswith(want):
                        return True
        except OSError:
            pass
    return False


def sipp_stat(path):
    """The last row of a SIPp -trace_stat CSV, counters as ints (cumulative ones end in (C))."""
    try:
        with open(path) as f:
            rows = [line.rstrip("\n").split(";") for line in f if line.strip()]
    except OSError:
        return None
    if len(rows) < 2:
        return None
    head, last = rows[0], rows[-1]
    out = {}
    for k, v in zip(head, last):
        try:
            out[k] = int(v)
        except ValueError:
            out[k] = v
    return out


def sipp_rtp_sent(proc):
    """'N Total RTP pckts sent' from SIPp's final screen, if printed."""
    found = None
    try:
        with open(proc.out_path, errors="replace") as f:
            for line in f:
                m = re.search(r"(\d+) Total RTP pckts sent", line)
                if m:
                    found = int(m.group(1))
    except OSError:
        pass
    return found


def fmt_num(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if v == 0:
        return "0"
    if math.isinf(v) or math.isnan(v):
        return str(v)
    mag = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - mag)
    return f"{v:,.{decimals}f}"


def ratio(a, b):
    if a is None or b is None or isinstance(a, str) or isinstance(b, str) or b == 0:
        return None
    return a / b


class Fig:
    """One figure measured in several runs: the median and the range (min-max)."""

    def __init__(self, values):
        self.values = list(values)
        v = sorted(self.values)
        self.median = statistics.median(v)
        if all(isinstance(x, int) for x in v) and self.median == int(self.median):
            self.median = int(self.median)
        self.lo, self.hi = v[0], v[-1]

    def as_json(self):
        return dict(median=self.median, min=self.lo, max=self.hi, runs=self.values)


def fig(values):
    """A Fig of the numbers among `values` (None and text left out), or None if none."""
    nums = [v for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)]
    return Fig(nums) if nums else None


def val(v):
    return v.median if isinstance(v, Fig) else v


def fmt_cell(v):
    if isinstance(v, Fig):
        if len(v.values) > 1:
            return f"{fmt_num(v.median)} [{fmt_num(v.lo)}–{fmt_num(v.hi)}]"
        return fmt_num(v.median)
    return fmt_num(v)


def per_call(r, key, scale, calls="ok"):
    """r[key] seconds over r[calls] calls, times `scale` (1e6: us; 1e3: ms)."""
    n = r.get(calls)
    if not n or r.get(key) is None:
        return None
    return r[key] / n * scale


def passed_none(searches):
    """For a row of search results: ' (N of M TOOL searches passed none: counted as 0)' for
    each (TOOL, searches) of `searches` with a search whose `max_passed` is None, joined; ''
    when every search passed something."""
    said = []
    for name, rs in searches:
        n = sum(1 for r in rs if r["max_passed"] is None)
        if n:
            said.append(f"{n} of {len(rs)} {name} searches")
    return f" ({', '.join(said)} passed none: counted as 0)" if said else ""


# --------------------------------------------------------------------------------------------
# Sizes (the full sizes are chosen so that a full run, 3 runs of everything, takes < 25 min;
# `estimate` below prints the plan's upper bound at start)


def sizes(smoke):
    if smoke:
        return dict(
            runs=2,
            rate=50, rate_secs=2,
            search_start=50, search_factor=2, search_steps=2, search_bisect=0,
            refine_factor=1.25, refine_steps=1, refine_bisect=0, search_gran=10,
            search_step_secs=2, search_cap=30, search_max_rate=200,
            media_calls=20, media_hold=3, growth=[10, 20],
            msearch_start=10, msearch_steps=2, msearch_bisect=0, msearch_refine_steps=1,
            msearch_refine_bisect=0, msearch_gran=5, msearch_cap=60, msearch_max=40,
            pacing_levels=[5, 10], pacing_hold=2,
            reg_uas=200, idle_secs=2,
            budget_min=8,
        )
    return dict(
        runs=3,
        rate=4000, rate_secs=8,
        search_start=2000, search_factor=2, search_steps=6, search_bisect=2,
        refine_factor=1.25, refine_steps=3, refine_bisect=1, search_gran=100,
        search_step_secs=4, search_cap=100, search_max_rate=64000,
        media_calls=2000, media_hold=8, growth=[250, 500, 1000, 2000],
        msearch_start=500, msearch_steps=4, msearch_bisect=2, msearch_refine_steps=2,
        msearch_refine_bisect=0, msearch_gran=50, msearch_cap=150, msearch_max=4800,
        pacing_levels=[20, 100], pacing_hold=4,
        reg_uas=10000, idle_secs=5,
        budget_min=25,
    )


def media_ramp(s):
    """Seconds over which a media run starts its calls (all of them are up at once)."""
    return min(4.0, s["media_hold"] / 2)


def estimate(s, sections, runs):
    """An upper bound of a full run's seconds, from the sizes (each step's planned load plus
    its start and stop), counting a run shared by two sections once."""
    planned = {}
    hold, ramp = s["media_hold"], media_ramp(s)

    def sc_media(n, h=hold):
        return min(ramp, n / max(1, math.ceil(n / ramp))) + h + 4

    sp_media = ramp + 9 + 3  # SIPp's uac_pcap calls last ~9 s whatever the hold
    sig = s["rate_secs"] + 3
    for k in range(runs):
        if "caller" in sections or "responder" in sections:
            planned[("sig-sp", k)] = sig
        if "caller" in sections:
            planned[("sig-sc", k)] = sig
        if "responder" in sections:
            planned[("sig-sa", k)] = sig
        if "maxrate" in sections:
            steps = (s["search_steps"] + s["search_bisect"] if k == 0
                     else s["refine_steps"] + s["refine_bisect"])
            planned[("maxrate", k)] = min(2 * s["search_cap"],
                                          2 * steps * (s["search_step_secs"] + 4))
        if "media" in sections or "memory" in sections:
            n = s["media_calls"]
            planned[("m-sc", n, k)] = sc_media(n)
            planned[("m-sp", n, k)] = sp_media
        if "media" in sections:
            planned[("m-ae", s["media_calls"], k)] = sc_media(s["media_calls"])
        if "mediamax" in sections:
            per = sc_media(s["msearch_max"]) + sp_media
            if k == 0:  # doubling steps: media runs (n, 0), as the growth section's
                v = s["msearch_start"]
                for _ in range(s["msearch_steps"]):
                    if v > s["msearch_max"]:
                        break
                    planned[("m-sc", v, 0)] = sc_media(v)
                    planned[("m-sp", v, 0)] = sp_media
                    v *= 2
                planned[("mediamax", k)] = s["msearch_bisect"] * per
            else:
                planned[("mediamax", k)] = (s["msearch_refine_steps"]
                                            + s["msearch_refine_bisect"]) * per
        if "pacing" in sections:
            for n in s["pacing_levels"]:
                planned[("pacing", n, k)] = sc_media(n, s["pacing_hold"])
        if "memory" in sections:
            planned[("baseline", k)] = sc_media(1, 1) + sp_media
            planned[("registered", k)] = 2 * (s["idle_secs"] + 8) + s["reg_uas"] / 2000
        if "growth" in sections:
            for n in s["growth"]:
                planned[("m-sc", n, k)] = sc_media(n)
                planned[("m-sp", n, k)] = sp_media
    return sum(planned.values()) * 1.1  # sampling, settling, process starts


# --------------------------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.smoke = args.smoke
        self.s = sizes(args.smoke)
        if args.media_calls:
            self.s["media_calls"] = args.media_calls
            self.s["growth"] = sorted({n for n in self.s["growth"] if n < args.media_calls}
                                      | {args.media_calls})
        if args.rate:
            self.s["rate"] = args.rate
        if args.registered_uas:
            self.s["reg_uas"] = max(2, args.registered_uas)
        if args.runs:
            self.s["runs"] = args.runs
        self.runs = self.s["runs"]
        self.only = args.only
        self.caller_core, self.responder_core = args.cores
        self.sipcheck = args.sipcheck
        self.sipp = args.sipp
        self.pcap_dir = args.pcap_dir
        self.logdir = tempfile.mkdtemp(prefix="sipcheck-bench-", dir=args.workdir)
        self.monitor = Monitor(args.sample_interval)
        self.monitor.start()
        self.procs = []
        self.mp = MediaPorts()
        self.rows = []
        self.errors = []  # steps that could not run: always a non-zero exit
        self.notes = []  # things worth knowing that do not stop the benchmark
        self.details = {}
        self.cache = {}
        self.counter = 0
        self.started = time.monotonic()
        self.deadline = self.started + self.s["budget_min"] * 60

    def selected(self, name):
        return not self.only or name in self.only

    # ---- output

    def log(self, msg):
        if self.args.verbose or not msg.startswith("  "):
            print(msg, file=sys.stderr, flush=True)

    def note(self, msg):
        self.notes.append(msg)
        print(f"note: {msg}", file=sys.stderr, flush=True)

    def functional(self, ok, msg):
        """A check that the step worked at all: in smoke mode a failure fails the run."""
        if ok:
            return True
        if self.smoke:
            self.errors.append(msg)
            print(f"error: {msg}", file=sys.stderr, flush=True)
        else:
            self.note(msg)
        return False

    def row(self, section, what, sipcheck, sipp, target=None, on="ratio", unit=""):
        """One table row. sipcheck and sipp: a number, a text, None, or a list with one value
        per run (shown as its median and range). target: (op, bound) judged on the median of
        `on`: "ratio" (the sipcheck median over the SIPp median) or "sipcheck"."""
        if isinstance(sipcheck, list):
            sipcheck = fig(sipcheck)
        if isinstance(sipp, list):
            sipp = fig(sipp)
        r = ratio(val(sipcheck), val(sipp))
        met = None
        if target and not self.smoke:
            op, bound = target
            v = r if on == "ratio" else val(sipcheck)
            if v is not None and not isinstance(v, str):
                met = {"<=": v <= bound, "<": v < bound, ">=": v >= bound,
                       "==": v == bound}[op]
        tgt = "-"
        if target:
            op, bound = target
            tgt = f"{'ratio' if on == 'ratio' else ''} {op} {fmt_num(bound)}".strip()
            if on != "ratio" and unit:
                tgt += f" {unit}"
        self.rows.append(dict(section=section, what=what, sipcheck=sipcheck, sipp=sipp,
                              ratio=r, target=tgt, met=met))

    def tag(self, name):
        self.counter += 1
        return f"{self.counter:03d}-{name}"

    def time_left(self):
        return self.deadline - time.monotonic()

    def budget(self, need, what):
        if self.time_left() < need:
            raise StepError(f"{what}: skipped, the time budget of {self.s['budget_min']} min "
                            f"is used up (use --budget-min to allow more)")

    # ---- processes (callers on one core, responders on the other)

    def sipcheck_env(self, extra):
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start_sipp_uas(self, name, echo=False, scenario=None):
        port = free_udp_port()
        mp = self.mp.take(4)
        tag = self.tag(name)
        csv = os.path.join(self.logdir, tag + ".csv")
        cwd = os.path.join(self.logdir, tag + ".d")
        os.makedirs(cwd)
        argv = [self.sipp] + (["-sf", scenario] if scenario else ["-sn", "uas"]) + [
            "-i", LOOPBACK, "-mi", LOOPBACK, "-p", str(port), "-mp", str(mp),
            "-buff_size", "4194304", "-nostdin",
            "-trace_stat", "-stf", csv, "-fd", "1"]
        if echo:
            argv.append("-rtp_echo")
        p = Proc(self, tag, argv, cwd=cwd, core=self.responder_core)
        p.role = "responder"
        self.wait_bound(p, port)
        p.port, p.csv = port, csv
        return p

    def start_answer(self, name, media):
        port = free_udp_port()
        tag = self.tag(name)
        argv = [self.sipcheck, "answer", "--listen", f"{LOOPBACK}:{port}", "--json",
                "--max-calls", "1000000", "--rtp-ports", ANSWER_RTP]
        if media:
            argv += ["--play-tone", "1000", "--expect-tone", "440", "--codec", "pcmu"]
        else:
            # Like SIPp's uas: no RTP (answers a=inactive, so the caller sends none either)
            # and no line per call, only failed calls and the totals.
            argv += ["--no-rtp", "--quiet"]
        p = Proc(self, tag, argv, env=self.sipcheck_env({}), core=self.responder_core)
        p.role = "responder"
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if not p.alive():
                raise StepError(f"{tag}: sipcheck answer exited with {p.rc}: "
                                + " | ".join(p.stderr_tail()))
            if any('"listening"' in line for line in tail_lines(p.out_path, 3)):
                break
            time.sleep(0.02)
        else:
            p.stop()
            raise StepError(f"{tag}: sipcheck answer did not report listening within 10 s")
        p.port = port
        return p

    def wait_bound(self, p, port, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not p.alive():
                raise StepError(f"{p.name}: exited with {p.rc} at start: "
                                + " | ".join(p.stderr_tail()))
            if udp_bound(port):
                time.sleep(0.1)
                return
            time.sleep(0.02)
        p.stop()
        raise StepError(f"{p.name}: UDP port {port} not bound within {timeout} s")

    def start_sipp_uac(self, name, target_port, rate, calls, pcap=False, limit=None,
                       deadline=60):
        tag = self.tag(name)
        csv = os.path.join(self.logdir, tag + ".csv")
        cwd = os.path.join(self.logdir, tag + ".d")
        os.makedirs(os.path.join(cwd, "pcap"))
        if pcap:
            for f in ("g711a.pcap", "dtmf_2833_1.pcap"):
                os.symlink(os.path.join(self.pcap_dir, f), os.path.join(cwd, "pcap", f))
        mp = self.mp.take(4 + 4 * (calls if pcap else 1))
        argv = [self.sipp, "-sn", "uac_pcap" if pcap else "uac", f"{LOOPBACK}:{target_port}",
                "-i", LOOPBACK, "-mi", LOOPBACK, "-p", str(free_udp_port()), "-mp", str(mp),
                "-r", str(rate), "-rp", "1000", "-m", str(calls),
                "-l", str(limit or calls), "-buff_size", "4194304", "-nostdin",
                "-timeout", f"{int(deadline)}s",
                "-trace_stat", "-stf", csv, "-fd", "1"]
        if not pcap:
            argv += ["-d", "0"]
        p = Proc(self, tag, argv, cwd=cwd, core=self.caller_core)
        p.role = "caller"
        p.csv = csv
        return p

    def start_sipcheck_run(self, name, scenario, env):
        tag = self.tag(name)
        report = os.path.join(self.logdir, tag + ".json")
        argv = [self.sipcheck, "run", os.path.join(SCENARIOS, scenario), "--json", report]
        p = Proc(self, tag, argv, env=self.sipcheck_env(env), core=self.caller_core)
        p.role = "caller"
        p.report = report
        return p

    def finish(self, p, timeout, grace=30.0):
        """Wait for a process that ends by itself; stop it if it overruns `timeout`."""
        rc = p.wait(timeout)
        if rc is None:
            p.timed_out = True
            self.log(f"{p.name}: still running after {timeout:.0f} s, stopping it")
            rc = p.stop(grace)
        return rc

    def run_summary(self, p):
        """The figures of a `sipcheck run` from its JSON report. Without a report (the run was
        killed) the last progress line gives the call counts, and `report` is False."""
        doc = None
        try:
            with open(p.report) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            msg = (f"{p.name}: no JSON report ({e.__class__.__name__}); exit code {p.rc}: "
                   + " | ".join(p.stderr_tail(3)))
            if p.timed_out:
                self.note(msg)
            else:
                raise StepError(msg) from e
        if doc is None:
            out = dict(report=False, started=None, ok=0, failed=None, not_started=None,
                       failures={}, audio_checked=None, audio_verified=None,
                       late_starts=None, max_start_lag_ms=None, frames_skipped=None)
            for line in reversed(tail_lines(p.err_path, 40)):
                m = re.search(r"started (\d+) active (\d+) passed (\d+) failed (\d+)", line)
                if m:
                    started, active, passed, failed = map(int, m.groups())
                    # calls still up when it was killed count as failed
                    out.update(started=started, ok=passed, failed=failed + active)
                    break
            return out
        if doc.get("schema") != "sipcheck.run/1":
            raise StepError(f"{p.name}: unexpected report schema {doc.get('schema')!r}")
        c, g, m = doc["calls"], doc["generator"], doc["metrics"]
        lat = m["pacing.lateness"]
        return dict(
            report=True, verdict=doc["verdict"], started=c["started"], ok=c["passed"],
            failed=c["failed"], not_started=c["not_started"], failures=doc["failures"],
            audio_checked=doc["audio"]["checked"], audio_verified=doc["audio"]["verified"],
            late_starts=g["late_starts"], max_start_lag_ms=g["max_start_lag_ms"],
            frames_skipped=g["frames_skipped"],
            lateness_p50_ms=lat["p50_ms"], lateness_p99_ms=lat["p99_ms"],
            lateness_p999_ms=lat["p999_ms"], lateness_max_ms=lat["max_ms"],
            invite_to_200_p50_ms=m["invite_to_200"]["p50_ms"],
            invite_to_200_p99_ms=m["invite_to_200"]["p99_ms"],
            call_duration_p50_ms=m["call_duration"]["p50_ms"],
            call_duration_max_ms=m["call_duration"]["max_ms"],
            rtp_loss_ratio=doc["rtp"]["loss_ratio"], rtp_packets_sent=doc["rtp"]["packets_sent"],
            rtp_packets_received=doc["rtp"]["packets_received"])

    def answer_results(self, p, keep_calls):
        """What `sipcheck answer --json` printed: the totals line (printed on SIGINT; None if
        it was killed first), call lines counted, and, if asked, the call lines themselves."""
        totals, calls, passed, failed = None, [], 0, 0
        try:
            with open(p.out_path, errors="replace") as f:
                for line in f:
                    if not line.startswith("{"):
                        continue
                    if '"kind":"totals"' in line:
                        totals = json.loads(line)
                    elif '"kind":"call"' in line:
                        if '"verdict":"pass"' in line:
                            passed += 1
                        else:
                            failed += 1
                        if keep_calls:
                            try:
                                calls.append(json.loads(line))
                            except ValueError:
                                pass  # the last line of a killed process may be cut short
        except OSError:
            pass
        if totals is None:
            self.note(f"{p.name}: sipcheck answer printed no totals (exit {p.rc}); its call "
                      f"lines say {passed} passed, {failed} failed")
        if not self.args.keep and not keep_calls:
            os.truncate(p.out_path, 0)  # one line per call: large at high rates
        return dict(totals=totals, call_lines_passed=passed, call_lines_failed=failed), calls

    def settle(self):
        time.sleep(0.5)

    # ---- runs (memoized: several sections share them; a run that could not run is
    # remembered too, so that it is not tried again)

    def memo(self, key, fn):
        if key not in self.cache:
            try:
                self.cache[key] = fn()
            except StepError as e:
                self.cache[key] = e
            self.details[key] = self.cache[key]
        if isinstance(self.cache[key], StepError):
            raise StepError(f"{self.cache[key]} (see the first attempt)")
        return self.cache[key]

    def sipp_result(self, uac, rc, step):
        st = sipp_stat(uac.csv)
        if st is None:
            msg = f"{uac.name}: no SIPp statistics (exit {rc}): " + " | ".join(uac.stderr_tail())
            if not step:
                raise StepError(msg)
            self.note(msg)
            st = {}
        return dict(ok=st.get("SuccessfulCall(C)", 0), failed=st.get("FailedCall(C)", 0),
                    retransmissions=st.get("Retransmissions(C)"))

    def sig_sipp_to_sipp(self, rate, secs, k, step=False):
        """SIPp uac -> SIPp uas, 0-length calls. `k`: the run (memoized per run)."""
        def go():
            calls = int(rate * secs)
            uas = self.start_sipp_uas("sipp-uas")
            u0, s0 = uas.times()
            limit = secs + 8 if step else 2 * secs + 15
            uac = self.start_sipp_uac("sipp-uac", uas.port, rate, calls, deadline=limit + 5)
            rc = self.finish(uac, limit, grace=5 if step else 15)
            self.settle()
            u1, s1 = uas.times()
            uas.stop()
            out = dict(calls=calls, rc=rc, elapsed_s=uac.elapsed(), timed_out=uac.timed_out,
                       caller_user_s=uac.user(), caller_sys_s=uac.sys(),
                       caller_peak_kib=uac.peak(), responder_user_s=u1 - u0,
                       responder_sys_s=s1 - s0, responder_peak_kib=uas.peak())
            out.update(self.sipp_result(uac, rc, step))
            return out
        return go() if step else self.memo(f"sipp-uac->sipp-uas@{rate}x{secs}#{k}", go)

    def sig_sipcheck_to(self, responder, rate, secs, k, step=False):
        """sipcheck run -> SIPp uas or sipcheck answer, 0-length calls."""
        def go():
            calls = int(rate * secs)
            if responder == "sipp":
                resp = self.start_sipp_uas("sipp-uas")
            else:
                resp = self.start_answer("answer", media=False)
            u0, s0 = resp.times()
            run = self.start_sipcheck_run(
                "sipcheck-run", "signaling-caller.yaml",
                dict(BENCH_TARGET=f"{LOOPBACK}:{resp.port}", BENCH_RATE=rate,
                     BENCH_CALLS=calls, BENCH_RTP_PORTS=RUN_RTP))
            rc = self.finish(run, secs + 8 if step else 2 * secs + 15, grace=5 if step else 30)
            self.settle()
            u1, s1 = resp.times()
            resp.stop(5 if step else 30)
            out = dict(calls=calls, rc=rc, elapsed_s=run.elapsed(), timed_out=run.timed_out,
                       caller_user_s=run.user(), caller_sys_s=run.sys(),
                       caller_peak_kib=run.peak(), responder_user_s=u1 - u0,
                       responder_sys_s=s1 - s0, responder_peak_kib=resp.peak())
            if responder == "answer":
                out["responder"], _ = self.answer_results(resp, keep_calls=False)
            out.update(self.run_summary(run))
            return out
        key = f"sipcheck-run->{responder}@{rate}x{secs}#{k}"
        return go() if step else self.memo(key, go)

    def sig_sipp_to_answer(self, rate, secs, k):
        """SIPp uac -> sipcheck answer, 0-length calls."""
        def go():
            calls = int(rate * secs)
            ans = self.start_answer("answer", media=False)
            u0, s0 = ans.times()
            limit = 2 * secs + 15
            uac = self.start_sipp_uac("sipp-uac", ans.port, rate, calls, deadline=limit + 5)
            rc = self.finish(uac, limit, grace=15)
            self.settle()
            u1, s1 = ans.times()
            ans.stop(30)
            out = dict(calls=calls, rc=rc, elapsed_s=uac.elapsed(), timed_out=uac.timed_out,
                       caller_user_s=uac.user(), caller_sys_s=uac.sys(),
                       responder_user_s=u1 - u0, responder_sys_s=s1 - s0,
                       responder_peak_kib=ans.peak())
            out["responder"], _ = self.answer_results(ans, keep_calls=False)
            out.update(self.sipp_result(uac, rc, False))
            return out
        return self.memo(f"sipp-uac->answer@{rate}x{secs}#{k}", go)

    def media_rate(self, n):
        return max(1, math.ceil(n / media_ramp(self.s)))

    def media_sipcheck(self, responder, n, k, hold=None):
        """sipcheck run -> sipcheck answer (tones both ways) or SIPp uas -rtp_echo."""
        hold = hold or self.s["media_hold"]

        def go():
            rate = self.media_rate(n)
            if responder == "answer":
                resp = self.start_answer("answer-media", media=True)
                expect = 1000
            else:
                resp = self.start_sipp_uas("sipp-uas-echo", echo=True)
                expect = 440
            time.sleep(0.3)
            idle_rss = resp.rss()
            u0, s0 = resp.times()
            run = self.start_sipcheck_run(
                "sipcheck-run-media", "media-caller.yaml",
                dict(BENCH_TARGET=f"{LOOPBACK}:{resp.port}", BENCH_RATE=rate, BENCH_CALLS=n,
                     BENCH_PLAY_HZ=440, BENCH_EXPECT_HZ=expect, BENCH_HOLD=f"{hold}s",
                     BENCH_RTP_PORTS=RUN_RTP))
            rc = self.finish(run, n / rate + hold + 20)
            self.settle()
            u1, s1 = resp.times()
            resp_peak = resp.peak()
            resp.stop(30)
            out = dict(calls=n, rate=rate, hold_s=hold, rc=rc, elapsed_s=run.elapsed(),
                       timed_out=run.timed_out, caller_user_s=run.user(),
                       caller_sys_s=run.sys(), caller_peak_kib=run.peak(),
                       responder_user_s=u1 - u0, responder_sys_s=s1 - s0,
                       responder_idle_kib=idle_rss, responder_peak_kib=resp_peak)
            if responder == "answer":
                out["responder"], calls = self.answer_results(resp, keep_calls=True)
                media = [c["media"] for c in calls if c.get("media")]
                lat = [m["pacing_lateness_ms"] for m in media if m.get("pacing_lateness_ms")]
                out["responder_worst_call_pacing_p99_ms"] = (max(x["p99"] for x in lat)
                                                             if lat else None)
                out["responder_worst_call_pacing_p999_ms"] = (max(x["p999"] for x in lat)
                                                              if lat else None)
                out["responder_frames_skipped"] = (sum(m.get("frames_skipped", 0) for m in media)
                                                   if media else None)
            else:
                out["responder_rtp_sent"] = sipp_rtp_sent(resp)
            out.update(self.run_summary(run))
            return out
        return self.memo(f"media:sipcheck-run->{responder}x{n}x{hold}s#{k}", go)

    def media_sipp(self, n, k):
        """SIPp uac_pcap -> SIPp uas -rtp_echo."""
        def go():
            rate = self.media_rate(n)
            uas = self.start_sipp_uas("sipp-uas-echo", echo=True)
            time.sleep(0.3)
            idle_rss = uas.rss()
            u0, s0 = uas.times()
            limit = n / rate + 9 + 20
            uac = self.start_sipp_uac("sipp-uac-pcap", uas.port, rate, n, pcap=True,
                                      deadline=limit + 5)
            rc = self.finish(uac, limit, grace=15)
            self.settle()
            u1, s1 = uas.times()
            uas_peak = uas.peak()
            uas.stop()
            out = dict(calls=n, rate=rate, rc=rc, elapsed_s=uac.elapsed(),
                       timed_out=uac.timed_out, caller_user_s=uac.user(),
                       caller_sys_s=uac.sys(), caller_peak_kib=uac.peak(),
                       responder_user_s=u1 - u0, responder_sys_s=s1 - s0,
                       responder_idle_kib=idle_rss, responder_peak_kib=uas_peak,
                       caller_rtp_sent=sipp_rtp_sent(uac), responder_rtp_sent=sipp_rtp_sent(uas))
            out.update(self.sipp_result(uac, rc, False))
            return out
        return self.memo(f"media:sipp-uac_pcap->sipp-uas-echox{n}#{k}", go)

    def media_sipcheck_passed(self, r, n):
        """Every call verified its tone, the caller's pacing lateness p99 < 1 ms, no frame
        skipped by either side. With --smoke (timing not judged) only the first."""
        verified = r["ok"] == n and r.get("audio_verified") == n and not r.get("timed_out")
        if self.smoke:
            return verified
        return (verified and r.get("lateness_p99_ms") is not None
                and r["lateness_p99_ms"] < 1.0
                and r.get("frames_skipped") == 0 and r.get("responder_frames_skipped") == 0)

    def media_sipp_passed(self, r, n):
        return r["ok"] == n and r["failed"] == 0 and not r.get("timed_out")

    def caller_baselines(self, k):
        """Peak RSS of each caller process with a single media call: its idle footprint."""
        def go():
            sc = self.media_sipcheck("answer", 1, k, hold=1)
            self.functional(sc["ok"] == 1, f"baseline: the single sipcheck media call did not "
                            f"pass (exit {sc['rc']}, failures {sc['failures']})")
            sp = self.media_sipp(1, k)
            self.functional(sp["ok"] == 1, f"baseline: the single SIPp uac_pcap call did not "
                            f"pass (exit {sp['rc']})")
            return dict(sipcheck_run_kib=sc["caller_peak_kib"],
                        sipp_uac_pcap_kib=sp["caller_peak_kib"])
        return self.memo(f"baselines#{k}", go)

    # ---- sections (each run k: sipcheck first, then SIPp)

    def signaling_runs(self, rate, secs):
        """Runs k = 0..runs-1 of the caller and responder sections, alternated: sipcheck run
        -> SIPp uas, SIPp uac -> SIPp uas (both sections use it), SIPp uac -> answer."""
        out = []
        for k in range(self.runs):
            self.budget(3 * (secs + 5), f"signaling run {k + 1}")
            sc = self.sig_sipcheck_to("sipp", rate, secs, k) if self.selected("caller") else None
            sp = self.sig_sipp_to_sipp(rate, secs, k)
            sa = self.sig_sipp_to_answer(rate, secs, k) if self.selected("responder") else None
            out.append((sc, sp, sa))
        return out

    def section_caller(self):
        rate, secs = self.s["rate"], self.s["rate_secs"]
        self.log(f"[caller] caller CPU per call at {rate} calls/s for {secs} s, "
                 f"{self.runs} runs")
        runs = self.signaling_runs(rate, secs)
        scs, sps = [r[0] for r in runs], [r[1] for r in runs]
        for k, (sc, sp, _) in enumerate(runs):
            for name, r in (("sipcheck run -> SIPp uas", sc), ("SIPp uac -> SIPp uas", sp)):
                self.functional(r["ok"] == r["calls"] and r["failed"] == 0,
                                f"caller run {k + 1}: {name} at {rate}/s: {r['ok']} of "
                                f"{r['calls']} calls passed, {r['failed']} failed")
                if not self.sustained(r, secs):
                    self.note(f"caller run {k + 1}: {name} did not keep up with {rate}/s: "
                              f"{r['ok']} of {r['calls']} calls passed in "
                              f"{r['elapsed_s']:.1f} s for {secs} s of load; its CPU per "
                              f"call is still over the calls it completed")
        us = lambda rs, key: [per_call(r, key, 1e6) for r in rs]  # noqa: E731
        total = lambda rs: [per_call(dict(r, t=r["caller_user_s"] + r["caller_sys_s"]),  # noqa: E731
                                     "t", 1e6) for r in rs]
        c = "caller"
        self.row(c, f"caller USER CPU per 0-length call, {rate}/s x {secs} s (us) | SIPp: uac",
                 us(scs, "caller_user_s"), us(sps, "caller_user_s"), ("<=", 0.5))
        self.row(c, "  kernel (system) CPU per call beside it (us): the floor",
                 us(scs, "caller_sys_s"), us(sps, "caller_sys_s"))
        self.row(c, "caller TOTAL CPU per call, user + kernel (us)", total(scs), total(sps),
                 ("<=", 0.9))
        self.row(c, f"  calls passed (of {scs[0]['calls']})", [r["ok"] for r in scs],
                 [r["ok"] for r in sps])
        self.row(c, f"  caller wall time (s), load planned for {secs} s",
                 [r["elapsed_s"] for r in scs], [r["elapsed_s"] for r in sps])
        self.row(c, "  late call starts (> 10 ms behind schedule)",
                 [r.get("late_starts") for r in scs], None)
        self.row(c, "  INVITE to 200 p99 from the scheduled start (ms)",
                 [r.get("invite_to_200_p99_ms") for r in scs], None)

    def section_responder(self):
        rate, secs = self.s["rate"], self.s["rate_secs"]
        self.log(f"[responder] responder CPU per call, SIPp uac at {rate} calls/s for {secs} "
                 f"s, {self.runs} runs")
        runs = self.signaling_runs(rate, secs)
        sas, sps = [r[2] for r in runs], [r[1] for r in runs]
        for k, (_, sp, sa) in enumerate(runs):
            for name, r in (("SIPp uac -> sipcheck answer", sa), ("SIPp uac -> SIPp uas", sp)):
                self.functional(r["ok"] == r["calls"] and r["failed"] == 0,
                                f"responder run {k + 1}: {name} at {rate}/s: {r['ok']} of "
                                f"{r['calls']} calls passed, {r['failed']} failed")
        us = lambda rs, key: [per_call(r, key, 1e6) for r in rs]  # noqa: E731
        total = lambda rs: [per_call(dict(r, t=r["responder_user_s"] + r["responder_sys_s"]),  # noqa: E731
                                     "t", 1e6) for r in rs]
        c = "responder"
        self.row(c, f"responder USER CPU per call, SIPp uac {rate}/s x {secs} s (us): "
                 "answer --no-rtp | SIPp: uas", us(sas, "responder_user_s"),
                 us(sps, "responder_user_s"), ("<=", 0.5))
        self.row(c, "  kernel (system) CPU per call beside it (us): the floor",
                 us(sas, "responder_sys_s"), us(sps, "responder_sys_s"))
        self.row(c, "responder TOTAL CPU per call, user + kernel (us)", total(sas), total(sps))
        self.row(c, f"  calls passed at the caller (of {sas[0]['calls']})",
                 [r["ok"] for r in sas], [r["ok"] for r in sps])

    def sustained(self, r, secs):
        grace = 1.0 + 0.1 * secs
        return (r["ok"] == r["calls"] and r["failed"] == 0 and not r.get("timed_out")
                and r.get("not_started", 0) == 0 and r["elapsed_s"] <= secs + grace)

    def search(self, label, attempt_fn, start, factor, steps, bisect, cap_s, step_s, top,
               gran):
        """The largest value `attempt_fn(value) -> (passed, facts)` passes: geometric steps
        by `factor` from `start` (up while passing, down while not), then `bisect` steps
        between the best passed and the first failed; at most `steps + bisect` attempts and
        `cap_s` seconds (an attempt is not started unless `step_s` more fit)."""
        t0 = time.monotonic()
        tried = []
        best = worst = None

        def rnd(x):
            return max(gran, int(round(x / gran)) * gran)

        def attempt(v):
            if (time.monotonic() - t0 + step_s > cap_s or len(tried) >= steps + bisect):
                return None
            self.budget(step_s, label)
            ok, facts = attempt_fn(v)
            tried.append(dict(value=v, passed=ok, **facts))
            self.log(f"  {label} {v}: {'passed' if ok else 'NOT passed'} {facts}")
            return ok

        v = rnd(start)
        for _ in range(steps):
            if not gran <= v <= top:
                break
            ok = attempt(v)
            if ok is None:
                break
            if ok:
                best = v
                if worst is not None:
                    break
                nxt = rnd(v * factor)
                v = top if v < top < nxt else nxt
            else:
                worst = v
                if best is not None:
                    break
                v = rnd(v / factor)
        for _ in range(bisect):
            if best is None or worst is None or worst - best <= max(gran, best // 20):
                break
            mid = rnd((best + worst) / 2)
            if not best < mid < worst:
                break
            ok = attempt(mid)
            if ok is None:
                break
            if ok:
                best = mid
            else:
                worst = mid
        return dict(max_passed=best, first_failed=worst, steps=tried, capped=worst is None)

    def searches(self, label_sc, label_sp, fn_sc, fn_sp, first, refine):
        """`runs` searches per tool, alternated: the first from `first`'s start with its
        steps; each later one refined around the same tool's best so far."""
        out = dict(sipcheck=[], sipp=[])
        for k in range(self.runs):
            for tool, label, fn in (("sipcheck", label_sc, fn_sc), ("sipp", label_sp, fn_sp)):
                prev = out[tool]
                if k == 0:
                    params = first
                else:
                    bests = [r["max_passed"] for r in prev if r["max_passed"]]
                    fails = [r["first_failed"] for r in prev if r["first_failed"]]
                    start = (statistics.median(bests) if bests
                             else min(fails) / first["factor"] if fails else first["start"])
                    params = dict(refine, start=start)
                out[tool].append(self.search(f"{label} (run {k + 1})",
                                             lambda v, fn=fn, k=k: fn(v, k), **params))
        return out

    def section_maxrate(self):
        s = self.s
        secs = s["search_step_secs"]
        self.log(f"[maxrate] maximum sustained rate with 0 failed calls, {self.runs} searches "
                 f"per tool")

        def step_sp(rate, _k):
            r = self.sig_sipp_to_sipp(rate, secs, None, step=True)
            return self.sustained(r, secs), dict(ok=r["ok"], failed=r["failed"],
                                                 elapsed_s=round(r["elapsed_s"], 2))

        def step_sc(rate, _k):
            r = self.sig_sipcheck_to("answer", rate, secs, None, step=True)
            return self.sustained(r, secs), dict(ok=r["ok"], failed=r["failed"],
                                                 elapsed_s=round(r["elapsed_s"], 2),
                                                 late_starts=r.get("late_starts"))
        common = dict(cap_s=s["search_cap"], step_s=secs + 12, top=s["search_max_rate"],
                      gran=s["search_gran"])
        res = self.searches(
            "sipcheck run -> answer", "SIPp uac -> uas", step_sc, step_sp,
            dict(common, start=s["search_start"], factor=s["search_factor"],
                 steps=s["search_steps"], bisect=s["search_bisect"]),
            dict(common, factor=s["refine_factor"], steps=s["refine_steps"],
                 bisect=s["refine_bisect"]))
        self.details["maxrate"] = res
        for name, rs in (("SIPp", res["sipp"]), ("sipcheck", res["sipcheck"])):
            for k, r in enumerate(rs):
                self.functional(r["max_passed"] is not None,
                                f"maxrate run {k + 1}: {name} sustained none of the rates "
                                f"tried: {r['steps']}")
        self.row("maxrate", f"max sustained calls/s, 0 failed, sipcheck -> sipcheck | SIPp -> "
                 f"SIPp ({secs} s steps)", [r["max_passed"] for r in res["sipcheck"]],
                 [r["max_passed"] for r in res["sipp"]], (">=", 1.2))
        self.row("maxrate", "  first rate not sustained (- = none up to the cap)",
                 [r["first_failed"] for r in res["sipcheck"]],
                 [r["first_failed"] for r in res["sipp"]])

    def section_mediamax(self):
        s = self.s
        self.log(f"[mediamax] the largest media concurrency passed, {self.runs} searches per "
                 f"tool")
        step_s = media_ramp(s) + max(s["media_hold"], 9) + 25

        # A step at n calls in search k is the media run (n, k) that the media, memory and
        # growth sections use too: the first search's doubling steps are their sizes.
        def step_sc(n, k):
            r = self.media_sipcheck("answer", n, k)
            return self.media_sipcheck_passed(r, n), dict(
                ok=r["ok"], verified=r.get("audio_verified"), p99=r.get("lateness_p99_ms"),
                skipped=r.get("frames_skipped"), answer_skipped=r.get("responder_frames_skipped"))

        def step_sp(n, k):
            r = self.media_sipp(n, k)
            return self.media_sipp_passed(r, n), dict(ok=r["ok"], failed=r["failed"])

        common = dict(cap_s=s["msearch_cap"], step_s=step_s, top=s["msearch_max"],
                      gran=s["msearch_gran"])
        out = self.searches(
            "media: sipcheck run -> answer", "media: SIPp uac_pcap -> uas -rtp_echo",
            step_sc, step_sp,
            dict(common, start=s["msearch_start"], factor=2, steps=s["msearch_steps"],
                 bisect=s["msearch_bisect"]),
            dict(common, factor=1.25, steps=s["msearch_refine_steps"],
                 bisect=s["msearch_refine_bisect"]))
        self.details["mediamax"] = out
        for name, rs in (("SIPp", out["sipp"]), ("sipcheck", out["sipcheck"])):
            for k, r in enumerate(rs):
                self.functional(r["max_passed"] is not None,
                                f"mediamax run {k + 1}: {name} passed none of the "
                                f"concurrencies tried: {r['steps']}")
        m = "mediamax"
        # A search that passed none of the concurrencies it tried counts as 0, in the median
        # and the range, and the row says how many did.
        best_sc = [r["max_passed"] or 0 for r in out["sipcheck"]]
        best_sp = [r["max_passed"] or 0 for r in out["sipp"]]
        self.row(m, "max concurrent media calls, one core per side (all verified, p99 < 1 ms, "
                 "0 skipped | SIPp: all completed)"
                 + passed_none((("sipcheck", out["sipcheck"]), ("SIPp", out["sipp"]))),
                 best_sc, best_sp, (">=", 2))
        self.row(m, "  the same, sipcheck's calls per core"
                 + passed_none((("sipcheck", out["sipcheck"]),)), best_sc, None, (">=", 1500),
                 on="sipcheck", unit="calls")
        self.row(m, f"  first concurrency not passed (-: every step tried passed; cap "
                 f"{s['msearch_max']:,})",
                 [r["first_failed"] for r in out["sipcheck"]],
                 [r["first_failed"] for r in out["sipp"]])

    def section_media(self):
        n = self.s["media_calls"]
        self.log(f"[media] {n} concurrent G.711 calls of ~{self.s['media_hold']} s, "
                 f"{self.runs} runs")
        aas, aes, pps = [], [], []
        for k in range(self.runs):
            self.budget(3 * (self.s["media_hold"] + 20), f"media run {k + 1}")
            aa = self.media_sipcheck("answer", n, k)
            ae = self.media_sipcheck("sipp-echo", n, k)
            pp = self.media_sipp(n, k)
            aas.append(aa), aes.append(ae), pps.append(pp)
            self.functional(aa["ok"] == n and aa["audio_verified"] == n,
                            f"media run {k + 1}: sipcheck run -> sipcheck answer: {aa['ok']} of "
                            f"{n} calls passed, {aa['audio_verified']} verified, failures "
                            f"{aa['failures']}")
            self.functional(ae["ok"] == n and ae["audio_verified"] == n,
                            f"media run {k + 1}: sipcheck run -> SIPp uas -rtp_echo: {ae['ok']} "
                            f"of {n} calls passed, {ae['audio_verified']} verified, failures "
                            f"{ae['failures']}")
            self.functional(pp["ok"] == n and pp["failed"] == 0,
                            f"media run {k + 1}: SIPp uac_pcap -> SIPp uas -rtp_echo: "
                            f"{pp['ok']} of {n} calls passed, {pp['failed']} failed")
            planned = self.s["media_hold"] + 1
            for name, r in (("sipcheck run -> answer", aa),
                            ("sipcheck run -> SIPp uas -rtp_echo", ae)):
                length = (r.get("call_duration_p50_ms") or 0) / 1e3
                if length > 1.5 * planned:
                    self.note(f"media run {k + 1}: {name}: calls lasted {length:.1f} s (p50), "
                              f"planned ~{planned} s: its hang-up timers fell behind")
        ms = lambda rs, key: [per_call(r, key, 1e3, "calls") for r in rs]  # noqa: E731
        get = lambda rs, key: [r.get(key) for r in rs]  # noqa: E731
        sec = "media"
        self.row(sec, f"calls passed, run -> answer (of {n}) | SIPp: uac_pcap -> uas echo",
                 get(aas, "ok"), get(pps, "ok"), ("==", n), on="sipcheck")
        self.row(sec, "audio verified, run -> answer (calls)", get(aas, "audio_verified"),
                 None, ("==", n), on="sipcheck")
        self.row(sec, "pacing lateness p50 (ms)", get(aas, "lateness_p50_ms"), None)
        self.row(sec, "pacing lateness p99 (ms)", get(aas, "lateness_p99_ms"), None)
        self.row(sec, "pacing lateness p99.9 (ms)", get(aas, "lateness_p999_ms"), None)
        self.row(sec, "frames skipped (generator overrun), caller", get(aas, "frames_skipped"),
                 None)
        self.row(sec, "frames skipped, answer (sum over calls)",
                 get(aas, "responder_frames_skipped"), None)
        self.row(sec, "late call starts (> 10 ms behind schedule)", get(aas, "late_starts"),
                 None)
        self.row(sec, "caller USER CPU per media call (ms) | SIPp: uac_pcap",
                 ms(aas, "caller_user_s"), ms(pps, "caller_user_s"))
        self.row(sec, "  kernel (system) CPU beside it (ms)",
                 ms(aas, "caller_sys_s"), ms(pps, "caller_sys_s"))
        self.row(sec, "responder USER CPU per media call (ms): answer | SIPp: uas -rtp_echo",
                 ms(aas, "responder_user_s"), ms(pps, "responder_user_s"))
        self.row(sec, "  kernel (system) CPU beside it (ms)",
                 ms(aas, "responder_sys_s"), ms(pps, "responder_sys_s"))
        self.row(sec, f"run -> SIPp uas -rtp_echo: calls passed (of {n})", get(aes, "ok"),
                 get(pps, "ok"), ("==", n), on="sipcheck")
        self.row(sec, "run -> SIPp uas -rtp_echo: own tone verified (calls)",
                 get(aes, "audio_verified"), None, ("==", n), on="sipcheck")
        self.row(sec, "run -> SIPp uas -rtp_echo: lateness p99 (ms)",
                 get(aes, "lateness_p99_ms"), None)
        self.row(sec, "run -> SIPp uas -rtp_echo: caller USER CPU per call (ms) | SIPp: "
                 "uac_pcap", ms(aes, "caller_user_s"), ms(pps, "caller_user_s"))
        self.row(sec, "  kernel (system) CPU beside it (ms)", ms(aes, "caller_sys_s"),
                 ms(pps, "caller_sys_s"))
        self.row(sec, "call length (s): p50 | SIPp: caller wall time minus ramp",
                 [(r.get("call_duration_p50_ms") or 0) / 1e3 for r in aas],
                 [r["elapsed_s"] - n / r["rate"] for r in pps])

    def section_pacing(self):
        levels, hold = self.s["pacing_levels"], self.s["pacing_hold"]
        self.log(f"[pacing] pacing precision at low load: {', '.join(map(str, levels))} "
                 f"streams, {self.runs} runs")
        for n in levels:
            rs = []
            for k in range(self.runs):
                self.budget(hold + 20, f"pacing {n} run {k + 1}")
                r = self.media_sipcheck("answer", n, k, hold=hold)
                self.functional(r["ok"] == n and r["audio_verified"] == n,
                                f"pacing {n} run {k + 1}: {r['ok']} of {n} calls passed, "
                                f"{r['audio_verified']} verified, failures {r['failures']}")
                rs.append(r)
            get = lambda key: [r.get(key) for r in rs]  # noqa: E731
            p = "pacing"
            self.row(p, f"{n:>4} streams (run -> answer): caller lateness p99 (ms)",
                     get("lateness_p99_ms"), None, ("<=", 0.3), on="sipcheck", unit="ms")
            self.row(p, f"{n:>4} streams: caller lateness p50 / max (ms)",
                     " / ".join(fmt_cell(fig(get(key))) for key in ("lateness_p50_ms",
                                                                     "lateness_max_ms")), None)
            self.row(p, f"{n:>4} streams: answer's worst call, lateness p99 (ms)",
                     get("responder_worst_call_pacing_p99_ms"), None)
            self.row(p, f"{n:>4} streams: frames skipped, caller + answer",
                     [(r.get("frames_skipped") or 0) + (r.get("responder_frames_skipped") or 0)
                      for r in rs], None)

    def section_memory(self):
        n = self.s["media_calls"]
        self.log(f"[memory] RSS per active media call ({n} calls) and per registered idle UA, "
                 f"{self.runs} runs")
        per_run, per_uac, per_ans, per_uas, peak_c, peak_r = [], [], [], [], [], []
        for k in range(self.runs):
            aa = self.media_sipcheck("answer", n, k)
            pp = self.media_sipp(n, k)
            base = self.caller_baselines(k)
            per_run.append((aa["caller_peak_kib"] - base["sipcheck_run_kib"]) / n)
            per_uac.append((pp["caller_peak_kib"] - base["sipp_uac_pcap_kib"]) / n)
            per_ans.append((aa["responder_peak_kib"] - aa["responder_idle_kib"]) / n
                           if aa["responder_idle_kib"] else None)
            per_uas.append((pp["responder_peak_kib"] - pp["responder_idle_kib"]) / n
                           if pp["responder_idle_kib"] else None)
            peak_c.append((aa["caller_peak_kib"] / 1024, pp["caller_peak_kib"] / 1024))
            peak_r.append((aa["responder_peak_kib"] / 1024, pp["responder_peak_kib"] / 1024))
        self.row("memory", "RSS per active media call, caller (KiB) | SIPp: uac_pcap",
                 per_run, per_uac, ("<=", 64), on="sipcheck", unit="KiB")
        self.row("memory", "RSS per active media call, answer (KiB) | SIPp: uas -rtp_echo",
                 per_ans, per_uas, ("<=", 64), on="sipcheck", unit="KiB")
        self.row("memory", "  peak RSS, caller process (MiB)", [a for a, _ in peak_c],
                 [b for _, b in peak_c])
        self.row("memory", "  peak RSS, responder process (MiB)", [a for a, _ in peak_r],
                 [b for _, b in peak_r])
        big = self.s["reg_uas"]
        per_ua, rss_big, rss_one = [], [], []
        self.details["registered_idle"] = []
        for k in range(self.runs):
            r_big = self.registered_idle(big)
            r_one = self.registered_idle(1)
            self.details["registered_idle"].append(dict(big=r_big, one=r_one))
            if r_big["idle_rss_kib"] and r_one["idle_rss_kib"]:
                per_ua.append((r_big["idle_rss_kib"] - r_one["idle_rss_kib"]) / (big - 1))
                rss_big.append(r_big["idle_rss_kib"] / 1024)
                rss_one.append(r_one["idle_rss_kib"] / 1024)
        self.row("memory", f"RSS per registered idle UA, {big:,} UAs (KiB)", per_ua, None,
                 ("<=", 16), on="sipcheck", unit="KiB")
        self.row("memory", f"  RSS with {big:,} UAs registered (MiB)", rss_big, None)
        self.row("memory", "  RSS with 1 UA registered (MiB)", rss_one, None)

    def registered_idle(self, n):
        """N UAs register at a SIPp registrar and stay idle; RSS while idle."""
        self.budget(self.s["idle_secs"] + 40, "memory (registered UAs)")
        reg = self.start_sipp_uas("sipp-registrar", scenario=REGISTRAR_XML)
        run = self.start_sipcheck_run(
            f"sipcheck-run-registered-{n}", "registered-idle.yaml",
            dict(BENCH_REGISTRAR=f"{LOOPBACK}:{reg.port}", BENCH_UAS=n,
                 BENCH_RTP_PORTS=RUN_RTP))
        end = time.monotonic() + 60
        seen = 0
        while time.monotonic() < end:
            st = sipp_stat(reg.csv) or {}
            seen = st.get("IncomingCall(C)", 0)
            if seen >= n or not run.alive():
                break
            time.sleep(0.2)
        registered_after = run.elapsed()
        if seen < n or not run.alive():
            run.stop()
            reg.stop()
            raise StepError(f"{run.name}: {seen} of {n} REGISTERs reached the registrar "
                            f"(sipcheck exit {run.rc}): " + " | ".join(run.stderr_tail()))
        time.sleep(0.5)  # the last 200 OKs
        samples = []
        t_end = time.monotonic() + self.s["idle_secs"]
        while time.monotonic() < t_end:
            v = run.rss()
            if v:
                samples.append(v)
            time.sleep(0.1)
        rc = run.stop(grace=60)  # SIGINT: unregister everyone, write the report, exit 130
        time.sleep(1.2)  # one more statistics line from the registrar
        reg.stop()
        try:
            with open(run.report) as f:
                regs = json.load(f)["registrations"]
        except (OSError, ValueError, KeyError) as e:
            raise StepError(f"{run.name}: no JSON report ({e}); exit {rc}: "
                            + " | ".join(run.stderr_tail())) from e
        self.functional(regs["ok"] == n and regs["failed"] == 0 and regs["unregister_ok"] == n,
                        f"{run.name}: registrations {regs} (wanted {n} ok and unregistered)")
        self.functional(rc == 130, f"{run.name}: exit {rc} on SIGINT (130 expected)")
        samples.sort()
        return dict(uas=n, idle_rss_kib=samples[len(samples) // 2] if samples else None,
                    peak_kib=run.peak(), registered_after_s=round(registered_after, 2),
                    registrations=regs, exit=rc)

    def section_growth(self):
        sizes_ = self.s["growth"]
        self.log(f"[growth] media runs at {', '.join(map(str, sizes_))} concurrent calls, "
                 f"{self.runs} runs")
        g = "growth"
        per = {}  # (n, key) -> [(sipcheck, SIPp) per run]
        for k in range(self.runs):
            base = self.caller_baselines(k)
            for n in sizes_:
                self.budget(2 * (self.s["media_hold"] + 20), f"growth {n} run {k + 1}")
                aa = self.media_sipcheck("answer", n, k)
                pp = self.media_sipp(n, k)
                self.functional(aa["ok"] == n and aa["audio_verified"] == n,
                                f"growth {n} run {k + 1}: sipcheck run -> answer: {aa['ok']} of "
                                f"{n} passed, {aa['audio_verified']} verified")
                self.functional(pp["ok"] == n and pp["failed"] == 0,
                                f"growth {n} run {k + 1}: SIPp uac_pcap -> uas echo: {pp['ok']} "
                                f"of {n} passed")
                per.setdefault((n, "passed"), []).append(
                    (min(aa["ok"], aa["audio_verified"] or 0), pp["ok"]))
                per.setdefault((n, "user_c"), []).append(
                    (aa["caller_user_s"] / n * 1e3, pp["caller_user_s"] / n * 1e3))
                per.setdefault((n, "sys_c"), []).append(
                    (aa["caller_sys_s"] / n * 1e3, pp["caller_sys_s"] / n * 1e3))
                per.setdefault((n, "user_r"), []).append(
                    (aa["responder_user_s"] / n * 1e3, pp["responder_user_s"] / n * 1e3))
                per.setdefault((n, "sys_r"), []).append(
                    (aa["responder_sys_s"] / n * 1e3, pp["responder_sys_s"] / n * 1e3))
                per.setdefault((n, "rss_c"), []).append(
                    ((aa["caller_peak_kib"] - base["sipcheck_run_kib"]) / n,
                     (pp["caller_peak_kib"] - base["sipp_uac_pcap_kib"]) / n))
                per.setdefault((n, "rss_r"), []).append(
                    ((aa["responder_peak_kib"] - (aa["responder_idle_kib"] or 0)) / n,
                     (pp["responder_peak_kib"] - (pp["responder_idle_kib"] or 0)) / n))

        def cols(n, key):
            pairs = per[(n, key)]
            return [a for a, _ in pairs], [b for _, b in pairs]
        for n in sizes_:
            self.row(g, f"{n:>5} calls: calls passed (sipcheck: audio verified too)",
                     *cols(n, "passed"), ("==", n), on="sipcheck")
            self.row(g, f"{n:>5} calls: caller USER CPU per call (ms)", *cols(n, "user_c"))
            self.row(g, f"{n:>5} calls:   kernel CPU beside it (ms)", *cols(n, "sys_c"))
            self.row(g, f"{n:>5} calls: answer USER CPU per call (ms) | SIPp: uas echo",
                     *cols(n, "user_r"))
            self.row(g, f"{n:>5} calls:   kernel CPU beside it (ms)", *cols(n, "sys_r"))
            self.row(g, f"{n:>5} calls: caller RSS per call (KiB)", *cols(n, "rss_c"))
            self.row(g, f"{n:>5} calls: answer RSS per call (KiB) | SIPp: uas echo",
                     *cols(n, "rss_r"))
        lo, hi = sizes_[0], sizes_[-1]
        if lo != hi:
            for key, what in (("user_c", "caller user CPU"), ("user_r", "answer user CPU"),
                              ("rss_c", "caller RSS"), ("rss_r", "answer RSS")):
                # per run: the cost per call at the largest size over the smallest
                pairs = list(zip(per[(hi, key)], per[(lo, key)]))
                a = [ratio(h[0], low[0]) for h, low in pairs]
                b = [ratio(h[1], low[1]) for h, low in pairs]
                self.row(g, f"{what} per call, {hi} vs {lo} calls (x)", a, b, ("<=", 1.5),
                         on="sipcheck")

    # ---- driver

    def run(self, only):
        for name in SECTIONS:
            if only and name not in only:
                continue
            try:
                getattr(self, "section_" + name)()
            except StepError as e:
                self.errors.append(f"{name}: {e}")
                print(f"error: {name}: {e}", file=sys.stderr, flush=True)

    def shutdown(self):
        for p in self.monitor.live():
            p.stop(grace=10)
        self.monitor.stopping = True

    def pinning(self):
        """Which core each process ran on: its Cpus_allowed_list as the kernel reported it
        while it ran, and the CPUs its main thread was seen on, per role."""
        out = {}
        for role, core in (("caller", self.caller_core), ("responder", self.responder_core)):
            ps = [p for p in self.procs if getattr(p, "role", None) == role]
            allowed = sorted({p.allowed for p in ps if p.allowed is not None})
            ran = sorted(set().union(*(p.ran_on for p in ps))) if ps else []
            out[role] = dict(core=core, processes=len(ps), cpus_allowed=allowed, ran_on=ran,
                             each=[dict(name=p.name, pid=p.pid, cpus_allowed=p.allowed,
                                        ran_on=sorted(p.ran_on)) for p in ps])
            if ps and allowed != [str(core)]:
                self.note(f"{role} processes were to run on core {core} only; the kernel "
                          f"reported Cpus_allowed_list {allowed}")
        return out


# --------------------------------------------------------------------------------------------
# Report


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return dict(nproc=os.cpu_count(), cpu=model, kernel=platform.release(),
                loadavg=" ".join(f"{x:.2f}" for x in os.getloadavg()))


def versions(sipcheck, sipp):
    def first(argv, pattern):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"? ({e})"
        for line in (out.stdout + out.stderr).splitlines():
            if re.search(pattern, line):
                return line.strip()
        return "?"
    return dict(sipcheck=first([sipcheck, "--version"], r"sipcheck"),
                sipp=first([sipp, "-v"], r"SIPp v"),
                python=platform.python_version())


def render_text(rows, smoke):
    head = ["section", "what", "sipcheck", "SIPp", "ratio", "target", "met"]
    body = []
    for r in rows:
        met = "n/a" if smoke and r["target"] != "-" else (
            "-" if r["met"] is None else ("yes" if r["met"] else "NO"))
        body.append([r["section"], r["what"], fmt_cell(r["sipcheck"]), fmt_cell(r["sipp"]),
                     fmt_num(r["ratio"]), r["target"], met])
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) if body else len(head[i])
              for i in range(len(head))]
    align = ["<", "<", ">", ">", ">", "<", "<"]
    line = lambda cells: "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths))  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    return "\n".join(out)


def pinning_text(pin):
    parts = []
    for role, what in (("caller", "callers (sipcheck run, SIPp uac)"),
                       ("responder", "responders (sipcheck answer, SIPp uas)")):
        r = pin.get(role)
        if not r:
            continue
        seen = (f"{r['processes']} processes, Cpus_allowed_list {', '.join(r['cpus_allowed'])}"
                f", seen on CPU {', '.join(map(str, r['ran_on']))}" if r["processes"]
                else "none started")
        parts.append(f"{what} on core {r['core']} ({seen})")
    return "; ".join(parts)


def json_default(v):
    if isinstance(v, Fig):
        return v.as_json()
    if isinstance(v, set):
        return sorted(v)
    return str(v)


def render_markdown(rows, info, smoke):
    out = ["# sipcheck vs SIPp, side by side", ""]
    out.append(f"- machine: {info['machine']['nproc']} CPUs, {info['machine']['cpu']}, "
               f"kernel {info['machine']['kernel']}, load average at start "
               f"{info['machine']['loadavg']}")
    out.append(f"- versions: {info['versions']['sipcheck']}; {info['versions']['sipp']}")
    out.append(f"- mode: {'smoke (tiny sizes, targets not judged)' if smoke else 'full'}; "
               f"{info['runs']} runs of every figure (median [min–max]; ratio: of the "
               f"medians), sipcheck and SIPp alternated; ran {info['elapsed_s']:.0f} s "
               f"(estimated {info['estimate_s'] / 60:.0f} min)")
    out.append(f"- pinning: {pinning_text(info['pinning'])}")
    out += ["", "| section | what | sipcheck | SIPp | ratio | target | met |",
            "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        met = "n/a" if smoke and r["target"] != "-" else (
            "-" if r["met"] is None else ("yes" if r["met"] else "**no**"))
        cells = [r["section"], r["what"].strip(), fmt_cell(r["sipcheck"]),
                 fmt_cell(r["sipp"]), fmt_num(r["ratio"]), r["target"], met]
        cells = [c.replace("|", "\\|") for c in cells]
        out.append("| " + " | ".join(cells) + " |")
    if info["notes"] or info["errors"]:
        out.append("")
        out += [f"- error: {e}" for e in info["errors"]]
        out += [f"- note: {n}" for n in info["notes"]]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------


def find_pcaps(explicit):
    candidates = [explicit] if explicit else []
    candidates.append("/usr/share/sip-tester")
    try:
        out = subprocess.run(["dpkg", "-L", "sip-tester"], capture_output=True, text=True,
                             timeout=10).stdout
        candidates += [os.path.dirname(p) for p in out.split() if p.endswith("g711a.pcap")]
    except (OSError, subprocess.TimeoutExpired):
        pass
    for d in candidates:
        if d and all(os.path.isfile(os.path.join(d, f)) for f in ("g711a.pcap", "dtmf_2833_1.pcap")):
            return d
    return None


def main():
    ap = argparse.ArgumentParser(description="sipcheck vs SIPp side by side on loopback.")
    ap.add_argument("--smoke", action="store_true",
                    help="every step at tiny sizes; fails only if a step cannot run")
    ap.add_argument("--only", action="append", choices=SECTIONS, metavar="NAME",
                    help="run only this section (repeatable): " + ", ".join(SECTIONS))
    ap.add_argument("--sipcheck", default=os.environ.get("SIPCHECK"),
                    help="the sipcheck binary (env SIPCHECK; default target/release/sipcheck)")
    ap.add_argument("--sipp", default=None, help="the sipp binary (default: sipp on PATH)")
    ap.add_argument("--pcap-dir", default=None,
                    help="where g711a.pcap and dtmf_2833_1.pcap are (default: the package's)")
    ap.add_argument("--json", metavar="FILE", help="write the table and all figures as JSON")
    ap.add_argument("--markdown", metavar="FILE", help="write the table as Markdown")
    ap.add_argument("--rate", type=int, help="the fixed call rate of sections caller and "
                    "responder (default 4000/s; smoke 50/s)")
    ap.add_argument("--media-calls", type=int, help="concurrent media calls (default 2000)")
    ap.add_argument("--registered-uas", type=int, help="registered idle UAs of the memory "
                    "section (default 10000; smoke 200)")
    ap.add_argument("--budget-min", type=float, help="stop starting steps after this many "
                    "minutes (default 25; smoke 4)")
    ap.add_argument("--runs", type=int, help="runs of every figure, sipcheck and SIPp "
                    "alternated; the table shows the median and the range (default 3; smoke 2)")
    ap.add_argument("--cores", default="0,1", metavar="CALLER,RESPONDER",
                    help="the CPU cores the callers (sipcheck run, SIPp uac) and the "
                    "responders (sipcheck answer, SIPp uas) are pinned to with taskset "
                    "(default 0,1)")
    ap.add_argument("--estimate", action="store_true",
                    help="print the estimated time of the run and exit")
    ap.add_argument("--check-targets", action="store_true",
                    help="exit 1 when a performance target is missed (not in --smoke)")
    ap.add_argument("--workdir", default=None, help="where the log directory is created")
    ap.add_argument("--keep", action="store_true", help="keep every log (default: kept on error)")
    ap.add_argument("--sample-interval", type=float, default=0.05,
                    help="seconds between CPU/RSS samples (default 0.05)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show every process started")
    args = ap.parse_args()

    missing = []
    if sys.version_info < (3, 9):
        missing.append("python3 >= 3.9")
    args.sipp = args.sipp or shutil.which("sipp")
    if not args.sipp:
        missing.append("sipp (Debian package sip-tester)")
    args.sipcheck = args.sipcheck or os.path.join(REPO, "target", "release", "sipcheck")
    if not (os.path.isfile(args.sipcheck) and os.access(args.sipcheck, os.X_OK)):
        missing.append(f"the sipcheck binary at {args.sipcheck} (cargo build --release, or "
                       f"--sipcheck PATH / SIPCHECK=PATH)")
    args.pcap_dir = find_pcaps(args.pcap_dir)
    if not args.pcap_dir:
        missing.append("SIPp's pcap files g711a.pcap and dtmf_2833_1.pcap (package sip-tester; "
                       "or --pcap-dir DIR)")
    if not os.path.isdir("/proc/self"):
        missing.append("/proc (Linux)")
    if not shutil.which("taskset"):
        missing.append("taskset (Debian package util-linux)")
    try:
        cores = [int(c) for c in args.cores.split(",")]
        if len(cores) != 2 or cores[0] < 0 or cores[1] < 0:
            raise ValueError
    except ValueError:
        print(f"--cores {args.cores}: two core numbers, CALLER,RESPONDER (e.g. 0,1)",
              file=sys.stderr)
        return 2
    allowed = sorted(os.sched_getaffinity(0))
    pin_note = None
    if not all(c in allowed for c in cores) or cores[0] == cores[1]:
        if not args.smoke:
            print(f"--cores {args.cores}: two different cores among those this process may "
                  f"use ({','.join(map(str, allowed))})", file=sys.stderr)
            return 2
        fallback = [allowed[0], allowed[-1]]
        pin_note = (f"cores {args.cores} are not two distinct cores of this machine "
                    f"(allowed: {','.join(map(str, allowed))}); smoke mode pins to "
                    f"{fallback[0]},{fallback[1]} instead")
        cores = fallback
    args.cores = cores
    if args.runs is not None and args.runs < 1:
        print("--runs: at least 1", file=sys.stderr)
        return 2
    if missing:
        print("sidebyside.py needs:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    args.sipcheck = os.path.abspath(args.sipcheck)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    want = min(want, 1048576)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 12000:
        print(f"warning: the open-file limit is {want}; 2,000 media calls need ~12,000",
              file=sys.stderr)

    sections = [x for x in SECTIONS if not args.only or x in args.only]
    if args.estimate:
        s = sizes(args.smoke)
        runs = args.runs or s["runs"]
        print(f"estimated: {estimate(s, sections, runs) / 60:.1f} min for {', '.join(sections)}"
              f" with {runs} runs (the sizes of {'--smoke' if args.smoke else 'a full run'}; "
              f"--rate, --media-calls, --registered-uas not counted)")
        return 0
    bench = Bench(args)
    if args.budget_min:
        bench.s["budget_min"] = args.budget_min
        bench.deadline = bench.started + args.budget_min * 60
    if pin_note:
        bench.note(pin_note)
    est = estimate(bench.s, sections, bench.runs)
    info = dict(machine=machine(), versions=versions(args.sipcheck, args.sipp),
                mode="smoke" if args.smoke else "full", sizes=bench.s, runs=bench.runs,
                estimate_s=est, cores=dict(caller=cores[0], responder=cores[1]))
    print(f"machine: {info['machine']['nproc']} CPUs, {info['machine']['cpu']}, kernel "
          f"{info['machine']['kernel']}, load average {info['machine']['loadavg']}",
          file=sys.stderr)
    print(f"versions: {info['versions']['sipcheck']}; {info['versions']['sipp']}; "
          f"python {info['versions']['python']}", file=sys.stderr)
    print(f"logs: {bench.logdir}", file=sys.stderr)
    print(f"pinning: callers (sipcheck run, SIPp uac) on core {cores[0]}, responders "
          f"(sipcheck answer, SIPp uas) on core {cores[1]} (taskset -c); this script unpinned",
          file=sys.stderr)
    print(f"plan: {', '.join(sections)}; {bench.runs} runs of every figure, sipcheck and SIPp "
          f"alternated; estimated {est / 60:.1f} min (budget {bench.s['budget_min']:g} min)",
          file=sys.stderr)
    if bench.runs < 3 and not args.smoke:
        bench.note(f"{bench.runs} run(s) of every figure: the table's figures need 3 or more")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt
    # Our own handlers, also for SIGINT: a shell may have started us with SIGINT ignored
    # (a background job), and an ignored signal would stay ignored in every child.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    interrupted = False
    try:
        bench.run(args.only)
    except KeyboardInterrupt:
        interrupted = True
        bench.errors.append("interrupted")
    finally:
        bench.shutdown()

    info.update(pinning=bench.pinning())
    info.update(elapsed_s=time.monotonic() - bench.started, errors=bench.errors,
                notes=bench.notes)
    table = render_text(bench.rows, args.smoke)
    print()
    print(f"machine: {info['machine']['nproc']} x {info['machine']['cpu']}, kernel "
          f"{info['machine']['kernel']}")
    print(f"versions: {info['versions']['sipcheck']}; {info['versions']['sipp']}")
    print(f"mode: {info['mode']}{' (targets not judged)' if args.smoke else ''}; "
          f"{bench.runs} runs of every figure: median [min–max], ratio of the medians; "
          f"{info['elapsed_s']:.0f} s (estimated {est / 60:.1f} min)")
    print(f"pinning: {pinning_text(info['pinning'])}")
    print(table)
    for n in bench.notes:
        print(f"note: {n}")
    for e in bench.errors:
        print(f"error: {e}")
    if args.json:
        doc = dict(info, rows=bench.rows, runs=bench.details)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2, default=json_default)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render_markdown(bench.rows, info, args.smoke))
    if bench.errors:
        print(f"logs kept in {bench.logdir}")
        return 130 if interrupted else 1
    if not args.keep:
        shutil.rmtree(bench.logdir, ignore_errors=True)
    else:
        print(f"logs kept in {bench.logdir}")
    if args.check_targets and not args.smoke and any(r["met"] is False for r in bench.rows):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
