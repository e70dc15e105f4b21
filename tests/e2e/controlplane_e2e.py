#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sluiced + sluicectl end to end, as an operator drives them.

Starts a real sluiced in a temp dir (own socket, state dir, shm segment and
metrics port), then: the bad-input table (tests/data/bad_inputs.json) through
sluicectl, with the configuration unchanged after each; add, list, change,
delete, apply, dump; SIGKILL and restart with the state intact; health checks
against a real listener; a simulated dataplane worker whose counters must
show in `sluicectl stats` and /metrics. Everything is bounded in time and
torn down on failure.

usage: controlplane_e2e.py BUILD_DIR SOURCE_DIR
"""
import json
import mmap
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

# The shared helpers are in tests/harness/, beside this folder.
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, "harness"))
import testmain  # noqa: E402
from sluiced import Sluiced, wait_for  # noqa: E402

BUILD = SOURCE = None




class ControlPlane(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sluice-e2e-")
        self.table = json.load(open(os.path.join(SOURCE, "tests/data/bad_inputs.json")))
        self.base = os.path.join(self.tmp, "base.yaml")
        with open(self.base, "w") as f:
            f.write(self.table["base_yaml"])
        self.d = Sluiced(BUILD, self.tmp, "e2e", config=self.base, metrics=True, worker_timeout_ms=500)

    def tearDown(self):
        self.d.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_bad_inputs_refused_with_their_line_and_nothing_changes(self):
        before = self.d.ok("dump")
        gen = self.d.json("status")["generation"]
        for c in self.table["cli"]:
            rc, out, err = self.d.ctl(*c["args"])
            self.assertEqual(rc, c["exit"], f"{c['name']}: {err}")
            self.assertEqual(err.strip(), "sluicectl: " + c["error"], c["name"])
            self.assertEqual(self.d.ok("dump"), before, c["name"])
        for c in self.table["yaml"]:
            path = os.path.join(self.tmp, "bad.yaml")
            with open(path, "w") as f:
                f.write(c["yaml"])
            rc, out, err = self.d.ctl("apply", "-f", path)
            self.assertEqual(rc, 1, f"{c['name']}: {err}")
            if "error" in c:
                self.assertEqual(err.strip(), "sluicectl: " + c["error"], c["name"])
            else:
                self.assertTrue(err.startswith("sluicectl: " + c["error_prefix"]), err)
            self.assertEqual(self.d.ok("dump"), before, c["name"])
        self.assertEqual(self.d.json("status")["generation"], gen, "a refused change published")

    def test_add_list_change_delete_apply_dump(self):
        V = "10.200.1.1:80/tcp"
        self.d.ok("vip", "add", "[fd00:200::1]:443/tcp", "--mode", "l2dsr", "--ring-size", "251")
        self.d.ok("backend", "add", "[fd00:200::1]:443/tcp", "fd00::31", "--mac", "02:00:00:00:00:31")
        self.d.ok("backend", "add", V, "10.0.0.13", "--weight", "20")
        vips = {v["vip"]: v for v in self.d.json("vip", "list")}
        self.assertEqual(set(vips), {V, "10.200.1.2:53/udp", "[fd00:200::1]:443/tcp"})
        self.assertEqual(vips["[fd00:200::1]:443/tcp"]["mode"], "l2dsr")
        self.assertEqual(vips[V]["in_table"], 3)

        self.d.ok("backend", "set", V, "10.0.0.13", "--drain")
        b = {x["address"]: x for x in self.d.json("backend", "list", V)}
        self.assertEqual(b["10.0.0.13"]["weight"], 0)
        self.assertEqual(b["10.0.0.13"]["state"], "draining")
        self.assertEqual({v["vip"]: v for v in self.d.json("vip", "list")}[V]["in_table"], 2)
        self.d.ok("backend", "set", V, "10.0.0.13", "--weight", "30")
        self.d.ok("backend", "del", V, "10.0.0.12")
        self.d.ok("vip", "del", "10.200.1.2:53/udp")
        self.assertEqual([x["address"] for x in self.d.json("backend", "list", V)],
                         ["10.0.0.11", "10.0.0.13"])

        # The human views show what the JSON says.
        self.assertIn("10.0.0.13  30", self.d.ok("backend", "list"))
        self.assertIn("[fd00:200::1]:443/tcp  l2dsr", self.d.ok("vip", "list"))

        # dump | apply is the identity; apply replaces everything.
        dumped = self.d.ok("dump")
        rc, out, err = self.d.ctl("apply", "-f", "-", stdin=dumped)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.d.ok("dump"), dumped)
        self.d.ok("apply", "-f", self.base)
        self.assertEqual(len(self.d.json("vip", "list")), 2)
        self.assertEqual(self.d.json("dump")["config"]["vips"][0]["backends"][1]["weight"], 50)

    def test_diff_dry_run_and_apply_say_what_changes(self):
        path = os.path.join(self.tmp, "next.yaml")
        with open(path, "w") as f:
            f.write(self.table["base_yaml"].replace("        weight: 50\n", "        weight: 80\n")
                    .replace("      - address: 10.0.0.21\n", "      - address: 10.0.0.22\n"))
        gen = self.d.generation()
        lines = ["~ backend 10.0.0.12 of VIP 10.200.1.1:80/tcp: weight 50 -> 80",
                 "- backend 10.0.0.21 of VIP 10.200.1.2:53/udp",
                 "+ backend 10.0.0.22 of VIP 10.200.1.2:53/udp: weight 100"]
        summary = "1 added, 1 removed, 1 changed"
        self.assertEqual(self.d.ok("diff", "-f", path).splitlines(),
                         lines + [f"{summary}: against the running configuration (generation {gen})"])
        self.assertEqual(self.d.ok("apply", "-f", path, "--dry-run").splitlines(),
                         lines + [f"{summary}: dry run, nothing applied (generation {gen})"])
        self.assertEqual(self.d.generation(), gen)
        self.assertEqual(self.d.ok("apply", "-f", path).splitlines(),
                         lines + [f"{summary}: applied (generation {gen + 1})"])
        # The same file again: nothing to publish, the generation stays.
        self.assertEqual(self.d.ok("apply", "-f", path).splitlines(),
                         [f"no changes: nothing to publish (generation {gen + 1})"])
        self.assertEqual(self.d.generation(), gen + 1)
        self.assertEqual(self.d.json("diff", "-f", path)["changes"], [])
        rc, out, err = self.d.ctl("diff", path)
        self.assertEqual((rc, err), (2, f"sluicectl: give the file with -f: `sluicectl diff -f {path}` (see --help)\n"))

    def test_sigkill_and_restart_restore_the_last_acknowledged_configuration(self):
        self.d.ok("backend", "add", "10.200.1.1:80/tcp", "10.0.0.14", "--weight", "7")
        self.d.ok("vip", "add", "10.200.1.3:0/udp", "--mode", "gue", "--gue-port", "7000")
        before = self.d.ok("dump")
        ids = {(b["vip"], b["address"]): b["id"] for b in self.d.json("backend", "list")}
        gen = self.d.json("status")["generation"]
        self.d.kill(signal.SIGKILL)
        # The segment outlives sluiced: running dataplanes keep their snapshot.
        self.assertTrue(os.path.exists(f"/dev/shm/{self.d.shm}"))
        self.d.start()  # the saved state wins over --config
        self.assertEqual(self.d.ok("dump"), before)
        self.assertEqual({(b["vip"], b["address"]): b["id"] for b in self.d.json("backend", "list")}, ids)
        self.assertGreater(self.d.json("status")["generation"], gen)
        self.d.ok("backend", "del", "10.200.1.1:80/tcp", "10.0.0.14")
        self.assertNotIn("10.0.0.14", self.d.ok("dump"))

    def test_second_sluiced_on_the_same_socket_is_refused(self):
        p = subprocess.run([os.path.join(BUILD, "controlplane/sluiced/sluiced"), "--shm",
                            self.d.shm + "-other", "--socket", self.d.sock, "--state-dir",
                            os.path.join(self.tmp, "other")], capture_output=True, text=True,
                           timeout=30)
        try:
            self.assertEqual(p.returncode, 1)
            self.assertEqual(p.stderr.strip().splitlines()[-1],
                             f"sluiced: another sluiced is serving {self.d.sock}")
        finally:
            subprocess.run(["rm", "-f", f"/dev/shm/{self.d.shm}-other"])

    def sluiced_alone(self, name, *args, timeout=10):
        """A second sluiced with its own segment, socket and state dir:
        (CompletedProcess, what it left behind: the paths of those that exist)."""
        shm = f"sluice-{name}-{os.getpid()}"
        sock = os.path.join(self.tmp, f"{name}.sock")
        state = os.path.join(self.tmp, f"{name}-state")
        try:
            own = [] if "--shm" in args else ["--shm", shm]
            p = subprocess.run([os.path.join(BUILD, "controlplane/sluiced/sluiced"), *own,
                                "--socket", sock, "--state-dir", state, *args],
                               capture_output=True, text=True, timeout=timeout)
        finally:
            left = [x for x in (f"/dev/shm/{shm}", sock, state) if os.path.exists(x)]
            subprocess.run(["rm", "-rf", f"/dev/shm/{shm}", sock, state])
        return p, left

    def test_bad_options_are_refused_before_anything_is_created(self):
        # Each was silence (an unknown log level is spdlog's "off") or an
        # error only after the segment was published and the socket bound.
        ex = "e.g. --metrics 127.0.0.1:9300 or [::1]:9300"
        cases = {
            ("--log-level", "WARN"): "--log-level: 'WARN' is not one of trace, debug, info, warn, error",
            ("--log-level", "verbose"): "--log-level: 'verbose' is not one of trace, debug, info, warn, error",
            ("--metrics", "9301"): f"--metrics: '9301' has no host: give HOST:PORT, {ex}",
            ("--metrics", ":9301"): f"--metrics: ':9301' has no host: give HOST:PORT, {ex}",
            ("--metrics", "::1:9301"): f"--metrics: '::1:9301': put an IPv6 address in brackets, {ex}",
            ("--metrics", "localhost:9301"): f"--metrics: 'localhost' is not an IP address: give one, {ex}",
            ("--metrics", "127.0.0.1:http"): f"--metrics: '127.0.0.1:http' has no valid port (1-65535), {ex}",
            ("--worker-timeout-ms", "-1"): f"--worker-timeout-ms: '-1' is not a number of milliseconds from 1 to 4294967295",
            ("--shm", "a/b"): 'shm segment name "a/b": must be one file name under /dev/shm',
        }
        for args, line in cases.items():
            with self.subTest(args=args):
                p, left = self.sluiced_alone("badopt", *args)
                self.assertEqual((p.returncode, p.stderr), (2, f"sluiced: {line} (see --help)\n"))
                self.assertEqual(left, [], "created before the options were checked")

    def test_check_config_validates_and_touches_nothing(self):
        p, left = self.sluiced_alone("check", "--check-config", self.base)
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, f"{self.base}: valid (2 VIPs, 3 backends)\n", ""))
        self.assertEqual(left, [])
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write(self.table["base_yaml"].replace("weight: 50", "weight: '50'"))
        p, left = self.sluiced_alone("check", "--check-config", bad)
        self.assertEqual((p.returncode, p.stdout, p.stderr),
                         (1, "", f"sluiced: {bad}: vips[0].backends[1].weight: '50' is quoted: write the number "
                                 "without quotes\n"))
        self.assertEqual(left, [])

    def test_second_sluiced_on_the_same_metrics_port_is_refused(self):
        # With SO_REUSEPORT both would listen, and each scrape would reach
        # one of them at random.
        addr = f"127.0.0.1:{self.d.metrics_port}"
        p, left = self.sluiced_alone("twin", "--metrics", addr)
        self.assertEqual((p.returncode, p.stderr),
                         (1, f"sluiced: --metrics {addr}: in use (another sluiced? `ss -ltnp` names it)\n"))
        self.assertEqual(left, [], "created before the port was bound")
        self.assertIn("sluice_snapshot_generation", self.d.metrics())

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run sluicectl as another user")
    def test_a_flood_of_refusals_is_counted_not_recorded(self):
        # A caller may make refusals at will: 200 bad requests on one
        # connection must not push what matters out of the 1,024-event ring.
        def events():
            out = self.d.ok("--json", "events")
            return [json.loads(line)["fields"] for line in out.splitlines() if line.strip()]
        before = len([e for e in events() if e["event"] == "refusal"])
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(self.d.sock)
            f = c.makefile("rw")
            for i in range(200):
                f.write('{"verb": "vip.add", "args": {"address": "not-an-address"}}\n')
                f.flush()
                self.assertFalse(json.loads(f.readline())["ok"])
        refusals = [e for e in events() if e["event"] == "refusal"]
        recorded = len(refusals) - before
        self.assertGreaterEqual(recorded, 20)
        self.assertLess(recorded, 40, f"{recorded} of 200 refusals recorded")
        time.sleep(0.5)  # a refusal's worth of refill (5 a second)
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(self.d.sock)
            f = c.makefile("rw")
            f.write('{"verb": "vip.add", "args": {"address": "not-an-address"}}\n')
            f.flush()
            f.readline()
        last = [e for e in events() if e["event"] == "refusal"][-1]
        self.assertGreater(int(last.get("left_out", "0")), 150, last)

    def test_permission_denied_names_the_group_to_join(self):
        import pwd
        nobody = pwd.getpwnam("nobody").pw_uid
        os.chmod(self.tmp, 0o711)  # the socket's directory: searchable, as /run/sluice is
        os.chmod(self.d.sock, 0o660)

        def become_nobody():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(nobody)
        p = subprocess.run([os.path.join(BUILD, "controlplane/sluicectl/sluicectl"), "--socket", self.d.sock,
                            "status"], capture_output=True, text=True, timeout=30, preexec_fn=become_nobody)
        self.assertEqual((p.returncode, p.stderr),
                         (2, f"sluicectl: permission denied on {self.d.sock}: it is for group root (mode 660): "
                             "run as root, or add yourself to the group (`usermod -aG root $USER`, then log in "
                             "again)\n"))

    def test_health_check_marks_down_and_up(self):
        # The verdicts are checked in the monitor's own probe counts, not in
        # seconds: down on exactly the `fall`-th failure in a row, up on
        # exactly the `rise`-th success in a row (docs/cli.md, `status`).
        # How long that takes is printed here and measured by
        # `scripts/bench --only failover`.
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.listen(64)
        V = "10.200.1.1:80/tcp"
        fall, rise = 3, 2
        self.d.ok("backend", "add", V, "127.0.0.1", "--check", "tcp", "--check-port", str(port),
                  "--interval-ms", "100", "--timeout-ms", "100", "--rise", str(rise), "--fall", str(fall))
        state = lambda: {b["address"]: b for b in self.d.json("backend", "list", V)}["127.0.0.1"]
        try:
            s = wait_for(lambda: (lambda b: b if b["checks"] >= 3 else None)(state()), 30, "checks to run")
            self.assertEqual(s["state"], "up")
            # Every probe so far passed; a backend just added starts down
            # (nothing is known of it) and its first pass brought it in.
            self.assertEqual((s["successes_in_row"], s["failures_in_row"], s["transition_check"]),
                             (s["checks"], 0, 1), s)
            listener.close()
            t0 = time.monotonic()
            s = wait_for(lambda: (lambda b: b if b["state"] == "down" else None)(state()), 60,
                         "the backend to go down")
            took_down = time.monotonic() - t0
            # Nothing has passed since the listener closed: the probes since
            # the last success are all failures, and the one that took the
            # backend down was the fall-th of them.
            self.assertGreater(s["transition_check"], 0, s)
            self.assertLessEqual(s["transition_check"], s["checks"], s)
            last_success = s["checks"] - s["failures_in_row"]
            self.assertEqual(s["transition_check"] - last_success, fall,
                             f"marked down after {s['transition_check'] - last_success} failed probes in a "
                             f"row, fall is {fall}: {s}")
            self.assertFalse(s["healthy"])
            self.assertEqual(s["successes_in_row"], 0)
            self.assertIn("refused", s["last_error"])
            self.assertEqual({v["vip"]: v for v in self.d.json("vip", "list")}[V]["in_table"], 2)
            self.assertIn('sluice_backend_healthy{vip="10.200.1.1:80/tcp",backend="127.0.0.1"} 0',
                          self.d.metrics())
            down_at = s["transition_check"]
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(64)
            t0 = time.monotonic()
            s = wait_for(lambda: (lambda b: b if b["state"] == "up" else None)(state()), 60,
                         "the backend to come back")
            took_up = time.monotonic() - t0
            last_failure = s["checks"] - s["successes_in_row"]
            self.assertGreater(s["transition_check"], down_at, s)
            self.assertEqual(s["transition_check"] - last_failure, rise,
                             f"back up after {s['transition_check'] - last_failure} passed probes in a row, "
                             f"rise is {rise}: {s}")
            self.assertTrue(s["healthy"])
            self.assertEqual((s["failures_in_row"], s["last_error"]), (0, ""))
            self.assertEqual({v["vip"]: v for v in self.d.json("vip", "list")}[V]["in_table"], 3)
            print(f"\n  health (tcp, every 100 ms, fall {fall}, rise {rise}): down {took_down:.2f}s after "
                  f"the listener closed, up {took_up:.2f}s after it came back", file=sys.stderr)
        finally:
            listener.close()

    def test_a_down_backend_stays_down_across_restarts_and_check_edits(self):
        V = "10.200.1.1:80/tcp"
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connects are refused
        state = lambda: {b["address"]: b for b in self.d.json("backend", "list", V)}["127.0.0.1"]
        in_table = lambda: {v["vip"]: v for v in self.d.json("vip", "list")}[V]["in_table"]
        try:
            self.d.ok("backend", "add", V, "127.0.0.1", "--check", "tcp", "--check-port", str(port),
                      "--interval-ms", "100", "--timeout-ms", "100", "--fall", "2")
            # Never judged: down from the start, and never in the table.
            self.assertEqual(state()["state"], "down")
            wait_for(lambda: state()["checks"] >= 3, 30, "probes to fail")
            self.assertEqual(in_table(), 2)
            gen = self.d.generation()
            for how in (signal.SIGTERM, signal.SIGKILL):
                self.d.kill(how)
                self.d.start()
                # The first snapshot of the new sluiced, before any probe.
                s = state()
                self.assertEqual(s["state"], "down", f"after {how.name}: {s}")
                self.assertEqual(in_table(), 2, f"after {how.name}: the down backend is back in the table")
                self.assertGreater(self.d.generation(), gen)
            # Editing its check (still failing) keeps it down, at once.
            self.d.ok("backend", "set", V, "127.0.0.1", "--interval-ms", "200")
            self.assertEqual(state()["state"], "down")
            self.assertEqual(in_table(), 2)
        finally:
            closed.close()

    def test_a_worker_that_takes_no_snapshots_stalls_nothing_and_is_reported(self):
        # A live worker (heartbeating) that named generation G once and never
        # reads again, as a stalled dataplane would: it holds one slot, so
        # changes keep publishing, and status says what it is doing.
        WORKERS, COUNTER_SLOTS, MAX_VIPS = 192, 64, 4096  # shm.h: workers after ctl and conn_list
        STRIDE = 128 + 8 * COUNTER_SLOTS + 24 * (MAX_VIPS + 4096) + 8 * 4096 + 64 * 1024  # ..., conns[], rows[]
        fd = os.open(f"/dev/shm/{self.d.shm}", os.O_RDWR)
        m = mmap.mmap(fd, 0)
        os.close(fd)
        w = WORKERS + 7 * STRIDE
        stop = threading.Event()
        try:
            g = struct.unpack_from("<Q", m, 64)[0] >> 8
            struct.pack_into("<QQIIII", m, w, g, time.monotonic_ns(), os.getpid(), 1, 3, 0)
            m[w + 32:w + 40] = b"stalled\0"
            struct.pack_into("<QI", m, w + 64, g, 0)

            def beat():
                while not stop.wait(0.05):
                    struct.pack_into("<Q", m, w + 8, time.monotonic_ns())
            t = threading.Thread(target=beat)
            t.start()
            for i in range(10):  # far more generations than slots
                self.d.ok("vip", "add", f"10.201.0.{i + 1}:80/tcp")
            self.assertEqual(self.d.generation(), g + 10)
            st = wait_for(lambda: (lambda x: x if x["stale"] else None)(
                [x for x in self.d.json("status")["workers"] if x["name"] == "stalled"][0]), 10,
                "status to call the worker stale")
            self.assertIn(f"has not taken generation {g + 10}", st["stale"])
            self.assertIn('sluice_worker_stale{worker="stalled",kind="test",reason="not_taken"} 1',
                          self.d.metrics())
        finally:
            stop.set()
            if 't' in locals():
                t.join()
            struct.pack_into("<I", m, w + 16, 0)  # pid 0: the record is free again
            m.close()

    def test_dataplane_counters_reach_stats_and_metrics(self):
        # Play a dataplane worker: claim a record in the segment the way the
        # ABI (include/sluice/shm.h) lays it out, and count some traffic.
        vip_id = self.d.json("vip", "list")[0]["id"]
        b = self.d.json("backend", "list", "10.200.1.1:80/tcp")
        bid = {x["address"]: x["id"] for x in b}["10.0.0.12"]
        WORKERS, COUNTER_SLOTS, MAX_VIPS = 192, 64, 4096  # shm.h: workers after ctl and conn_list
        STRIDE = 128 + 8 * COUNTER_SLOTS + 24 * (MAX_VIPS + 4096) + 8 * 4096 + 64 * 1024  # ..., conns[], rows[]
        fd = os.open(f"/dev/shm/{self.d.shm}", os.O_RDWR)
        m = mmap.mmap(fd, 0)
        os.close(fd)
        try:
            magic, abi = struct.unpack_from("<QI", m, 0)
            self.assertEqual(magic, 0x4D53454349554C53)
            active = struct.unpack_from("<Q", m, 64)[0]
            w = WORKERS + 5 * STRIDE
            struct.pack_into("<QQIIII", m, w, active >> 8, time.monotonic_ns(), os.getpid(), 1, 3, 0)
            m[w + 32:w + 40] = b"e2e-q0\0\0"
            struct.pack_into("<QI", m, w + 64, active >> 8, 0)  # generation_applied, refused
            counters = w + 128
            struct.pack_into("<QQQQ", m, counters, 1000, 64000, 990, 70000)  # rx, rx_bytes, tx, tx_bytes
            struct.pack_into("<QQQ", m, counters + 8 * COUNTER_SLOTS + 24 * vip_id, 990, 63360, 30)
            struct.pack_into("<QQQ", m, counters + 8 * COUNTER_SLOTS + 24 * (MAX_VIPS + bid), 400, 25600, 12)
            st = self.d.json("stats")
            self.assertEqual(st["counters"]["rx_packets"], 1000)
            self.assertEqual(st["counters"]["tx_packets"], 990)
            v = [x for x in st["vips"] if x["vip"] == "10.200.1.1:80/tcp"][0]
            self.assertEqual((v["packets"], v["bytes"], v["new_flows"]), (990, 63360, 30))
            be = {x["address"]: x for x in v["backends"]}["10.0.0.12"]
            self.assertEqual((be["packets"], be["new_flows"]), (400, 12))
            workers = self.d.json("status")["workers"]
            self.assertEqual([(x["name"], x["kind"], x["state"]) for x in workers], [("e2e-q0", "test", "live")])
            text = self.d.metrics()
            self.assertIn('sluice_vip_packets_total{vip="10.200.1.1:80/tcp"} 990', text)
            self.assertIn('sluice_backend_new_flows_total{vip="10.200.1.1:80/tcp",backend="10.0.0.12"} 12', text)
            self.assertIn("sluice_rx_packets_total 1000", text)
            self.assertIn('sluice_worker_generation_seen{worker="e2e-q0",kind="test"}', text)
            # The one worker's own counts, in status and /metrics.
            self.assertEqual((workers[0]["counters"]["rx_packets"], workers[0]["counters"]["tx_packets"]),
                             (1000, 990))
            self.assertIn('sluice_worker_packets_total{worker="e2e-q0",kind="test",direction="rx"} 1000', text)
            self.assertIn('sluice_worker_packets_total{worker="e2e-q0",kind="test",direction="tx"} 990', text)
            self.assertIn('sluice_worker_bytes_total{worker="e2e-q0",kind="test",direction="rx"} 64000', text)
            self.assertIn('sluice_worker_bytes_total{worker="e2e-q0",kind="test",direction="tx"} 70000', text)
            self.assertIn('sluice_worker_drops_total{worker="e2e-q0",kind="test"} 0', text)
            self.assertIn("e2e-q0", self.d.ok("status"))
            # A silent worker is reported dead after the timeout (500 ms here).
            wait_for(lambda: self.d.json("status")["workers"][0]["state"] == "dead", 10, "worker to die")
            # A deleted then re-added backend starts again from zero.
            self.d.ok("backend", "del", "10.200.1.1:80/tcp", "10.0.0.12")
            self.d.ok("backend", "add", "10.200.1.1:80/tcp", "10.0.0.12")
            v = [x for x in self.d.json("stats")["vips"] if x["vip"] == "10.200.1.1:80/tcp"][0]
            self.assertEqual({x["address"]: x for x in v["backends"]}["10.0.0.12"]["packets"], 0)
        finally:
            m.close()

    @unittest.skipUnless(os.geteuid() == 0, "needs root for network namespaces")
    def test_next_hop_macs_come_from_the_kernel(self):
        # sluiced in a namespace whose backends sit behind a veth: with no
        # gateway_mac configured, it must find the backend's MAC itself.
        ns, peer = f"sl-nh-{os.getpid()}", f"sl-nhp-{os.getpid()}"
        run = lambda *a: subprocess.run(a, check=True, timeout=10)
        d = None
        try:
            run("ip", "netns", "add", ns)
            run("ip", "netns", "add", peer)
            run("ip", "link", "add", "nh0", "netns", ns, "type", "veth", "peer", "name", "nh1", "netns", peer)
            run("ip", "-n", ns, "addr", "add", "10.99.0.1/24", "dev", "nh0")
            run("ip", "-n", peer, "addr", "add", "10.99.0.2/24", "dev", "nh1")
            run("ip", "-n", ns, "link", "set", "nh0", "up")
            run("ip", "-n", peer, "link", "set", "nh1", "up")
            mac = json.loads(subprocess.run(["ip", "-n", peer, "-j", "link", "show", "nh1"],
                                            capture_output=True, text=True, check=True).stdout)[0]["address"]
            cfg = os.path.join(self.tmp, "nh.yaml")
            with open(cfg, "w") as f:
                f.write("node: {source_ipv4: 10.99.0.1}\nvips: [{address: 10.200.9.1, port: 80, "
                        "backends: [{address: 10.99.0.2}, {address: 10.99.0.77}]}]\n")
            d = Sluiced(BUILD, self.tmp, "nh", config=cfg, netns=ns)
            hop = lambda addr: {b["address"]: b for b in d.json("backend", "list")}[addr]
            wait_for(lambda: hop("10.99.0.2")["next_hop_mac"] == mac, 10, "the backend's MAC")
            # An address nobody answers for stays unresolved, and says why.
            self.assertEqual(hop("10.99.0.77")["next_hop_mac"], "")
            self.assertIn("not in the neighbour table", hop("10.99.0.77")["next_hop_error"])
        finally:
            if d:
                d.stop()
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
            subprocess.run(["ip", "netns", "del", peer], stderr=subprocess.DEVNULL)

    def test_events_follow_a_health_transition_a_change_and_a_refusal(self):
        # What an operator watching `sluicectl events --follow` sees: a
        # backend going down when its listener closes, a change with the
        # caller's uid and pid, and a refused change with its line.
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        V = "10.200.5.1:80/tcp"
        d = Sluiced(BUILD, self.tmp, "events", config_text=(
            "node: {source_ipv4: 10.0.0.2}\nvips:\n  - address: 10.200.5.1\n    port: 80\n    backends:\n"
            f"      - address: 127.0.0.1\n        check: {{type: tcp, port: {port}, interval_ms: 100, "
            "timeout_ms: 100, rise: 2, fall: 3}\n"))
        ctl = os.path.join(BUILD, "controlplane/sluicectl/sluicectl")
        follower = subprocess.Popen([ctl, "--socket", d.sock, "events", "--follow"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")))
        reader.start()

        def line_with(*parts):
            return wait_for(lambda: next((l for l in list(lines) if all(p in l for p in parts)), None), 30,
                            f"an event with {parts}; got:\n{''.join(lines)}")
        try:
            # Never judged, it joins on its first pass.
            line_with("event=health", f"vip={V}", "address=127.0.0.1", "state=up")
            listener.close()
            down = line_with("event=health", "state=down")
            self.assertIn(f"vip={V} address=127.0.0.1 state=down check=tcp port={port} probes=3 reason=", down)
            self.assertIn("refused", down.split("reason=")[1])
            self.assertRegex(down, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z seq=\d+ event=health ")

            add = subprocess.Popen([ctl, "--socket", d.sock, "backend", "add", V, "10.0.0.13", "--weight", "20"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = add.communicate(timeout=30)
            self.assertEqual(add.returncode, 0, err)
            gen = re.search(r"generation (\d+)", out).group(1)
            line_with("event=change verb=backend.add", f"uid={os.getuid()} pid={add.pid} generation={gen} "
                      f"vip={V} address=10.0.0.13 weight=20")

            again = subprocess.Popen([ctl, "--socket", d.sock, "backend", "add", V, "10.0.0.13"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = again.communicate(timeout=30)
            self.assertEqual(again.returncode, 1)
            message = err.strip().removeprefix("sluicectl: ")
            self.assertEqual(message, f"backend 10.0.0.13 already in VIP {V}")
            refusal = line_with("event=refusal verb=backend.add", f"pid={again.pid}")
            self.assertTrue(refusal.endswith(f'uid={os.getuid()} pid={again.pid} vip={V} address=10.0.0.13 '
                                             f'error="{message}"\n'), refusal)
            # Reads are not events.
            self.assertFalse([l for l in lines if "verb=status" in l or "verb=events" in l], lines)
        finally:
            follower.terminate()
            try:
                follower.wait(timeout=10)
            except subprocess.TimeoutExpired:
                follower.kill()
                follower.wait(timeout=10)
            reader.join(timeout=10)
            follower.stdout.close()
            follower.stderr.close()
            listener.close()
            d.stop()
        self.assertEqual(follower.returncode, 0, "--follow ends cleanly on SIGTERM")
        # The same lines reach sluiced's log (the journal under systemd).
        log = d.log_text()
        self.assertIn(f"warning: event=health vip={V} address=127.0.0.1 state=down check=tcp", log)
        self.assertIn(f"info: event=change verb=backend.add uid={os.getuid()} pid={add.pid} generation={gen}", log)
        self.assertIn(f'error="backend 10.0.0.13 already in VIP {V}" seq=', log)

    def test_version_and_build_info(self):
        version = re.search(r"version : '([^']+)'", open(os.path.join(SOURCE, "meson.build")).read()).group(1)
        for exe, name in (("controlplane/sluiced/sluiced", "sluiced"), ("controlplane/sluicectl/sluicectl", "sluicectl")):
            p = subprocess.run([os.path.join(BUILD, exe), "--version"], capture_output=True, text=True, timeout=30)
            self.assertEqual((p.returncode, p.stdout), (0, f"{name} {version}\n"))
        self.assertIn(f'sluice_build_info{{version="{version}"}} 1\n', self.d.metrics())

    def test_sluice_socket_from_the_environment_and_the_flag_beats_it(self):
        ctl = os.path.join(BUILD, "controlplane/sluicectl/sluicectl")
        run = lambda *a, env: subprocess.run([ctl, *a], capture_output=True, text=True, timeout=30,
                                             env={**os.environ, **env})
        p = run("vip", "list", env={"SLUICE_SOCKET": self.d.sock})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("10.200.1.1:80/tcp", p.stdout)
        p = run("--socket", self.d.sock, "vip", "list", env={"SLUICE_SOCKET": "/nonexistent/other.sock"})
        self.assertEqual(p.returncode, 0, p.stderr)
        p = run("vip", "list", env={"SLUICE_SOCKET": "/nonexistent/other.sock"})
        self.assertEqual(p.returncode, 2)
        self.assertIn("no sluiced listens on /nonexistent/other.sock", p.stderr)

    def test_bash_completion_offers_every_verb_and_its_options(self):
        ctl = os.path.join(BUILD, "controlplane/sluicectl/sluicectl")
        script = os.path.join(self.tmp, "completion.bash")
        with open(script, "w") as f:
            f.write(subprocess.run([ctl, "completion", "bash"], capture_output=True, text=True, check=True).stdout)

        def complete(*typed):
            """What bash offers after `sluicectl TYPED...` (the last word being completed)."""
            words = " ".join(f"'{w}'" for w in ("sluicectl",) + typed)
            p = subprocess.run(["bash", "-c", f"source {script}; COMP_WORDS=({words}); COMP_CWORD={len(typed)}; "
                                "_sluicectl; printf '%s\\n' \"${COMPREPLY[@]}\""],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            return set(p.stdout.split())

        # Every command --help lists, with the options its own --help lists.
        helptext = subprocess.run([ctl, "--help"], capture_output=True, text=True).stdout
        commands = helptext.split("Commands:\n")[1].split("\n\n")[0].splitlines()
        verbs = [[w for w in line[:36].split() if re.fullmatch(r"[a-z]+", w)] for line in commands]
        self.assertGreaterEqual(len(verbs), 12)
        for words in verbs:
            with self.subTest(verb=" ".join(words)):
                self.assertIn(words[0], complete(""))
                self.assertIn(words[0], complete(words[0][:2]))
                if len(words) > 1:
                    self.assertIn(words[1], complete(words[0], ""))
                vhelp = subprocess.run([ctl, *words, "--help"], capture_output=True, text=True).stdout
                options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", vhelp.split("Options:")[-1]))
                offered = complete(*words, "--")
                self.assertEqual(options - offered, set(), "options --help lists that completion does not offer")
                self.assertTrue({"--socket", "--json"} <= offered)
        self.assertEqual(complete("backend", "set", "10.200.1.1:80/tcp", "10.0.0.11", "--dr"), {"--drain"})

    def test_help_at_every_level(self):
        for args in (["--help"], ["vip", "--help"], ["backend", "add", "--help"], ["status", "--help"]):
            rc, out, err = self.d.ctl(*args)
            self.assertEqual(rc, 0, args)
            self.assertIn("sluicectl", out)
        set_help = self.d.ctl("backend", "set", "--help")[1]
        self.assertIn("--drain", set_help)
        # set changes only what it is given: no option claims add's default.
        self.assertNotIn("(default 100)", set_help)
        self.assertEqual(set_help.count("(default: unchanged)"), 12, set_help)


if __name__ == "__main__":
    BUILD, SOURCE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    testmain.main("controlplane_e2e", [sys.argv[0]] + sys.argv[3:])
