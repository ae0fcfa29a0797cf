"""SIGTERM is bounded: whatever waits (a clean shutdown on a guest that
ignores it, calls queued on its VM, an Async task, event.from), the daemon
answers or closes every in-flight call and exits within the bound, leaving
the guests running; the next start reconciles them."""

import signal
import subprocess
import threading
import time
import unittest

from harness import Daemon, ok
from test_vm_lifecycle import ignoring_vm, wait_for

EXIT_BOUND = 10  # seconds: the requirement itself


class TestBoundedShutdown(unittest.TestCase):
    def test_sigterm_while_calls_wait(self):
        # a clean shutdown may wait for its guest for 20 minutes, as by default
        d = Daemon(extra_config="clean_shutdown_timeout = 1200\nop_wait_timeout = 600\n").start()
        try:
            x, s = d.login()
            vm = ignoring_vm(d, x, s, "stuck")
            domid = ok(x.VM.get_domid(s, vm))
            answers = {}

            def call(name, fn):
                try:
                    answers[name] = fn(d.proxy())
                except Exception as e:  # a closed connection is an allowed outcome
                    answers[name] = e

            waiting = [
                threading.Thread(target=call, args=("clean_shutdown", lambda p: p.VM.clean_shutdown(s, vm))),
                threading.Thread(target=call, args=("queued_pause", lambda p: p.VM.pause(s, vm))),
                threading.Thread(target=call, args=("event_from", lambda p: p.event["from"](s, ["VM"], "", 600.0))),
            ]
            waiting[0].start()
            wait_for(lambda: ok(x.VM.get_current_operations(s, vm)))
            task = ok(x.Async.VM.clean_shutdown(s, vm))
            for th in waiting[1:]:
                th.start()
            time.sleep(0.5)  # all of them in their waits
            d.proc.send_signal(signal.SIGTERM)
            try:
                d.proc.wait(timeout=EXIT_BOUND)
            except subprocess.TimeoutExpired:
                self.fail("xenapid still runs %d s after SIGTERM" % EXIT_BOUND)
            self.assertEqual(d.proc.returncode, 0)
            for th in waiting:
                th.join(timeout=5)
                self.assertFalse(th.is_alive(), "an in-flight call got neither an answer nor a closed connection")
            for name in ("clean_shutdown", "queued_pause"):
                r = answers[name]
                if isinstance(r, dict):
                    self.assertEqual(r["Status"], "Failure", name)
                    self.assertEqual(r["ErrorDescription"][0], "TASK_CANCELLED", name)
            d.proc = None
            d.log.close()
            # the guest still runs; the next start reconciles the record
            d.start()
            x, s = d.login()
            rec = ok(x.VM.get_record(s, vm))
            self.assertEqual((rec["power_state"], rec["domid"], rec["current_operations"]), ("Running", domid, {}))
            self.assertNotEqual(ok(x.task.get_status(s, task)), "pending")
            ok(x.VM.hard_shutdown(s, vm))
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
