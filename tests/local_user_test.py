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
import subprocess
import sys
import tempfile
import time
import unittest

import testmain

from sluiced import Sluiced, wait_for

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
