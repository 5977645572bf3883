#!/usr/bin/env python3
"""Several `spillway serve` instances behind a real load balancer (HAProxy or nginx), each on
its own host: Linux network namespaces joined by veth pairs to a bridge, so that every request
crosses a real network stack twice (client -> balancer -> instance).

    sudo python3 scripts/cluster.py                  # every scenario, with both balancers
    sudo python3 scripts/cluster.py --scenario 2 --balancer haproxy
    sudo python3 scripts/cluster.py --quick          # the test suite's short scenario 1

Hosts (namespaces, addresses on 10.77.0.0/24 inside them only; the machine's own network is
untouched): one client (10.77.0.2, runs `spillway load`), one balancer (10.77.0.3:8080), and
instances s1, s2, s3 (10.77.0.11-13:8080), joined by a bridge in a switch namespace. The
balancer configurations are deploy/haproxy.cfg and deploy/nginx.conf, with the lines marked
`# cluster.py: KEY` swapped for each variant measured.

Scenarios (every instance: `--mode pool --limit fixed`, W workers, a queue of W, 20 ms jobs
standing for a downstream call, so its capacity is about W / 20 ms; `--ready-max-shed 0.5`,
which only the `+ready` variants read):
  1. three equal instances, offered 3x the sum of their capacities (each measured alone
     first): cluster goodput against that sum, for each variant (VARIANTS below);
  2. unequal instances (s3 has a quarter of the workers), offered 1x and 3x their sum:
     each variant; retries per request;
  3. s1 gets SIGTERM (drain) and s2 SIGKILL during the run, each restarted 2 s later, with
     the shipped configurations and with rr+retry: requests lost, the client's counts against
     the instances' /metrics, time to recover;
  4. naive mode (no bound) against pool mode (4 workers each) in the same cluster, with jobs
     that also burn CPU, offered 3x the pools' nominal capacity, the shipped configurations.

Every run is bounded in time (--duration) and rate. Everything made is removed at the end,
also on Ctrl-C or failure. Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN), iproute2's
`ip netns`, and Debian's haproxy / nginx (`--install` gets them with apt-get). Results are
printed and written as JSON (--json), and at the end as the README's Markdown tables.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
NET = "10.77.0"
LB_ADDR = f"{NET}.3"
CLIENT_ADDR = f"{NET}.2"
PORT = 8080
WAIT_MS = 20
WORKERS = 12
INSTANCE_NAMES = ("s1", "s2", "s3")
S3_DURATION = 13.0
S4_WORKERS = 4
# Scenario 3 runs the shipped configurations, and last session's rr+retry for contrast;
# scenario 4 the shipped ones.
S3_VARIANTS = ("rr+retry", "shipped")
S4_VARIANT = "shipped"


class Refused(Exception):
    """The machine cannot run the cluster; the message says how to fix it."""


def run(argv, check=True, **kw):
    return subprocess.run(argv, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kw)


# ---- the machine: privileges and packages ----

PACKAGES = {"ip": "iproute2", "curl": "curl", "haproxy": "haproxy", "nginx": "nginx-light"}


def check_machine(balancers, install):
    """Refuses, saying how to fix it, without root, `ip netns` or the balancers' packages."""
    if os.geteuid() != 0:
        raise Refused("network namespaces need root: run `sudo python3 scripts/cluster.py ...`")
    missing = [cmd for cmd in ["ip", "curl", *balancers] if not shutil.which(cmd)]
    if missing and install:
        pkgs = [PACKAGES[m] for m in missing]
        print(f"installing {' '.join(pkgs)} with apt-get", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *pkgs],
                       check=True, env=env)
        missing = [cmd for cmd in missing if not shutil.which(cmd)]
    if missing:
        pkgs = " ".join(PACKAGES[m] for m in missing)
        raise Refused(f"missing {', '.join(missing)}: `apt-get install {pkgs}` "
                      f"(Debian), or run this script with --install")
    probe = f"spwprobe{os.getpid()}"
    made = run(["ip", "netns", "add", probe], check=False)
    if made.returncode != 0:
        raise Refused("cannot make a network namespace (`ip netns add` said: "
                      f"{made.stderr.strip()}); in a container, run it with --privileged "
                      "or CAP_SYS_ADMIN and CAP_NET_ADMIN")
    run(["ip", "netns", "del", probe], check=False)


