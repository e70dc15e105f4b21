# SPDX-License-Identifier: Apache-2.0
"""Commands and background processes, in a namespace or not, with every
wait bounded."""
import signal
import subprocess
import sys
import time


PY = "/usr/bin/python3"  # Debian's; the pyenv python3 on PATH may lack modules
ONE_CPU = ["taskset", "-c", "0"]


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def run(*args, ns=None, check=True, timeout=60, input=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {(p.stderr or p.stdout).strip()}")
    return p


def wait_for(cond, timeout, what, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def proc_start_time(pid):
    """The process's start time (an identity with its pid), None if it is
    gone (a zombie is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    except (OSError, IndexError):
        return None


class Proc:
    """A background process (optionally in a namespace), its output in a log."""

    def __init__(self, args, log, ns=None, stdin=None, stdout=None, cpu0=False):
        self.args = [str(a) for a in args]
        self.logpath = log
        self.log = open(log, "a")
        cmd = (["ip", "netns", "exec", ns] if ns else []) + (ONE_CPU if cpu0 else []) + self.args
        self.proc = subprocess.Popen(cmd, stdout=stdout or self.log, stderr=self.log, stdin=stdin,
                                     text=True, start_new_session=True)
        self.pid = self.proc.pid  # ip netns exec and taskset exec: the same pid

    def alive(self):
        return self.proc.poll() is None

    def text(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def tail(self, n=15):
        return "\n".join(self.text().splitlines()[-n:])

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signals the process and waits (SIGKILL after `timeout`). Returns its status."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode
