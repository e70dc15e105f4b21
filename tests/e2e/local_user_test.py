#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A hostile local user against sluiced and the dataplanes (root).

- A shared-memory segment another user made first (mode 0666, owned by
  nobody) is refused by sluiced with one line naming owner and mode, and left
  as it was: never sized, filled or adopted.
- A segment sluiced made that another user then owns or may write is refused
  by sluice-dpdk and sluice-xdp with one line naming owner and mode.
- sluiced's state directory and sluice-xdp's pin directory: the same rules.
- Two sluiced started at once on one segment, many times: exactly one runs,
  the other exits 1 with one line every time.

usage: local_user_test.py BUILD_DIR SOURCE_DIR
"""
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

# The shared helpers are in tests/harness/, beside this folder.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, "harness"))
import testmain  # noqa: E402
from sluiced import Sluiced, wait_for  # noqa: E402

BUILD = SOURCE = None
NOBODY = pwd.getpwnam("nobody").pw_uid

CONFIG = """\
node:
  source_ipv4: 10.99.0.254
vips:
  - address: 10.99.0.1
    port: 80
    protocol: tcp
    backends:
      - address: 10.99.1.1
"""


def one_line(test, p, status, *wants):
    """p exited `status` and its last stderr line names every `want`."""
    test.assertEqual(p.returncode, status, p.stderr)
    lines = p.stderr.strip().splitlines()
    test.assertTrue(lines, "no error line")
    for w in wants:
        test.assertIn(w, lines[-1])
    return lines[-1]


class LocalUser(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sluice-local-")
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def sluiced(self, name, **kw):
        d = Sluiced(BUILD, self.tmp, name, **kw)
        self.daemons.append(d)
        return d

    def run_sluiced(self, d, timeout=20):
        """sluiced as it would start, expected to refuse: its result."""
        return subprocess.run(d.args(), capture_output=True, text=True, timeout=timeout)

    def test_a_segment_another_user_made_first_is_refused_and_left_alone(self):
        d = self.sluiced("hijack", config_text=CONFIG, start=False)
        path = f"/dev/shm/{d.shm}"
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
        os.fchmod(fd, 0o666)
        os.fchown(fd, NOBODY, NOBODY)
        os.close(fd)
        try:
            p = self.run_sluiced(d)
            one_line(self, p, 1, path, "owned by nobody (uid", "mode 0666", "refusing it")
            st = os.stat(path)
            self.assertEqual((st.st_uid, st.st_size, st.st_mode & 0o7777), (NOBODY, 0, 0o666),
                             "sluiced touched a segment it refused")
        finally:
            os.unlink(path)
        # Once it is gone, sluiced makes its own.
        d.start()
        st = os.stat(path)
        self.assertEqual((st.st_uid, st.st_mode & 0o7777), (os.geteuid(), 0o660))

    def test_dataplanes_refuse_a_segment_another_user_owns_or_may_write(self):
        d = self.sluiced("dp", config_text=CONFIG)
        path = f"/dev/shm/{d.shm}"
        empty = os.path.join(self.tmp, "empty.pcap")
        with open(empty, "wb") as f:  # a pcap header: the dataplanes never get as far as reading it
            f.write(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
        dpdk = [os.path.join(BUILD, "dataplane/sluice-dpdk"), "--shm", d.shm, "--pcap",
                f"{empty}:{self.tmp}/out.pcap"]
        xdp = [os.path.join(BUILD, "xdp/sluice-xdp"), "--shm", d.shm, "--pcap",
               f"{empty}:{self.tmp}/out-xdp.pcap"]
        for owner, mode, why in [(NOBODY, 0o660, "owned by nobody"), (0, 0o666, "others may write")]:
            os.chown(path, owner, -1)
            os.chmod(path, mode)
            for args, name in [(dpdk, "sluice-dpdk"), (xdp, "sluice-xdp")]:
                with self.subTest(owner=owner, mode=oct(mode), dataplane=name):
                    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
                    last = one_line(self, p, 1, f"shm segment {path} is owned by", why, f"mode {mode:04o}")
                    self.assertTrue(last.startswith(f"{name}: "), last)
        os.chown(path, 0, -1)
        os.chmod(path, 0o660)
        p = subprocess.run(dpdk, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_a_state_dir_another_user_owns_is_refused(self):
        d = self.sluiced("state", config_text=CONFIG, start=False)
        os.makedirs(d.state)
        os.chown(d.state, NOBODY, NOBODY)
        p = self.run_sluiced(d)
        one_line(self, p, 1, f"--state-dir {d.state}", "owned by nobody")
        self.assertFalse(os.path.exists(f"/dev/shm/{d.shm}"), "sluiced made its segment first")
        os.chown(d.state, 0, 0)
        os.chmod(d.state, 0o757)
        one_line(self, self.run_sluiced(d), 1, "others may write")
        os.chmod(d.state, 0o750)
        # A state file another user wrote is not restored.
        with open(os.path.join(d.state, "state.json"), "w") as f:
            f.write("{}")
        os.chown(os.path.join(d.state, "state.json"), NOBODY, NOBODY)
        one_line(self, self.run_sluiced(d), 1, "state file", "owned by nobody")

    def test_a_pin_dir_another_user_owns_is_refused(self):
        d = self.sluiced("pins", config_text=CONFIG)
        bpffs = os.path.join(self.tmp, "bpffs")
        os.makedirs(bpffs)
        subprocess.run(["mount", "-t", "bpf", "bpf", bpffs], check=True)
        # A namespace of its own: other tests attach to the host's lo.
        ns = f"sl-lu-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
            pins = os.path.join(bpffs, "sluice")
            os.makedirs(pins)
            os.chown(pins, NOBODY, NOBODY)
            p = subprocess.run(["ip", "netns", "exec", ns, os.path.join(BUILD, "xdp/sluice-xdp"),
                                "--iface", "lo", "--shm", d.shm, "--pin-dir", pins],
                               capture_output=True, text=True, timeout=60)
            one_line(self, p, 1, f"--pin-dir {pins}", "owned by nobody")
            out = subprocess.run(["ip", "-n", ns, "link", "show", "lo"], capture_output=True, text=True).stdout
            self.assertNotIn("xdp", out, "sluice-xdp attached to lo anyway")
            self.assertEqual(os.listdir(pins), [], "sluice-xdp pinned into a directory it refused")
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
            subprocess.run(["umount", bpffs], check=False)

    def hostile_clients(self, d, api=200, metrics=200):
        """A process of user nobody (group root, so the 0660 API socket lets
        it in, as a member of sluiced's group would be) that opens up to
        `api` idle API connections and `metrics` idle /metrics connections
        and holds them. Returns (process, how many of each it opened)."""
        script = (
            "import socket, sys, time\n"
            "held, n = [], [0, 0]\n"
            f"for i in range({api}):\n"
            "    s = socket.socket(socket.AF_UNIX)\n"
            "    s.settimeout(2)\n"
            f"    try: s.connect({d.sock!r}); held.append(s); n[0] += 1\n"
            "    except OSError: s.close()\n"
            f"for i in range({metrics}):\n"
            "    s = socket.socket()\n"
            "    s.settimeout(2)\n"
            f"    try: s.connect(('127.0.0.1', {d.metrics_port})); held.append(s); n[1] += 1\n"
            "    except OSError: s.close()\n"
            "print(n[0], n[1], flush=True)\n"
            "time.sleep(120)\n")

        def become_nobody():
            os.setgroups([0])
            os.setgid(0)
            os.setuid(NOBODY)
        os.chmod(self.tmp, 0o711)  # the socket's directory: searchable, as /run/sluice is to the group
        p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             preexec_fn=become_nobody)
        counts = p.stdout.readline().split()
        return p, [int(c) for c in counts]

    def test_idle_clients_neither_mark_backends_down_nor_silence_the_api(self):
        # A backend whose check passes, and a sluiced allowed 64 open files.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        port = listener.getsockname()[1]
        config = CONFIG.replace("      - address: 10.99.1.1\n",
                                f"      - address: 127.0.0.1\n        check: {{type: tcp, port: {port}, "
                                f"interval_ms: 100, timeout_ms: 100, fall: 2}}\n")
        d = self.sluiced("fds", config_text=config, metrics=True, start=False)
        args = d.args
        d.args = lambda: ["prlimit", "--nofile=64:64", "--"] + args()
        d.start()
        hostile = None
        try:
            backend = lambda: d.json("backend", "list", "10.99.0.1:80/tcp")[0]
            wait_for(lambda: backend()["state"] == "up", 20, "the backend's first pass")
            hostile, (n_api, n_metrics) = self.hostile_clients(d)
            print(f"  a local user holds {n_api} API and {n_metrics} /metrics connections", file=sys.stderr)
            # Thirty probe intervals of exhaustion.
            b = wait_for(lambda: (lambda b: b if b.get("local_failures", 0) >= 20 else None)(backend()), 30,
                         "probes to run out of descriptors")
            self.assertEqual(b["state"], "up", b)
            self.assertIn("Too many open files", b["last_local_error"])
            self.assertLess(b["failures_in_row"], 2, b)
            # Root's sluicectl still gets an answer.
            rc, out, err = d.ctl("status")
            self.assertEqual(rc, 0, err)
            # Its API connections beyond its share were refused (connected,
            # answered with one line, closed), so it holds no more than that.
            self.assertGreater(n_api, 0)
            hostile.kill()
            hostile.wait()
            hostile = None
            # Once they are gone the probes are made again (`checks` counts
            # only probes made, not local failures).
            made = backend()["checks"]
            wait_for(lambda: (lambda b: b["checks"] >= made + 3 and b["successes_in_row"] >= 3)(backend()), 30,
                     "probes to run again")
        finally:
            if hostile:
                hostile.kill()
                hostile.wait()
            listener.close()

    def test_a_group_member_may_read_but_not_change(self):
        d = self.sluiced("perm", config_text=CONFIG)
        os.chmod(self.tmp, 0o711)  # the socket's directory: searchable, as /run/sluice is to the group
        ctl = [os.path.join(BUILD, "controlplane/sluicectl/sluicectl"), "--socket", d.sock]

        def as_group_member():
            os.setgroups([0])
            os.setgid(0)
            os.setuid(NOBODY)
        run = lambda *a: subprocess.run(ctl + list(a), capture_output=True, text=True, timeout=30,
                                        preexec_fn=as_group_member)
        self.assertEqual(run("status").returncode, 0)
        self.assertEqual(run("--json", "vip", "list").returncode, 0)
        p = run("vip", "add", "10.99.0.2:80/tcp")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("permission denied: vip.add changes the configuration", p.stderr)
        self.assertNotIn("address: 10.99.0.2\n", d.ok("dump"))

    def test_two_sluiced_started_together_exactly_one_wins_every_time(self):
        rounds = 15
        for r in range(rounds):
            with self.subTest(round=r):
                a = self.sluiced(f"race{r}a", config_text=CONFIG, start=False)
                b = self.sluiced(f"race{r}b", config_text=CONFIG, start=False)
                b.shm = a.shm  # one segment, two daemons with their own sockets and state
                la, lb = open(a.log_path, "w"), open(b.log_path, "w")
                pa = subprocess.Popen(a.args(), stdout=la, stderr=la)
                pb = subprocess.Popen(b.args(), stdout=lb, stderr=lb)
                a.proc, b.proc = pa, pb
                # The loser exits at start; give the winner time to publish.
                loser = wait_for(lambda: [p for p in (pa, pb) if p.poll() is not None], 20,
                                 "one of two sluiced to exit")
                time.sleep(0.3)
                exited = [(p, d) for p, d in ((pa, a), (pb, b)) if p.poll() is not None]
                self.assertEqual(len(exited), 1, f"{len(exited)} of 2 exited: {loser}")
                p, d = exited[0]
                self.assertEqual(p.returncode, 1)
                last = d.log_text().strip().splitlines()[-1]
                self.assertIn(f"/dev/shm/{a.shm} is held by another sluiced", last)
                winner = b if d is a else a
                self.assertEqual(winner.ok("status").count("\n") > 0, True)
                la.close()
                lb.close()
                winner.stop()
                d.proc = None


if __name__ == "__main__":
    testmain.require_root(__file__, "chown to another user, bpffs mounts")
    BUILD, SOURCE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    testmain.main("local_user_test", sys.argv[:1] + sys.argv[3:])