# ---- the network: one namespace per host, veth pairs into a bridge ----

class Network:
    """The hosts, made by `up()` and removed by `down()` (deleting a namespace deletes its end
    of each veth pair, and the bridge with the switch namespace)."""

    def __init__(self):
        self.prefix = f"spw{os.getpid() % 100000}"
        self.switch = f"{self.prefix}-sw"
        self.made = []

    def ns(self, host):
        return f"{self.prefix}-{host}"

    def up(self, hosts):
        """hosts: {name: address}."""
        self._add(self.switch)
        sw = ["ip", "-n", self.switch]
        run([*sw, "link", "add", "br0", "type", "bridge"])
        run([*sw, "link", "set", "br0", "up"])
        for i, (host, addr) in enumerate(hosts.items()):
            ns = self.ns(host)
            self._add(ns)
            port = f"p{i}"
            run([*sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run([*sw, "link", "set", port, "master", "br0", "up"])
            run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _add(self, ns):
        run(["ip", "netns", "add", ns])
        self.made.append(ns)

    def down(self):
        for ns in reversed(self.made):
            run(["ip", "netns", "del", ns], check=False)
        self.made.clear()

    def exec(self, host, argv):
        return ["ip", "netns", "exec", self.ns(host), *argv]


# ---- processes: instances, balancer, client ----

class Processes:
    """Every process started, each in its own session; `stop_all()` ends them."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv, cwd=None):
        log = open(os.path.join(self.workdir, f"{name}.log"), "a")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True)
        proc.log_path = log.name
        self.procs.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, wait=5.0):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self):
        for proc in reversed(self.procs):
            try:
                self.stop(proc, signal.SIGKILL, 2.0)
            except ProcessLookupError:
                pass
        self.procs.clear()


class Cluster:
    """The instances, the balancer and the client on a Network."""

    def __init__(self, binary, net, procs):
        self.binary = binary
        self.net = net
        self.procs = procs
        self.instances = {}
        self.workers = {}
        self.balancer = None
        self.stats_file = None

    def fetch(self, url, timeout=2.0):
        """GET url from the client host; the body, or None."""
        argv = ["curl", "-sf", "-m", str(timeout), *url.split()]
        got = run(self.net.exec("client", argv), check=False)
        return got.stdout if got.returncode == 0 else None

    def wait_up(self, url, what, seconds=10.0):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.fetch(url, 0.5) is not None:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{what} did not answer {url} within {seconds:.0f}s "
                           f"(logs in {self.procs.workdir})")

    def start_instance(self, name, workers, mode="pool", cpu_ms=0):
        addr = instance_addr(name)
        argv = [self.binary, "serve", "--addr", f"{addr}:{PORT}", "--instance", name,
                "--mode", mode, "--wait-ms", str(WAIT_MS), "--cpu-ms", str(cpu_ms),
                "--max-workers", str(workers), "--min-workers", str(workers),
                "--queue", str(workers), "--limit", "fixed", "--drain-timeout", "5s",
                "--ready-max-shed", str(READY_MAX_SHED)]
        proc = self.procs.start(name, self.net.exec(name, argv))
        self.instances[name] = proc
        self.workers[name] = workers
        self.wait_up(f"http://{addr}:{PORT}/healthz", f"instance {name}")
        return proc

    def start_balancer(self, kind, variant, names, label):
        conf_dir = tempfile.mkdtemp(prefix=f"{kind}-", dir=self.procs.workdir)
        os.makedirs(os.path.join(conf_dir, "tmp"))
        if kind == "haproxy":
            conf = render(os.path.join(DEPLOY, "haproxy.cfg"), haproxy_edits(variant, self.workers_of(names)))
            path = write(conf_dir, "haproxy.cfg", conf)
            argv = ["haproxy", "-f", path, "-db"]
        else:
            conf = render(os.path.join(DEPLOY, "nginx.conf"), nginx_edits(variant, self.workers_of(names)))
            path = write(conf_dir, "nginx.conf", conf)
            argv = ["nginx", "-p", conf_dir + "/", "-c", path, "-g", "daemon off;"]
        self.balancer = self.procs.start(f"balancer-{label}", self.net.exec("lb", argv),
                                         cwd=conf_dir)
        self.balancer.kind = kind
        self.balancer.access_log = os.path.join(conf_dir, "access.log")
        self.wait_up(f"http://{LB_ADDR}:{PORT}/healthz", kind)
        time.sleep(1.2)  # HAProxy's first health checks (rise 2, inter 500ms)

    def workers_of(self, names):
        return {n: self.workers[n] for n in names}

    def load(self, url, rate, duration, name):
        out = os.path.join(self.procs.workdir, f"{name}.json")
        connections = max(64, min(2000, int(rate * 0.1)))
        argv = [self.binary, "load", "--rate", str(rate), "--duration", f"{duration}s",
                "--connections", str(connections), "--timeout", "2s", "--quiet",
                "--json", out, url]
        proc = self.procs.start(f"load-{name}", self.net.exec("client", argv))
        return proc, out

    def connections_opened(self, host):
        """TCP connections a host has opened so far (ActiveOpens in its /proc/net/snmp)."""
        got = run(self.net.exec(host, ["cat", "/proc/net/snmp"]), check=False)
        tcp = [line.split() for line in got.stdout.splitlines() if line.startswith("Tcp:")]
        return int(tcp[1][tcp[0].index("ActiveOpens")]) if len(tcp) >= 2 else 0

    def instance_seen(self):
        """The x-spillway-instance header of one /healthz answer through the balancer."""
        head = self.fetch(f"http://{LB_ADDR}:{PORT}/healthz -o /dev/null -D -") or ""
        m = re.search(r"^x-spillway-instance: (\S+)", head, re.M | re.I)
        return m[1] if m else None

    def work_counts(self, name):
        """An instance's /work answers so far, by class, from its /metrics ({} if down)."""
        text = self.fetch(f"http://{instance_addr(name)}:{PORT}/metrics") or ""
        counts = {}
        for m in re.finditer(r'^spillway_http_request_duration_seconds_count\{class="([^"]+)"\}'
                             r' (\S+)$', text, re.M):
            counts[m[1]] = int(float(m[2]))
        return counts


def instance_addr(name):
    return f"{NET}.{10 + int(name[1:])}"


def write(folder, name, text):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def render(template, edits):
    """The template with the line after each `# cluster.py: KEY` marker replaced by
    edits[KEY] (a list of lines; the `servers` marker replaces every server line after it)."""
    out, lines, i = [], open(template).read().splitlines(), 0
    seen = set()
    while i < len(lines):
        line = lines[i]
        out.append(line)
        m = re.match(r"\s*# cluster\.py: (\w+)$", line)
        if m and m[1] in edits:
            seen.add(m[1])
            indent = re.match(r"\s*", line)[0]
            i += 1
            while m[1] == "servers" and i + 1 < len(lines) and "server " in lines[i + 1]:
                i += 1
            out.extend(indent + new for new in edits[m[1]])
        i += 1
    if seen != set(edits):
        raise RuntimeError(f"{template}: no marker for {sorted(set(edits) - seen)}")
    return "\n".join(out) + "\n"


# Variants: the balancing rule, whether a 503 is retried once on another instance, whether
# the balancer itself holds each instance to its workers + queue (HAProxy's per-server maxconn,
# its queue timed out after 50 ms with its own 503), and what the health check reads: /healthz
# every 500 ms, or /readyz every 100 ms (503 while the instance sheds more than half of its
# requests over the last second; HAProxy only: open-source nginx has no active checks).
# "shipped" is deploy/haproxy.cfg or deploy/nginx.conf exactly as in the repository.
VARIANTS = {
    "rr": ("roundrobin", False, False, "/healthz"),
    "rr+retry": ("roundrobin", True, False, "/healthz"),
    "leastconn": ("leastconn", False, False, "/healthz"),
    "leastconn+retry": ("leastconn", True, False, "/healthz"),
    "leastconn+maxconn": ("leastconn", False, True, "/healthz"),
    "rr+ready": ("roundrobin", False, False, "/readyz"),
    "leastconn+ready": ("leastconn", False, False, "/readyz"),
    "shipped": None,
}
READY_MAX_SHED = 0.5


def haproxy_only(variant):
    spec = VARIANTS[variant]
    return spec is not None and (spec[2] or spec[3] == "/readyz")


def shipped_servers(template, workers, line):
    """The template's server lines, one per instance in `workers`, with the options of its
    first server line (HAProxy's maxconn set to each instance's workers + queue)."""
    first = next(l.strip() for l in open(template) if re.match(r"\s*server ", l))
    opts = first.split(f":{PORT}", 1)[1].rstrip(";")
    return [line(n, re.sub(r"maxconn \d+", f"maxconn {2 * workers[n]}", opts)) for n in workers]


def haproxy_edits(variant, workers):
    if VARIANTS[variant] is None:
        return {"servers": shipped_servers(
            os.path.join(DEPLOY, "haproxy.cfg"), workers,
            lambda n, opts: f"server {n} {instance_addr(n)}:{PORT}{opts}")}
    balance, retry, maxconn, check = VARIANTS[variant]
    cap = lambda n: f" maxconn {2 * workers[n]}" if maxconn else ""
    inter = "100ms" if check == "/readyz" else "500ms"
    return {
        "balance": [f"balance {balance}"],
        "retry": ["retry-on conn-failure empty-response 503" if retry else "retry-on none"],
        "retries": ["retries 1" if retry else "retries 0"],
        "redispatch": ["option redispatch 1" if retry else "no option redispatch"],
        "queue": ["timeout queue 50ms"],
        "check": [f"option httpchk GET {check}"],
        "inter": [f"default-server inter {inter} fall 2 rise 2 check"],
        "servers": [f"server {n} {instance_addr(n)}:{PORT}{cap(n)}" for n in workers],
    }


def nginx_edits(variant, workers):
    if VARIANTS[variant] is None:
        return {"servers": shipped_servers(
            os.path.join(DEPLOY, "nginx.conf"), workers,
            lambda n, opts: f"server {instance_addr(n)}:{PORT}{opts};")}
    if haproxy_only(variant):
        raise ValueError("open-source nginx has no queue for max_conns nor active health "
                         "checks: HAProxy only")
    balance, retry, _, _ = VARIANTS[variant]
    return {
        "balance": ["least_conn;" if balance == "leastconn" else "# round robin"],
        "retry": ["proxy_next_upstream error timeout http_503;" if retry
                  else "proxy_next_upstream off;"],
        "retries": [f"proxy_next_upstream_tries {2 if retry else 1};"],
        "servers": [f"server {instance_addr(n)}:{PORT} max_fails=0;" for n in workers],
    }


# ---- what a run measured ----

def summarize(load_json, counts, duration):
    """Goodput, shed and failures at the client; attempts at the instances."""
    with open(load_json) as f:
        rep = json.load(f)
    st = {int(k): v for k, v in rep["statuses"].items()}
    ok = sum(v for k, v in st.items() if 200 <= k < 300)
    shed = st.get(503, 0)
    # Answers may come after the run's last send (up to the client's timeout): goodput is
    # over the whole span, which undercounts a clean run by its last answer's latency.
    span = max(duration, rep["elapsed_s"])
    failed = sum(st.values()) - ok - shed + rep["connect_errors"] + rep["timeouts"] \
        + rep["other_errors"]
    attempts = sum(sum(c.values()) for c in counts.values())
    inst_ok = sum(c.get("2xx", 0) for c in counts.values())
    return {
        "offered_per_s": rep["offered_rate"], "scheduled": rep["scheduled"],
        "goodput_per_s": round(ok / span, 1), "ok": ok, "shed_503": shed,
        "failed": failed, "statuses": rep["statuses"], "timeouts": rep["timeouts"],
        "errors": rep["connect_errors"] + rep["other_errors"],
        "p99_ok_ms": rep["latency"]["2xx"].get("p99_ms"),
        "instance_attempts": attempts, "instance_ok": inst_ok,
        "instance_attempts_per_request": round(attempts / max(1, rep["scheduled"]), 3),
        "per_instance": counts, "series": rep.get("series", []),
        "unaccounted": rep["scheduled"] - ok - shed - failed,
        "elapsed_s": round(rep["elapsed_s"], 2), "send_lag_p99_ms": rep["send_lag_p99_ms"],
    }


def balancer_log(balancer):
    """What the balancer itself logged: requests, retries (HAProxy's %rc, nginx's
    comma-separated $upstream_status), HAProxy's termination states other than "--" and its own
    answers for want of a server (<NOSRV>), and its health checks taking servers out."""
    path = balancer.access_log if balancer.kind == "nginx" else balancer.log_path
    retries = requests = nosrv = downs = 0
    endings = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if balancer.kind == "nginx" and len(parts) >= 2:
                    requests += 1
                    retries += parts[1].count(",")
                elif len(parts) >= 4 and parts[0].isdigit():
                    requests += 1
                    retries += int(parts[1].lstrip("+") or 0)
                    nosrv += parts[2] == "<NOSRV>" and parts[0] == "503"
                    if len(parts) >= 5 and parts[4] != "--":
                        endings[parts[4]] = endings.get(parts[4], 0) + 1
                elif line.startswith("Server ") and " is DOWN" in line:
                    downs += 1
    except OSError:
        pass
    return {"balancer_logged": requests, "balancer_retries": retries,
            "retries_per_request": round(retries / max(1, requests), 3),
            "balancer_no_server": nosrv, "servers_taken_out": downs,
            "balancer_endings": endings}


# ---- scenarios ----

class Experiment:
    def __init__(self, args, cluster):
        self.args = args
        self.c = cluster
        self.results = []

    def record(self, row):
        self.results.append(row)
        series = row.pop("series", None)
        print(json.dumps(row), flush=True)
        row["series"] = series

    def instances(self, workers, mode="pool", cpu_ms=0):
        for proc in list(self.c.instances.values()):
            self.c.procs.stop(proc)
        self.c.instances.clear()
        for name, w in workers.items():
            self.c.start_instance(name, w, mode, cpu_ms)

    def capacity(self, name, workers):
        """Goodput of one instance alone, offered 2x its nominal capacity."""
        nominal = workers * 1000 / WAIT_MS
        url = f"http://{instance_addr(name)}:{PORT}/work"
        dur = self.args.capacity_duration
        proc, out = self.c.load(url, 2 * nominal, dur, f"capacity-{name}")
        wait_load(proc, dur)
        ok = summarize(out, {}, dur)["goodput_per_s"]
        print(f"capacity of {name} ({workers} workers): {ok}/s", flush=True)
        return ok

    def through(self, kind, variant, names, rate, label, events=None, duration=None):
        """One bounded run through the balancer; events(t0, duration) runs while the load
        does and may return the victims' counts read just before their signals."""
        if self.c.balancer is not None:
            self.c.procs.stop(self.c.balancer)
        self.c.start_balancer(kind, variant, names, label)
        seen = self.c.instance_seen()
        before = {n: self.c.work_counts(n) for n in names}
        opened = self.c.connections_opened("lb")
        dur = duration or self.args.duration
        proc, out = self.c.load(f"http://{LB_ADDR}:{PORT}/work", rate, dur, label)
        extra = events(time.time(), dur) if events else {}
        wait_load(proc, dur)
        time.sleep(0.3)
        after = {n: self.c.work_counts(n) for n in names}
        # A restarted instance's counters start again at zero: add its last reading.
        pre = extra.pop("pre_signal", {})
        counts = {n: add(diff(pre[n], before[n]), after[n]) if n in pre
                  else diff(after[n], before[n]) for n in names}
        row = summarize(out, counts, dur)
        row.update(balancer_log(self.c.balancer))
        # Includes its health checks (a few per second).
        row["balancer_connections_per_request"] = round(
            (self.c.connections_opened("lb") - opened) / max(1, row["scheduled"]), 3)
        row.update(extra, instance_seen_through_balancer=seen)
        return row

    def variants(self, kind, chosen):
        return [v for v in chosen if kind == "haproxy" or not haproxy_only(v)]

    def scenario1(self, kind, names):
        workers = {n: WORKERS for n in names}
        self.instances(workers)
        caps = {n: self.capacity(n, w) for n, w in workers.items()}
        total = sum(caps.values())
        for variant in self.variants(kind, self.args.s1_variants):
            row = self.through(kind, variant, names, 3 * total, f"s1-{kind}-{variant}")
            row.update(scenario=1, balancer=kind, variant=variant, capacities=caps,
                       capacity_sum=total,
                       goodput_of_sum=round(row["goodput_per_s"] / total, 3))
            self.record(row)

    def scenario2(self, kind):
        workers = {"s1": WORKERS, "s2": WORKERS, "s3": WORKERS // 4}
        self.instances(workers)
        caps = {n: self.capacity(n, w) for n, w in workers.items()}
        total = sum(caps.values())
        for times, variant in ((t, v) for t in self.args.s2_overloads
                               for v in self.variants(kind, self.args.s2_variants)):
            row = self.through(kind, variant, list(workers), times * total,
                               f"s2-{kind}-{variant}-{times}x")
            row.update(scenario=2, balancer=kind, variant=variant, capacities=caps,
                       capacity_sum=total, offered_x=times,
                       goodput_of_sum=round(row["goodput_per_s"] / total, 3))
            self.record(row)

    def scenario3(self, kind):
        names = list(INSTANCE_NAMES)
        nominal = len(names) * WORKERS * 1000 / WAIT_MS
        rate = round(0.8 * nominal)
        for variant in self.args.s3_variants:
            self.instances({n: WORKERS for n in names})
            row = self.through(kind, variant, names, rate, f"s3-{kind}-{variant}",
                               events=self.kill_and_restart, duration=S3_DURATION)
            row.update(scenario=3, balancer=kind, variant=variant)
            row["recovery_s"] = recovery(row["series"], row["events"])
            self.record(row)

    def kill_and_restart(self, t0, duration):
        """s1: SIGTERM at 3 s (it drains), back at 5 s; s2: SIGKILL at 8 s, back at 10 s.
        Each victim's /metrics is read just before its signal: what it answered after that
        (a drain's last answers, or a killed instance's last milliseconds) is in no scrape."""
        pre, events = {}, []
        for name, sig, at in (("s1", signal.SIGTERM, 3), ("s2", signal.SIGKILL, 8)):
            sleep_until(t0 + at)
            pre[name] = self.c.work_counts(name)
            proc = self.c.instances[name]
            os.killpg(proc.pid, sig)
            event = {"instance": name, "signal": sig.name, "at_s": round(time.time() - t0, 2)}
            proc.wait(10)
            sleep_until(t0 + at + 2)
            self.c.start_instance(name, WORKERS)
            event["back_at_s"] = round(time.time() - t0, 2)
            events.append(event)
        return {"events": events, "pre_signal": pre}

    def scenario4(self, kind, names):
        """Jobs that burn CPU too, and few enough workers that the pools fit the machine: the
        instances share its cores, as hosts would not."""
        workers = S4_WORKERS
        nominal = len(names) * workers * 1000 / (WAIT_MS + self.args.cpu_ms)
        for mode in ("pool", "naive"):
            self.instances({n: workers for n in names}, mode, cpu_ms=self.args.cpu_ms)
            row = self.through(kind, S4_VARIANT, names, 3 * nominal, f"s4-{kind}-{mode}")
            row.update(scenario=4, balancer=kind, variant=S4_VARIANT, mode=mode,
                       cpu_ms=self.args.cpu_ms, workers=workers, nominal_sum=round(nominal),
                       goodput_of_sum=round(row["goodput_per_s"] / nominal, 3))
            self.record(row)


def add(a, b):
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


def diff(after, before):
    return {k: v - before.get(k, 0) for k, v in after.items()}


def sleep_until(t):
    time.sleep(max(0.0, t - time.time()))


def wait_load(proc, duration):
    try:
        proc.wait(duration + 30)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"spillway load did not end within {duration + 30}s "
                           f"(log: {proc.log_path})")
    if proc.returncode != 0:
        raise RuntimeError(f"spillway load failed (log: {proc.log_path})")


def recovery(series, events):
    """Seconds from each restart until goodput per second is back to 90% of the seconds
    before the first signal; None when it never was within the run."""
    if not series or not events:
        return None
    ok = [s["ok"] for s in series]
    first = int(events[0]["at_s"])
    base = sorted(ok[:max(1, first)])[len(ok[:max(1, first)]) // 2]
    out = []
    for ev in events:
        back = int(ev["back_at_s"])
        again = next((s for s in range(back, len(ok)) if ok[s] >= 0.9 * base), None)
        out.append(None if again is None else max(0, again - back + 1))
    return out


# ---- the README's tables ----

def pct(x):
    return "" if x is None else f"{100 * x:.0f}%"


def num(x):
    return "" if x is None else f"{x:,.0f}"


def failed_text(r):
    """Failures at the client: statuses other than 2xx and 503, timeouts, errors."""
    bad = {k: v for k, v in r["statuses"].items() if not k.startswith("2") and k != "503"}
    parts = [f"{v:,} {k}s" for k, v in sorted(bad.items())]
    if r["timeouts"]:
        parts.append(f"{r['timeouts']:,} timeouts")
    if r["errors"]:
        parts.append(f"{r['errors']:,} errors")
    return ", ".join(parts) or "0"


def balancer_text(r):
    """HAProxy's health checks taking a server out, and its own 503s (no server up, or a
    request that waited `timeout queue` for a server's maxconn); nothing for nginx."""
    if r["balancer"] != "haproxy":
        return ""
    return f"{r['servers_taken_out']} / {r['balancer_no_server']:,}"


def table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def tables(results):
    """Markdown tables of every scenario run, as the README shows them."""
    out = []
    by = lambda n: [r for r in results if r["scenario"] == n]
    if by(1):
        out.append("Scenario 1 (capacities: " + "; ".join(sorted(
            {f"{r['balancer']} {num(r['capacity_sum'])}/s" for r in by(1)})) + ")")
        out.append(table(
            ["balancer", "variant", "goodput/s", "of the sum", "retries per request",
             "new connections to the instances per request", "failed at the client",
             "p99 of 2xx", "HAProxy: servers taken out / its own 503s"],
            [[r["balancer"], f"`{r['variant']}`", num(r["goodput_per_s"]),
              pct(r["goodput_of_sum"]), r["retries_per_request"],
              r["balancer_connections_per_request"], failed_text(r),
              f"{num(r['p99_ok_ms'])} ms", balancer_text(r)] for r in by(1)]))
    if by(2):
        out.append("Scenario 2 (capacities: " + "; ".join(sorted(
            {f"{r['balancer']} {num(r['capacity_sum'])}/s" for r in by(2)})) + ")")
        rows = {}
        for r in by(2):
            rows.setdefault((r["balancer"], r["variant"]), {})[r["offered_x"]] = r
        out.append(table(
            ["balancer", "variant", "1x: of the sum", "retries per request", "failed",
             "3x: of the sum", "retries per request", "failed",
             "HAProxy: servers taken out / its own 503s (1x; 3x)"],
            [[b, f"`{v}`", *[c for x in (1, 3) for c in (
                (pct(runs[x]["goodput_of_sum"]), runs[x]["retries_per_request"],
                 failed_text(runs[x])) if x in runs else ("", "", ""))],
              "; ".join(balancer_text(runs[x]) for x in (1, 3) if x in runs).strip("; ")]
             for (b, v), runs in rows.items()]))
    if by(3):
        out.append("Scenario 3")
        out.append(table(
            ["balancer", "variant", "scheduled", "2xx", "503", "failed at the client",
             "2xx by the instances' /metrics", "back to full goodput after restart",
             "HAProxy's endings other than --"],
            [[r["balancer"], f"`{r['variant']}`", num(r["scheduled"]), num(r["ok"]),
              num(r["shed_503"]), failed_text(r), num(r["instance_ok"]),
              ", ".join("never" if s is None else f"{s} s" for s in r["recovery_s"] or []),
              " ".join(f"{k}:{v}" for k, v in sorted(r["balancer_endings"].items()))]
             for r in by(3)]))
    if by(4):
        out.append("Scenario 4")
        out.append(table(
            ["balancer", "mode", "goodput/s", "of the pools' nominal", "503",
             "failed at the client", "p99 of 2xx"],
            [[r["balancer"], r["mode"], num(r["goodput_per_s"]), pct(r["goodput_of_sum"]),
              num(r["shed_503"]), failed_text(r), f"{num(r['p99_ok_ms'])} ms"]
             for r in by(4)]))
    return "\n\n".join(out)


# ---- main ----

def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "spillway"),
                   help="the spillway binary (default: target/release/spillway)")
    p.add_argument("--balancer", choices=["haproxy", "nginx", "both"], default="both")
    p.add_argument("--scenario", default="1,2,3,4", help="comma list of 1,2,3,4")
    p.add_argument("--duration", type=float, default=8.0,
                   help="seconds of load per run (at most 60)")
    p.add_argument("--capacity-duration", type=float, default=3.0,
                   help="seconds of load to measure each instance alone")
    p.add_argument("--cpu-ms", type=float, default=1.0,
                   help="CPU each job burns in scenario 4")
    p.add_argument("--variants", help="comma list of the variants scenarios 1-3 run: "
                   + ", ".join(VARIANTS) + " (default: a set for each scenario; nginx skips "
                   "leastconn+maxconn and the +ready ones)")
    p.add_argument("--quick", action="store_true",
                   help="the test suite's run: scenario 1, two instances, HAProxy, short")
    p.add_argument("--install", action="store_true",
                   help="apt-get install what is missing (iproute2, haproxy, nginx-light)")
    p.add_argument("--json", help="write every run's results here")
    args = p.parse_args()
    if not 1 <= args.duration <= 60 or not 1 <= args.capacity_duration <= 60:
        p.error("--duration and --capacity-duration must be from 1 to 60 seconds")
    scenarios = args.scenario.split(",")
    if any(s not in ("1", "2", "3", "4") for s in scenarios):
        p.error(f"--scenario {args.scenario!r}: a comma list of 1, 2, 3 and 4")
    if args.variants and any(v not in VARIANTS for v in args.variants.split(",")):
        p.error(f"--variants {args.variants!r}: a comma list of {', '.join(VARIANTS)}")
    args.s1_variants = ["rr", "rr+retry", "leastconn+maxconn", "rr+ready", "shipped"]
    args.s2_variants = ["rr", "rr+retry", "leastconn", "leastconn+maxconn", "rr+ready",
                        "leastconn+ready", "shipped"]
    args.s3_variants = list(S3_VARIANTS)
    args.s2_overloads = [1, 3]
    if args.variants:
        args.s1_variants = args.s2_variants = args.s3_variants = args.variants.split(",")
    if args.quick:
        args.balancer, args.scenario = "haproxy", "1"
        args.duration, args.capacity_duration = 3.0, 2.0
        args.s1_variants = ["shipped"]
    return args


def interrupted(_signum, _frame):
    """SIGTERM ends the run as Ctrl-C does: through the teardown."""
    raise KeyboardInterrupt


def main():
    args = parse_args()
    balancers = ["haproxy", "nginx"] if args.balancer == "both" else [args.balancer]
    scenarios = {int(s) for s in args.scenario.split(",")}
    try:
        check_machine(balancers, args.install)
        if not os.access(args.binary, os.X_OK):
            raise Refused(f"no spillway binary at {args.binary}: "
                          "`cargo build --release -p spillway-cli`, or pass --binary")
    except Refused as why:
        print(f"cluster.py: cannot run: {why}", file=sys.stderr)
        return 2
    names = list(INSTANCE_NAMES[:2] if args.quick else INSTANCE_NAMES)
    workdir = tempfile.mkdtemp(prefix="spillway-cluster-")
    net, procs = Network(), Processes(workdir)
    signal.signal(signal.SIGTERM, interrupted)
    exp = None
    started = time.time()
    load_before = os.getloadavg()
    try:
        net.up({"client": CLIENT_ADDR, "lb": LB_ADDR,
                **{n: instance_addr(n) for n in INSTANCE_NAMES}})
        exp = Experiment(args, Cluster(args.binary, net, procs))
        for kind in balancers:
            if 1 in scenarios:
                exp.scenario1(kind, names)
            if 2 in scenarios:
                exp.scenario2(kind)
            if 3 in scenarios:
                exp.scenario3(kind)
            if 4 in scenarios:
                exp.scenario4(kind, names)
    except KeyboardInterrupt:
        print("cluster.py: interrupted; tearing down", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        net.down()
        if exp and args.json:
            with open(args.json, "w") as f:
                json.dump(exp.results, f, indent=1)
        if exp and exp.results:
            print("\n" + tables(exp.results) + "\n")
        load = ", ".join(f"{a:.1f}" for a in (*load_before, *os.getloadavg()))
        print(f"took {time.time() - started:.0f} s; load average (1, 5, 15 min) at the start "
              f"and the end: {load}", file=sys.stderr)
        print(f"logs: {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
