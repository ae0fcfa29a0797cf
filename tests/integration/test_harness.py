"""The harness itself: a sanitizer report in a daemon's log, or a daemon that
did not exit cleanly, fails the test that ran it (what the ASan+UBSan run of
tests/run-all.sh relies on)."""

import os
import shutil
import signal
import unittest

from harness import Daemon


class HarnessChecksTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon().start()

    def tearDown(self):
        try:
            self.d.cleanup()
        except AssertionError:  # what the tests provoke
            pass
        shutil.rmtree(self.d.tmp, ignore_errors=True)

    def plant(self, text):
        with open(self.d.log_path, "ab") as f:
            f.write(text.encode())

    def test_clean_stop_passes(self):
        self.d.login()
        self.assertEqual(self.d.stop(), 0)

    def test_ubsan_report_fails(self):
        self.plant("xapi/x.c:1:2: runtime error: signed integer overflow\n")
        with self.assertRaisesRegex(AssertionError, "sanitizer report"):
            self.d.stop()

    def test_asan_and_lsan_reports_fail(self):
        for report in ("==1==ERROR: AddressSanitizer: heap-use-after-free on address\n",
                       "==1==ERROR: LeakSanitizer: detected memory leaks\n"):
            with self.subTest(report=report):
                if not self.d.alive():
                    self.d.start()
                self.plant(report)
                with self.assertRaisesRegex(AssertionError, "sanitizer report"):
                    self.d.stop()

    def test_report_before_a_restart_is_not_counted_twice(self):
        self.plant("x.c:1:2: runtime error: shift exponent\n")
        with self.assertRaises(AssertionError):
            self.d.restart()
        self.d.start()
        self.assertEqual(self.d.stop(), 0)

    def test_daemon_dead_before_stop_fails(self):
        os.kill(self.d.proc.pid, signal.SIGKILL)  # killed by something else than the test
        self.d.proc.wait()
        with self.assertRaisesRegex(AssertionError, "had exited with status"):
            self.d.stop()

    def test_kill9_is_not_a_failure(self):
        self.assertEqual(self.d.kill9(), -signal.SIGKILL)


if __name__ == "__main__":
    unittest.main()
