# SPDX-License-Identifier: Apache-2.0
"""How every Python test file ends: the one place that turns unittest's
result into meson's exit status, so a skipped test can never pass for a
tested one.

- a failure or an error: exit 1;
- every test skipped (e.g. not root): exit 77, which meson shows as SKIP;
- some tests skipped: exit 1 naming them, unless SLUICE_ALLOW_SKIPS=1 (a
  partial run the caller asked for: `scripts/test --partial`);
- otherwise 0. One line says how many ran and how many were skipped.
"""
import os
import signal
import sys
import unittest

ALLOW_SKIPS = "SLUICE_ALLOW_SKIPS"


def skips_allowed():
    return os.environ.get(ALLOW_SKIPS) == "1"


def require_root(name, why):
    """Exits 77 (meson: SKIP) before any test when not root: for files whose
    every test needs root."""
    if os.geteuid() != 0:
        print(f"{name}: needs root ({why}): skipped", file=sys.stderr)
        sys.exit(77)


def tear_down_on_term(name, teardown):
    """On SIGTERM (meson's timeout) runs teardown() (the namespaces and
    processes a topology test built), then exits 128 + the signal: a killed
    test leaves nothing behind."""
    def on_term(sig, _frame):
        print(f"{name}: signal {sig}: tearing down", file=sys.stderr)
        teardown()
        os._exit(128 + sig)
    signal.signal(signal.SIGTERM, on_term)


def main(name, argv):
    """Runs the tests of __main__ named by argv (unittest's argv: argv[0],
    then test names) and exits as described above."""
    prog = unittest.main(argv=argv, verbosity=2, exit=False)
    r = prog.result
    skipped = len(r.skipped)
    ran = r.testsRun - skipped
    print(f"{name}: {ran} ran, {skipped} skipped, {len(r.failures) + len(r.errors)} failed", file=sys.stderr)
    if not r.wasSuccessful():
        sys.exit(1)
    if r.testsRun == 0:
        print(f"{name}: no test matched {argv[1:]}", file=sys.stderr)
        sys.exit(1)
    if ran == 0:
        sys.exit(77)
    if skipped and not skips_allowed():
        for test, why in r.skipped:
            print(f"{name}: skipped {test.id()}: {why}", file=sys.stderr)
        print(f"{name}: {skipped} test(s) skipped in a full run: failing (set {ALLOW_SKIPS}=1, or run "
              f"`scripts/test --partial`, for a partial run)", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
