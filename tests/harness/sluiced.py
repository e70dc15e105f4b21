# SPDX-License-Identifier: Apache-2.0
"""A real sluiced for the Python tests, driven with sluicectl.

The end-to-end tests (controlplane_e2e.py, dpdk_*_test.py, e2e_docs.py and
the XDP tests through xdp_util.py) each need a sluiced of their own: a
private socket, state dir, log and shared-memory segment in the test's temp
dir, optionally in a network namespace, started, waited for, driven and torn
down. This is the one definition they share, so a change to how sluiced is
started or stopped is made once.

The build dir is passed in (the scripts read it from argv at run time);
nothing here reads a global.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request


def wait_for(cond, timeout, what, step=0.05):
    """cond()'s first true value within `timeout` seconds, polled every
    `step`; else an AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def exit_counters(stdout):
    """The `name value` lines a dataplane prints on exit (sluice-dpdk,
    sluice-xdp --pcap, tests/unit/decide_runner)."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+) (\d+)$", stdout, re.M)}


def kept_table_dirs():
    """Where sluice-dpdk keeps its connection tables by default
    (dataplane/ct_store.h): /dev/shm and every hugetlbfs mount."""
    dirs = ["/dev/shm"]
    try:
        with open("/proc/mounts") as f:
            dirs += [line.split()[1] for line in f if line.split()[2] == "hugetlbfs"]
    except OSError:
        pass
    return dirs


def remove_kept_tables(shm):
    """Removes the connection tables sluice-dpdk kept for segment SHM: a
    test's segment is its own, and its tables would outlive it."""
    for d in kept_table_dirs():
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            if n.startswith(f"sluice-ct.{shm}."):
                try:
                    os.unlink(os.path.join(d, n))
                except OSError:
                    pass


def free_port():
    """A localhost TCP port nobody listens on now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Sluiced:
    """sluiced on NAME.sock, NAME-state/, NAME.log (and NAME.yaml for
    config_text) in `tmp`, with the segment /dev/shm/sluice-NAME-PID-N.

    config: a configuration file's path; config_text: its text, written to
    NAME.yaml; neither: sluiced starts empty. netns: run it with
    `ip netns exec NETNS` (which execs, so signals reach sluiced). metrics:
    serve /metrics on a free localhost port (metrics_port, metrics()).
    worker_timeout_ms: --worker-timeout-ms, when given. ctl_args: options
    put before every sluicectl command. start: start now (the default);
    start() may be called again after kill(), with the same state dir."""

    START_TIMEOUT_S = 20
    STOP_TIMEOUT_S = 15
    _instances = 0

    def __init__(self, build, tmp, name="sluiced", *, config=None, config_text=None, netns=None,
                 metrics=False, worker_timeout_ms=None, ctl_args=(), start=True):
        assert config is None or config_text is None, "config or config_text, not both"
        self.build = build
        self.tmp = tmp
        self.name = name
        self.netns = netns
        self.sock = os.path.join(tmp, f"{name}.sock")
        self.state = os.path.join(tmp, f"{name}-state")
        self.log_path = os.path.join(tmp, f"{name}.log")
        # Unique per process and instance: tests run in parallel, and one
        # test may hold several.
        Sluiced._instances += 1
        self.shm = f"sluice-{name}-{os.getpid()}-{Sluiced._instances}"
        self.config = config
        if config_text is not None:
            self.config = os.path.join(tmp, f"{name}.yaml")
            with open(self.config, "w") as f:
                f.write(config_text)
        self.metrics_port = free_port() if metrics else None
        self.worker_timeout_ms = worker_timeout_ms
        self.ctl_args = [str(a) for a in ctl_args]
        self.proc = None
        self.log = None
        if start:
            self.start()

    def exe(self, rel):
        return os.path.join(self.build, rel)

    def args(self):
        args = [self.exe("controlplane/sluiced/sluiced"), "--shm", self.shm, "--socket", self.sock,
                "--state-dir", self.state]
        if self.metrics_port is not None:
            args += ["--metrics", f"127.0.0.1:{self.metrics_port}"]
        if self.worker_timeout_ms is not None:
            args += ["--worker-timeout-ms", str(self.worker_timeout_ms)]
        if self.config:
            args += ["--config", self.config]
        if self.netns:
            args = ["ip", "netns", "exec", self.netns] + args
        return args

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def start(self):
        """Starts sluiced and waits until `sluicectl status` answers. If it
        exits first or never answers: stops it and raises, with its log."""
        if self.log and not self.log.closed:
            self.log.close()
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args(), stdout=self.log, stderr=self.log)
        try:
            deadline = time.monotonic() + self.START_TIMEOUT_S
            while time.monotonic() < deadline and self.alive():
                if self.ctl("status")[0] == 0:
                    return self
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        why = "exited" if not self.alive() else f"did not answer in {self.START_TIMEOUT_S}s"
        self.stop()
        raise AssertionError(f"sluiced {why}: {' '.join(self.args())}\n{self.log_text()}")

    def ctl(self, *args, stdin=None):
        """sluicectl ARGS on this sluiced's socket (unless ARGS name one): (rc, stdout, stderr)."""
        args = [str(a) for a in args]
        sock = [] if "--socket" in args else ["--socket", self.sock]
        p = subprocess.run([self.exe("controlplane/sluicectl/sluicectl"), *sock, *self.ctl_args, *args],
                           capture_output=True, text=True, timeout=30, input=stdin)
        return p.returncode, p.stdout, p.stderr

    def ok(self, *args, stdin=None):
        """sluicectl ARGS, which must succeed: its stdout."""
        rc, out, err = self.ctl(*args, stdin=stdin)
        assert rc == 0, f"sluicectl {' '.join(map(str, args))}: rc {rc}: {err.strip()}"
        return out

    ctl_ok = ok

    def json(self, *args):
        return json.loads(self.ok("--json", *args))

    def generation(self):
        return self.json("status")["generation"]

    def metrics(self):
        """The /metrics page's text."""
        assert self.metrics_port is not None, "started without metrics=True"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            assert r.status == 200
            return r.read().decode()

    def kill(self, sig=signal.SIGKILL):
        """Signals sluiced and waits for it; the segment and state stay."""
        if self.alive():
            self.proc.send_signal(sig)
            self.proc.wait(timeout=self.STOP_TIMEOUT_S)

    def stop(self):
        """SIGTERM (SIGKILL if it does not exit), then removes the segment.
        Safe to call more than once."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.log and not self.log.closed:
            self.log.close()
        try:
            os.unlink(f"/dev/shm/{self.shm}")
        except FileNotFoundError:
            pass
        remove_kept_tables(self.shm)
