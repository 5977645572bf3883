"""What the benchmark scripts share: the built binary, the servers they start and stop, and
the Go servers of seed 001 to compare against.

Imported by bench_serve.py and bench_load.py (run them from anywhere; they find this file
beside them).
"""

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPILLWAY = os.path.join(ROOT, "target", "release", "spillway")
GO_SRC = os.path.normpath(os.path.join(ROOT, "..", "shared", "anchors", "go-seed2"))
GO = "/usr/lib/go-1.19/bin/go"

GO_SERVERS_ABSENT = f"""\
note: the Go servers of seed 001 are skipped: {{why}}.
  They are the reference the README's serve table compares against. To include them:
  1. put the Go sources (main.go, go.mod of seed 001's HTTP service, the project's
     shared/anchors/go-seed2) at {GO_SRC}
     (the folder `shared/anchors/go-seed2` beside this repository's checkout);
  2. install Go 1.19: `apt-get install golang-1.19-go` (Debian), giving {GO};
  3. run this script again: it builds them into {tempfile.gettempdir()}/spillway-bench-seed2."""


def build_spillway():
    """Builds the release binary the scripts run."""
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "spillway-cli"], cwd=ROOT,
                   check=True)


def raise_nofile():
    """Raises the open-files soft limit to the hard limit: every connection is a descriptor."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def build_go_seed():
    """The path of seed 001's Go server, built from GO_SRC; None, saying why and how to get
    it, when the sources or Go are missing."""
    why = None
    if not os.path.isfile(os.path.join(GO_SRC, "main.go")):
        why = f"no Go sources at {GO_SRC}"
    elif not os.path.exists(GO):
        why = f"Go 1.19 is not installed ({GO} is missing)"
    if why:
        print(GO_SERVERS_ABSENT.format(why=why), file=sys.stderr)
        return None
    out = os.path.join(tempfile.gettempdir(), "spillway-bench-seed2")
    work = tempfile.mkdtemp()
    for f in os.listdir(GO_SRC):
        shutil.copy(os.path.join(GO_SRC, f), work)
    env = dict(os.environ, GOFLAGS="-mod=mod", GOCACHE=os.path.join(work, ".cache"))
    subprocess.run([GO, "build", "-o", out, "."], cwd=work, check=True, env=env)
    return out


class Server:
    """A server process listening on 127.0.0.1:port, in its own session so that stop() takes
    its children too."""

    def __init__(self, name, argv, port, settle=0.5):
        self.name = name
        self.settle = settle
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{name} did not start")

    def rss(self):
        """Resident and peak resident memory, in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            status = f.read()
        get = lambda k: int(re.search(rf"{k}:\s+(\d+) kB", status).group(1)) * 1024
        return get("VmRSS"), get("VmHWM")

    def peak_rss(self):
        return self.rss()[1]

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        time.sleep(self.settle)  # let TIME_WAIT sockets and memory settle between runs
