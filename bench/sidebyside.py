#!/usr/bin/env python3
"""sipcheck and SIPp side by side on 127.0.0.1: CPU per call, maximum call rate, media
quality under load, memory per call and per registered user agent.

Python 3 standard library only. It installs nothing: it needs `sipp` (Debian package
sip-tester, with its pcap files) and a built `sipcheck` binary. Every process it measures
is started here, on loopback ports, with every load bounded in calls and in time, and stopped
by its PID (SIGINT, then SIGKILL). See bench/README.md.

    python3 bench/sidebyside.py --smoke            # every step at tiny sizes (CI, < 3 min)
    python3 bench/sidebyside.py                    # the full comparison (< 25 min)
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

SECTIONS = ["caller", "maxrate", "responder", "media", "memory", "growth"]


class StepError(Exception):
    """A step could not run at all (a process did not start, a report is missing, ...)."""


# --------------------------------------------------------------------------------------------
# Processes


def read_proc(pid):
    """(cpu seconds, VmRSS KiB, VmHWM KiB) of a live process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # Fields after the parenthesised command name: state is field 3; utime, stime: 14, 15.
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    rss = hwm = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    if fields[0] == "Z":  # a zombie has no memory left to read
        return None
    return cpu, rss, hwm


def read_sys(pid):
    """System (kernel) CPU seconds of a live process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[12]) / CLK_TCK


class Proc:
    """A child process, sampled by the Monitor, reaped with wait4 (for its rusage)."""

    def __init__(self, bench, name, argv, cwd=None, env=None):
        self.name = name
        self.argv = argv
        self.out_path = os.path.join(bench.logdir, name + ".out")
        self.err_path = os.path.join(bench.logdir, name + ".err")
        self.lock = threading.Lock()
        self.rc = None
        self.rusage = None
        self.peak_rss = 0  # KiB, sampled VmRSS
        self.hwm = 0  # KiB, the kernel's VmHWM at the last sample
        self.last_cpu = 0.0
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
        bench.log(f"  started {name} (pid {self.pid}): {' '.join(argv)}")

    def sample(self):
        with self.lock:
            if self.rc is not None:
                return
            got = read_proc(self.pid)
            if got is not None:
                cpu, rss, hwm = got
                self.last_cpu = cpu
                self.peak_rss = max(self.peak_rss, rss)
                self.hwm = max(self.hwm, hwm)
                self.samples.append((time.monotonic() - self.t0, cpu, rss))
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

    def cpu(self):
        """CPU seconds (user + system) so far, or in total once the process has exited."""
        with self.lock:
            if self.rc is not None:
                return self.rusage.ru_utime + self.rusage.ru_stime
            got = read_proc(self.pid)
            return got[0] if got else self.last_cpu

    def sys(self):
        """System (kernel) CPU seconds so far, or in total once the process has exited."""
        with self.lock:
            if self.rc is not None:
                return self.rusage.ru_stime
            got = read_sys(self.pid)
            return got if got is not None else 0.0

    def rss(self):
        got = read_proc(self.pid) if self.rc is None else None
        return got[1] if got else None

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


# --------------------------------------------------------------------------------------------
# Sizes


def sizes(smoke):
    if smoke:
        return dict(
            rate=50, rate_secs=2,
            search_start=50, search_factor=2, search_steps=2, search_bisect=0,
            search_step_secs=2, search_cap=45, search_max_rate=200,
            media_calls=20, media_hold=3, growth=[10, 20],
            reg_uas=200, idle_secs=2,
            budget_min=4,
        )
    return dict(
        rate=4000, rate_secs=10,
        search_start=2000, search_factor=2, search_steps=6, search_bisect=2,
        search_step_secs=5, search_cap=180, search_max_rate=64000,
        media_calls=2000, media_hold=10, growth=[250, 500, 1000, 2000],
        reg_uas=10000, idle_secs=5,
        budget_min=25,
    )


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
        self.sipcheck = args.sipcheck
        self.sipp = args.sipp
        self.pcap_dir = args.pcap_dir
        self.logdir = tempfile.mkdtemp(prefix="sipcheck-bench-", dir=args.workdir)
        self.monitor = Monitor(args.sample_interval)
        self.monitor.start()
        self.mp = MediaPorts()
        self.rows = []
        self.errors = []  # steps that could not run: always a non-zero exit
        self.notes = []  # things worth knowing that do not stop the benchmark
        self.details = {}
        self.cache = {}
        self.counter = 0
        self.started = time.monotonic()
        self.deadline = self.started + self.s["budget_min"] * 60

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
        """One table row. target: (op, bound) judged on `on` ("ratio" or "sipcheck")."""
        r = ratio(sipcheck, sipp)
        met = None
        if target and not self.smoke:
            op, bound = target
            v = r if on == "ratio" else sipcheck
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

    # ---- processes

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
        p = Proc(self, tag, argv, cwd=cwd)
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
        p = Proc(self, tag, argv, env=self.sipcheck_env({}))
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
        p = Proc(self, tag, argv, cwd=cwd)
        p.csv = csv
        return p

    def start_sipcheck_run(self, name, scenario, env):
        tag = self.tag(name)
        report = os.path.join(self.logdir, tag + ".json")
        argv = [self.sipcheck, "run", os.path.join(SCENARIOS, scenario), "--json", report]
        p = Proc(self, tag, argv, env=self.sipcheck_env(env))
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

    def sig_sipp_to_sipp(self, rate, secs, step=False):
        """SIPp uac -> SIPp uas, 0-length calls."""
        def go():
            calls = int(rate * secs)
            uas = self.start_sipp_uas("sipp-uas")
            cpu0, sys0 = uas.cpu(), uas.sys()
            limit = secs + 8 if step else 2 * secs + 15
            uac = self.start_sipp_uac("sipp-uac", uas.port, rate, calls, deadline=limit + 5)
            rc = self.finish(uac, limit, grace=5 if step else 15)
            self.settle()
            cpu1, sys1 = uas.cpu(), uas.sys()
            uas.stop()
            out = dict(calls=calls, rc=rc, elapsed_s=uac.elapsed(), timed_out=uac.timed_out,
                       caller_cpu_s=uac.cpu(), caller_sys_s=uac.sys(),
                       caller_peak_kib=uac.peak(), responder_cpu_s=cpu1 - cpu0,
                       responder_sys_s=sys1 - sys0, responder_peak_kib=uas.peak())
            out.update(self.sipp_result(uac, rc, step))
            return out
        return go() if step else self.memo(f"sipp-uac->sipp-uas@{rate}x{secs}", go)

    def sig_sipcheck_to(self, responder, rate, secs, step=False):
        """sipcheck run -> SIPp uas or sipcheck answer, 0-length calls."""
        def go():
            calls = int(rate * secs)
            if responder == "sipp":
                resp = self.start_sipp_uas("sipp-uas")
            else:
                resp = self.start_answer("answer", media=False)
            cpu0, sys0 = resp.cpu(), resp.sys()
            run = self.start_sipcheck_run(
                "sipcheck-run", "signaling-caller.yaml",
                dict(BENCH_TARGET=f"{LOOPBACK}:{resp.port}", BENCH_RATE=rate,
                     BENCH_CALLS=calls, BENCH_RTP_PORTS=RUN_RTP))
            rc = self.finish(run, secs + 8 if step else 2 * secs + 15, grace=5 if step else 30)
            self.settle()
            cpu1, sys1 = resp.cpu(), resp.sys()
            resp.stop(5 if step else 30)
            out = dict(calls=calls, rc=rc, elapsed_s=run.elapsed(), timed_out=run.timed_out,
                       caller_cpu_s=run.cpu(), caller_sys_s=run.sys(),
                       caller_peak_kib=run.peak(), responder_cpu_s=cpu1 - cpu0,
                       responder_sys_s=sys1 - sys0, responder_peak_kib=resp.peak())
            if responder == "answer":
                out["responder"], _ = self.answer_results(resp, keep_calls=False)
            out.update(self.run_summary(run))
            return out
        key = f"sipcheck-run->{responder}@{rate}x{secs}"
        return go() if step else self.memo(key, go)

    def sig_sipp_to_answer(self, rate, secs):
        """SIPp uac -> sipcheck answer, 0-length calls."""
        def go():
            calls = int(rate * secs)
            ans = self.start_answer("answer", media=False)
            cpu0, sys0 = ans.cpu(), ans.sys()
            limit = 2 * secs + 15
            uac = self.start_sipp_uac("sipp-uac", ans.port, rate, calls, deadline=limit + 5)
            rc = self.finish(uac, limit, grace=15)
            self.settle()
            cpu1, sys1 = ans.cpu(), ans.sys()
            ans.stop(30)
            out = dict(calls=calls, rc=rc, elapsed_s=uac.elapsed(), timed_out=uac.timed_out,
                       caller_cpu_s=uac.cpu(), responder_cpu_s=cpu1 - cpu0,
                       responder_sys_s=sys1 - sys0,
                       responder_peak_kib=ans.peak())
            out["responder"], _ = self.answer_results(ans, keep_calls=False)
            out.update(self.sipp_result(uac, rc, False))
            return out
        return self.memo(f"sipp-uac->answer@{rate}x{secs}", go)

    def media_rate(self, n):
        hold = self.s["media_hold"]
        ramp = min(5.0, hold / 2)
        return max(1, math.ceil(n / ramp))

    def media_sipcheck(self, responder, n, hold=None):
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
            cpu0, sys0 = resp.cpu(), resp.sys()
            run = self.start_sipcheck_run(
                "sipcheck-run-media", "media-caller.yaml",
                dict(BENCH_TARGET=f"{LOOPBACK}:{resp.port}", BENCH_RATE=rate, BENCH_CALLS=n,
                     BENCH_PLAY_HZ=440, BENCH_EXPECT_HZ=expect, BENCH_HOLD=f"{hold}s",
                     BENCH_RTP_PORTS=RUN_RTP))
            rc = self.finish(run, n / rate + hold + 30)
            self.settle()
            cpu1, sys1 = resp.cpu(), resp.sys()
            resp_peak = resp.peak()
            resp.stop(30)
            out = dict(calls=n, rate=rate, hold_s=hold, rc=rc, elapsed_s=run.elapsed(),
                       timed_out=run.timed_out, caller_cpu_s=run.cpu(), caller_sys_s=run.sys(),
                       caller_peak_kib=run.peak(), responder_cpu_s=cpu1 - cpu0,
                       responder_sys_s=sys1 - sys0,
                       responder_idle_kib=idle_rss, responder_peak_kib=resp_peak)
            if responder == "answer":
                out["responder"], calls = self.answer_results(resp, keep_calls=True)
                media = [c["media"] for c in calls if c.get("media")]
                p999 = [m["pacing_lateness_ms"]["p999"] for m in media
                        if m.get("pacing_lateness_ms")]
                out["responder_worst_call_pacing_p999_ms"] = max(p999) if p999 else None
                out["responder_frames_skipped"] = (sum(m.get("frames_skipped", 0) for m in media)
                                                   if media else None)
            else:
                out["responder_rtp_sent"] = sipp_rtp_sent(resp)
            out.update(self.run_summary(run))
            return out
        return self.memo(f"media:sipcheck-run->{responder}x{n}x{hold}s", go)

    def media_sipp(self, n):
        """SIPp uac_pcap -> SIPp uas -rtp_echo."""
        def go():
            rate = self.media_rate(n)
            uas = self.start_sipp_uas("sipp-uas-echo", echo=True)
            time.sleep(0.3)
            idle_rss = uas.rss()
            cpu0, sys0 = uas.cpu(), uas.sys()
            limit = n / rate + 9 + 30
            uac = self.start_sipp_uac("sipp-uac-pcap", uas.port, rate, n, pcap=True,
                                      deadline=limit + 5)
            rc = self.finish(uac, limit, grace=15)
            self.settle()
            cpu1, sys1 = uas.cpu(), uas.sys()
            uas_peak = uas.peak()
            uas.stop()
            out = dict(calls=n, rate=rate, rc=rc, elapsed_s=uac.elapsed(),
                       timed_out=uac.timed_out, caller_cpu_s=uac.cpu(), caller_sys_s=uac.sys(),
                       caller_peak_kib=uac.peak(), responder_cpu_s=cpu1 - cpu0,
                       responder_sys_s=sys1 - sys0,
                       responder_idle_kib=idle_rss, responder_peak_kib=uas_peak,
                       caller_rtp_sent=sipp_rtp_sent(uac), responder_rtp_sent=sipp_rtp_sent(uas))
            out.update(self.sipp_result(uac, rc, False))
            return out
        return self.memo(f"media:sipp-uac_pcap->sipp-uas-echox{n}", go)

    def caller_baselines(self):
        """Peak RSS of each caller process with a single media call: its idle footprint."""
        def go():
            sc = self.media_sipcheck("answer", 1, hold=1)
            self.functional(sc["ok"] == 1, f"baseline: the single sipcheck media call did not "
                            f"pass (exit {sc['rc']}, failures {sc['failures']})")
            sp = self.media_sipp(1)
            self.functional(sp["ok"] == 1, f"baseline: the single SIPp uac_pcap call did not "
                            f"pass (exit {sp['rc']})")
            return dict(sipcheck_run_kib=sc["caller_peak_kib"],
                        sipp_uac_pcap_kib=sp["caller_peak_kib"])
        return self.memo("baselines", go)

    # ---- sections

    def section_caller(self):
        rate, secs = self.s["rate"], self.s["rate_secs"]
        self.log(f"[caller] signaling CPU per call at {rate} calls/s for {secs} s")
        self.budget(4 * secs + 30, "caller")
        sp = self.sig_sipp_to_sipp(rate, secs)
        sc = self.sig_sipcheck_to("sipp", rate, secs)
        for name, r in (("SIPp uac -> SIPp uas", sp), ("sipcheck run -> SIPp uas", sc)):
            self.functional(r["ok"] == r["calls"] and r["failed"] == 0,
                            f"caller: {name} at {rate}/s: {r['ok']} of {r['calls']} calls "
                            f"passed, {r['failed']} failed")
        per = lambda r: r["caller_cpu_s"] / r["ok"] * 1e6 if r["ok"] else None  # noqa: E731
        self.row("caller", f"caller CPU per call, {rate}/s x {secs} s, 0-length calls (us)",
                 per(sc), per(sp), ("<=", 0.5))
        sys_per = lambda r: r["caller_sys_s"] / r["ok"] * 1e6 if r["ok"] else None  # noqa: E731
        self.row("caller", "  of which kernel (system) CPU per call (us)", sys_per(sc), sys_per(sp))
        self.budget_row("caller", per(sp), sys_per(sc))
        self.row("caller", "  calls passed (of %d)" % sc["calls"], sc["ok"], sp["ok"])
        self.row("caller", f"  caller wall time (s), load planned for {secs} s",
                 round(sc["elapsed_s"], 2), round(sp["elapsed_s"], 2))
        self.row("caller", "  late call starts (> 10 ms behind schedule) / max lag (ms)",
                 f"{fmt_num(sc['late_starts'])} / {fmt_num(sc['max_start_lag_ms'])}", None)
        self.row("caller", "  INVITE to 200 p99 from the scheduled start (ms)",
                 sc.get("invite_to_200_p99_ms"), None)
        for name, r in (("SIPp uac", sp), ("sipcheck run", sc)):
            if not self.sustained(r, secs):
                self.note(f"caller: {name} did not keep up with {rate}/s: {r['ok']} of "
                          f"{r['calls']} calls passed in {r['elapsed_s']:.1f} s for {secs} s "
                          f"of load; its CPU per call is still over the calls it completed")

    def budget_row(self, section, sipp_total, sipcheck_sys):
        """What a CPU target of 0.5 x SIPp leaves for sipcheck's user space per call, once
        sipcheck's own kernel time (its datagrams' sends and receives) is paid."""
        left = None
        if sipp_total is not None and sipcheck_sys is not None:
            left = round(0.5 * sipp_total - sipcheck_sys, 1)
        self.row(section, "  user CPU per call a 0.5 x SIPp target leaves (us): 0.5 x SIPp "
                 "- sipcheck's kernel", left, None)

    def sustained(self, r, secs):
        grace = 1.0 + 0.1 * secs
        return (r["ok"] == r["calls"] and r["failed"] == 0 and not r.get("timed_out")
                and r.get("not_started", 0) == 0 and r["elapsed_s"] <= secs + grace)

    def search(self, label, run_step):
        s = self.s
        secs = s["search_step_secs"]
        t0 = time.monotonic()
        steps = []
        best, worst = None, None
        rate = s["search_start"]

        def attempt(rate):
            if time.monotonic() - t0 + secs + 10 > s["search_cap"] or len(steps) >= s["search_steps"] + s["search_bisect"]:
                return None
            self.budget(secs + 15, f"maxrate {label}")
            r = run_step(rate, secs)
            ok = self.sustained(r, secs)
            steps.append(dict(rate=rate, sustained=ok, ok=r["ok"], failed=r["failed"],
                              calls=r["calls"], elapsed_s=round(r["elapsed_s"], 2),
                              late_starts=r.get("late_starts")))
            self.log(f"  {label} {rate}/s: {'sustained' if ok else 'NOT sustained'} "
                     f"({r['ok']}/{r['calls']} passed, {r['failed']} failed, "
                     f"{r['elapsed_s']:.1f} s for {secs} s)")
            return ok

        # Geometric steps: up from the start while sustained, or down while not.
        geometric = 0
        floor = max(1, s["search_start"] // s["search_factor"] ** 4)
        while geometric < s["search_steps"] and floor <= rate <= s["search_max_rate"]:
            ok = attempt(rate)
            geometric += 1
            if ok is None:
                break
            if ok:
                best = rate
                if worst is not None:
                    break
                rate = int(rate * s["search_factor"])
            else:
                worst = rate
                if best is not None:
                    break
                rate = int(rate / s["search_factor"])
        # Then bisection between the best rate sustained and the first one not sustained.
        for _ in range(s["search_bisect"]):
            if best is None or worst is None or worst - best <= max(50, best // 20):
                break
            mid = int(round((best + worst) / 2 / 100.0) * 100) or (best + worst) // 2
            ok = attempt(mid)
            if ok is None:
                break
            if ok:
                best = mid
            else:
                worst = mid
        return dict(max_sustained=best, first_failed=worst, steps=steps,
                    capped=worst is None)

    def section_maxrate(self):
        self.log("[maxrate] maximum sustained rate with 0 failed calls")
        sp = self.search("SIPp uac -> SIPp uas",
                         lambda rate, secs: self.sig_sipp_to_sipp(rate, secs, step=True))
        sc = self.search("sipcheck run -> sipcheck answer",
                         lambda rate, secs: self.sig_sipcheck_to("answer", rate, secs, step=True))
        self.details["maxrate"] = dict(sipp=sp, sipcheck=sc)
        for name, r in (("SIPp", sp), ("sipcheck", sc)):
            self.functional(r["max_sustained"] is not None,
                            f"maxrate: {name} sustained none of the rates tried: {r['steps']}")
        label = "max sustained calls/s, 0 failed (%ds steps)" % self.s["search_step_secs"]
        self.row("maxrate", label, sc["max_sustained"], sp["max_sustained"], (">=", 2))
        self.row("maxrate", "  first rate not sustained (- = none up to the cap)",
                 sc["first_failed"], sp["first_failed"])

    def section_responder(self):
        rate, secs = self.s["rate"], self.s["rate_secs"]
        self.log(f"[responder] responder CPU per call, SIPp uac at {rate} calls/s for {secs} s")
        self.budget(4 * secs + 30, "responder")
        sp = self.sig_sipp_to_sipp(rate, secs)
        sa = self.sig_sipp_to_answer(rate, secs)
        for name, r in (("SIPp uac -> SIPp uas", sp), ("SIPp uac -> sipcheck answer", sa)):
            self.functional(r["ok"] == r["calls"] and r["failed"] == 0,
                            f"responder: {name} at {rate}/s: {r['ok']} of {r['calls']} calls "
                            f"passed, {r['failed']} failed")
        per = lambda r: r["responder_cpu_s"] / r["ok"] * 1e6 if r["ok"] else None  # noqa: E731
        self.row("responder", f"responder CPU per call, SIPp uac {rate}/s x {secs} s (us)",
                 per(sa), per(sp), ("<=", 0.5))
        sys_per = lambda r: r["responder_sys_s"] / r["ok"] * 1e6 if r["ok"] else None  # noqa: E731
        self.row("responder", "  of which kernel (system) CPU per call (us)", sys_per(sa),
                 sys_per(sp))
        self.budget_row("responder", per(sp), sys_per(sa))
        self.row("responder", "  calls passed at the caller (of %d)" % sa["calls"],
                 sa["ok"], sp["ok"])

    def section_media(self):
        n = self.s["media_calls"]
        self.log(f"[media] {n} concurrent G.711 calls of ~{self.s['media_hold']} s")
        self.budget(3 * (self.s["media_hold"] + 20), "media")
        aa = self.media_sipcheck("answer", n)
        ae = self.media_sipcheck("sipp-echo", n)
        pp = self.media_sipp(n)
        self.functional(aa["ok"] == n and aa["audio_verified"] == n,
                        f"media: sipcheck run -> sipcheck answer: {aa['ok']} of {n} calls passed, "
                        f"{aa['audio_verified']} verified, failures {aa['failures']}")
        self.functional(ae["ok"] == n and ae["audio_verified"] == n,
                        f"media: sipcheck run -> SIPp uas -rtp_echo: {ae['ok']} of {n} calls "
                        f"passed, {ae['audio_verified']} verified, failures {ae['failures']}")
        self.functional(pp["ok"] == n and pp["failed"] == 0,
                        f"media: SIPp uac_pcap -> SIPp uas -rtp_echo: {pp['ok']} of {n} calls "
                        f"passed, {pp['failed']} failed")
        planned = self.s["media_hold"] + 1
        for name, r in (("sipcheck run -> answer", aa), ("sipcheck run -> SIPp uas -rtp_echo", ae)):
            length = (r.get("call_duration_p50_ms") or 0) / 1e3
            if length > 1.5 * planned:
                self.note(f"media: {name}: calls lasted {length:.1f} s (p50), planned ~{planned} s: "
                          f"its hang-up timers fell behind")
        sec = "media"
        self.row(sec, f"calls passed, run -> answer (of {n}) | SIPp: uac_pcap -> uas echo",
                 aa["ok"], pp["ok"], ("==", n), on="sipcheck")
        self.row(sec, "audio verified, run -> answer (calls)", aa["audio_verified"], None,
                 ("==", n), on="sipcheck")
        self.row(sec, "pacing lateness p50 (ms)", aa.get("lateness_p50_ms"), None)
        self.row(sec, "pacing lateness p99 (ms)", aa.get("lateness_p99_ms"), None, ("<", 1),
                 on="sipcheck", unit="ms")
        self.row(sec, "pacing lateness p99.9 (ms)", aa.get("lateness_p999_ms"), None, ("<", 5),
                 on="sipcheck", unit="ms")
        self.row(sec, "frames skipped (generator overrun), caller", aa["frames_skipped"], None,
                 ("==", 0), on="sipcheck")
        self.row(sec, "frames skipped, answer (sum over calls)",
                 aa.get("responder_frames_skipped"), None, ("==", 0), on="sipcheck")
        self.row(sec, "late call starts (> 10 ms behind schedule)", aa["late_starts"], None)
        self.row(sec, "caller CPU per media call (ms) | SIPp: uac_pcap",
                 aa["caller_cpu_s"] / n * 1e3, pp["caller_cpu_s"] / n * 1e3, ("<=", 0.5))
        self.row(sec, "  of which kernel (system) CPU (ms) | SIPp: uac_pcap",
                 aa["caller_sys_s"] / n * 1e3, pp["caller_sys_s"] / n * 1e3)
        self.row(sec, "responder CPU per media call (ms): answer | SIPp: uas -rtp_echo",
                 aa["responder_cpu_s"] / n * 1e3, pp["responder_cpu_s"] / n * 1e3, ("<=", 0.5))
        self.row(sec, "  of which kernel (system) CPU (ms) | SIPp: uas -rtp_echo",
                 aa["responder_sys_s"] / n * 1e3, pp["responder_sys_s"] / n * 1e3)
        self.row(sec, f"run -> SIPp uas -rtp_echo: calls passed (of {n})", ae["ok"], pp["ok"],
                 ("==", n), on="sipcheck")
        self.row(sec, "run -> SIPp uas -rtp_echo: own tone verified (calls)",
                 ae["audio_verified"], None, ("==", n), on="sipcheck")
        self.row(sec, "run -> SIPp uas -rtp_echo: lateness p99 / p99.9 (ms)",
                 f"{fmt_num(ae.get('lateness_p99_ms'))} / {fmt_num(ae.get('lateness_p999_ms'))}",
                 None)
        self.row(sec, "run -> SIPp uas -rtp_echo: caller CPU per call (ms)",
                 ae["caller_cpu_s"] / n * 1e3, pp["caller_cpu_s"] / n * 1e3, ("<=", 0.5))
        self.row(sec, "call length (s): p50 | SIPp: caller wall time minus ramp",
                 (aa.get("call_duration_p50_ms") or 0) / 1e3, pp["elapsed_s"] - n / pp["rate"])

    def section_memory(self):
        n = self.s["media_calls"]
        self.log(f"[memory] RSS per active media call ({n} calls) and per registered idle UA")
        aa = self.media_sipcheck("answer", n)
        pp = self.media_sipp(n)
        base = self.caller_baselines()
        per_run = (aa["caller_peak_kib"] - base["sipcheck_run_kib"]) / n
        per_uac = (pp["caller_peak_kib"] - base["sipp_uac_pcap_kib"]) / n
        self.row("memory", "RSS per active media call, caller (KiB) | SIPp: uac_pcap",
                 per_run, per_uac, ("<=", 64), on="sipcheck", unit="KiB")
        per_ans = ((aa["responder_peak_kib"] - aa["responder_idle_kib"]) / n
                   if aa["responder_idle_kib"] else None)
        per_uas = ((pp["responder_peak_kib"] - pp["responder_idle_kib"]) / n
                   if pp["responder_idle_kib"] else None)
        self.row("memory", "RSS per active media call, answer (KiB) | SIPp: uas -rtp_echo",
                 per_ans, per_uas, ("<=", 64), on="sipcheck", unit="KiB")
        self.row("memory", "  peak RSS, caller process (MiB)", aa["caller_peak_kib"] / 1024,
                 pp["caller_peak_kib"] / 1024)
        self.row("memory", "  peak RSS, responder process (MiB)",
                 aa["responder_peak_kib"] / 1024, pp["responder_peak_kib"] / 1024)
        big = self.s["reg_uas"]
        r_big = self.registered_idle(big)
        r_one = self.registered_idle(1)
        per_ua = (r_big["idle_rss_kib"] - r_one["idle_rss_kib"]) / (big - 1)
        self.details["registered_idle"] = dict(big=r_big, one=r_one)
        self.row("memory", f"RSS per registered idle UA, {big:,} UAs (KiB)", per_ua, None,
                 ("<=", 16), on="sipcheck", unit="KiB")
        self.row("memory", f"  RSS with {big:,} UAs registered / with 1 (MiB)",
                 f"{r_big['idle_rss_kib'] / 1024:.1f} / {r_one['idle_rss_kib'] / 1024:.1f}", None)

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
        self.log(f"[growth] media runs at {', '.join(map(str, sizes_))} concurrent calls")
        base = self.caller_baselines()
        first = {}
        for n in sizes_:
            self.budget(2 * (self.s["media_hold"] + 20), f"growth {n}")
            aa = self.media_sipcheck("answer", n)
            pp = self.media_sipp(n)
            self.functional(aa["ok"] == n and aa["audio_verified"] == n,
                            f"growth {n}: sipcheck run -> answer: {aa['ok']} of {n} passed, "
                            f"{aa['audio_verified']} verified")
            self.functional(pp["ok"] == n and pp["failed"] == 0,
                            f"growth {n}: SIPp uac_pcap -> uas echo: {pp['ok']} of {n} passed")
            cpu_c = (aa["caller_cpu_s"] / n * 1e3, pp["caller_cpu_s"] / n * 1e3)
            cpu_r = (aa["responder_cpu_s"] / n * 1e3, pp["responder_cpu_s"] / n * 1e3)
            rss_c = ((aa["caller_peak_kib"] - base["sipcheck_run_kib"]) / n,
                     (pp["caller_peak_kib"] - base["sipp_uac_pcap_kib"]) / n)
            rss_r = ((aa["responder_peak_kib"] - (aa["responder_idle_kib"] or 0)) / n,
                     (pp["responder_peak_kib"] - (pp["responder_idle_kib"] or 0)) / n)
            g = "growth"
            self.row(g, f"{n:>5} calls: calls passed (sipcheck: audio verified too)",
                     min(aa["ok"], aa["audio_verified"] or 0), pp["ok"], ("==", n),
                     on="sipcheck")
            self.row(g, f"{n:>5} calls: caller CPU per call (ms)", *cpu_c)
            self.row(g, f"{n:>5} calls: answer CPU per call (ms) | SIPp: uas echo", *cpu_r)
            self.row(g, f"{n:>5} calls: caller RSS per call (KiB)", *rss_c)
            self.row(g, f"{n:>5} calls: answer RSS per call (KiB) | SIPp: uas echo", *rss_r)
            if not first:
                first = dict(n=n, cpu_c=cpu_c, cpu_r=cpu_r, rss_c=rss_c, rss_r=rss_r)
            last = dict(n=n, cpu_c=cpu_c, cpu_r=cpu_r, rss_c=rss_c, rss_r=rss_r)
        if first and last["n"] != first["n"]:
            for key, what in (("cpu_c", "caller CPU"), ("cpu_r", "answer CPU"),
                              ("rss_c", "caller RSS"), ("rss_r", "answer RSS")):
                a = ratio(last[key][0], first[key][0])
                b = ratio(last[key][1], first[key][1])
                self.row(g, f"{what} per call, {last['n']} vs {first['n']} calls (x)", a, b,
                         ("<=", 1.5), on="sipcheck")

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
        body.append([r["section"], r["what"], fmt_num(r["sipcheck"]), fmt_num(r["sipp"]),
                     fmt_num(r["ratio"]), r["target"], met])
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) if body else len(head[i])
              for i in range(len(head))]
    align = ["<", "<", ">", ">", ">", "<", "<"]
    line = lambda cells: "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths))  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    return "\n".join(out)


def render_markdown(rows, info, smoke):
    out = ["# sipcheck vs SIPp, side by side", ""]
    out.append(f"- machine: {info['machine']['nproc']} CPUs, {info['machine']['cpu']}, "
               f"kernel {info['machine']['kernel']}, load average at start "
               f"{info['machine']['loadavg']}")
    out.append(f"- versions: {info['versions']['sipcheck']}; {info['versions']['sipp']}")
    out.append(f"- mode: {'smoke (tiny sizes, targets not judged)' if smoke else 'full'}; "
               f"ran {info['elapsed_s']:.0f} s")
    out += ["", "| section | what | sipcheck | SIPp | ratio | target | met |",
            "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        met = "n/a" if smoke and r["target"] != "-" else (
            "-" if r["met"] is None else ("yes" if r["met"] else "**no**"))
        cells = [r["section"], r["what"].strip(), fmt_num(r["sipcheck"]),
                 fmt_num(r["sipp"]), fmt_num(r["ratio"]), r["target"], met]
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

    bench = Bench(args)
    if args.budget_min:
        bench.s["budget_min"] = args.budget_min
        bench.deadline = bench.started + args.budget_min * 60
    info = dict(machine=machine(), versions=versions(args.sipcheck, args.sipp),
                mode="smoke" if args.smoke else "full", sizes=bench.s)
    print(f"machine: {info['machine']['nproc']} CPUs, {info['machine']['cpu']}, kernel "
          f"{info['machine']['kernel']}, load average {info['machine']['loadavg']}",
          file=sys.stderr)
    print(f"versions: {info['versions']['sipcheck']}; {info['versions']['sipp']}; "
          f"python {info['versions']['python']}", file=sys.stderr)
    print(f"logs: {bench.logdir}", file=sys.stderr)

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

    info.update(elapsed_s=time.monotonic() - bench.started, errors=bench.errors,
                notes=bench.notes)
    table = render_text(bench.rows, args.smoke)
    print()
    print(f"machine: {info['machine']['nproc']} x {info['machine']['cpu']}, kernel "
          f"{info['machine']['kernel']}")
    print(f"versions: {info['versions']['sipcheck']}; {info['versions']['sipp']}")
    print(f"mode: {info['mode']}{' (targets not judged)' if args.smoke else ''}; "
          f"{info['elapsed_s']:.0f} s")
    print(table)
    for n in bench.notes:
        print(f"note: {n}")
    for e in bench.errors:
        print(f"error: {e}")
    if args.json:
        doc = dict(info, rows=bench.rows, runs=bench.details)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2, default=str)
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
