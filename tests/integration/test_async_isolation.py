"""One busy VM never starves the host's Async calls: calls queued on a VM's
operation lock give their worker back while they wait (a guest that ignores
clean shutdowns: the sim's test-only ignore-requests), and a queued task can
be cancelled, ending cancelled without running."""

import unittest

from harness import Daemon, DaemonTest, new_sr, ok
from test_vm_lifecycle import ignoring_vm, pv_vm, sim_control, wait_for

def threads(d):
    with open("/proc/%d/status" % d.proc.pid) as f:
        return int([line for line in f if line.startswith("Threads:")][0].split()[1])


QUEUED = 200  # more than the host's 64 Async worker slots
STUCK = 70    # guests, each ignoring its clean shutdown: more than the slots too


class TestAsyncIsolation(DaemonTest):
    # the queued calls wait long enough that only parking lets others through
    extra_config = "op_wait_timeout = 120\nclean_shutdown_timeout = 600\nsim_guest_delay_ms = 20\n"

    def status(self, task):
        return ok(self.x.task.get_status(self.s, task))

    def test_busy_vm_does_not_starve_other_async_calls(self):
        busy = ignoring_vm(self.d, self.x, self.s, "busy")
        other = pv_vm(self.x, self.s, "other")
        first = ok(self.x.Async.VM.clean_shutdown(self.s, busy))
        wait_for(lambda: ok(self.x.VM.get_current_operations(self.s, busy)))
        queued = [ok(self.x.Async.VM.clean_shutdown(self.s, busy)) for _ in range(QUEUED - 1)]
        wait_for(lambda: "cancel" in ok(self.x.task.get_allowed_operations(self.s, queued[-1])))
        # parked calls hold no thread either
        self.assertLess(threads(self.d), QUEUED // 2)
        # every other Async call of the host still runs, while all those wait for the busy VM
        task = ok(self.x.Async.VM.start(self.s, other, False, False))
        wait_for(lambda: self.status(task) != "pending", timeout=60)
        self.assertEqual(self.status(task), "success", ok(self.x.task.get_error_info(self.s, task)))
        self.assertEqual(ok(self.x.VM.get_power_state(self.s, other)), "Running")
        self.assertEqual([t for t in [first] + queued if self.status(t) != "pending"], [],
                         "the queued calls were still waiting")
        # a queued task is cancellable, and ends cancelled without running
        pause = ok(self.x.Async.VM.pause(self.s, busy))
        wait_for(lambda: "cancel" in ok(self.x.task.get_allowed_operations(self.s, pause)))
        ok(self.x.task.cancel(self.s, pause))
        wait_for(lambda: self.status(pause) not in ("pending", "cancelling"))
        self.assertEqual(self.status(pause), "cancelled")
        self.assertEqual(ok(self.x.task.get_error_info(self.s, pause)), ["TASK_CANCELLED", pause])
        self.assertEqual(ok(self.x.VM.get_power_state(self.s, busy)), "Running")
        # a hard shutdown cuts the running one short; the queued ones then find the VM halted
        ok(self.x.VM.hard_shutdown(self.s, busy))
        wait_for(lambda: all(self.status(t) != "pending" for t in [first] + queued), timeout=120)
        self.assertEqual(ok(self.x.task.get_error_info(self.s, first))[0], "TASK_CANCELLED")
        self.assertEqual({ok(self.x.task.get_error_info(self.s, t))[0] for t in queued}, {"VM_BAD_POWER_STATE"})
        ok(self.x.VM.hard_shutdown(self.s, other))


    def test_stuck_guests_do_not_starve_other_async_calls(self):
        """Clean shutdowns waiting on more stuck guests than there are worker slots."""
        stuck = [pv_vm(self.x, self.s, "stuck%d" % i) for i in range(STUCK)]
        tasks = []
        for vm in stuck:
            ok(self.x.VM.set_memory_limits(self.s, vm, str(8 << 20), str(16 << 20), str(16 << 20), str(16 << 20)))
            ok(self.x.VM.start(self.s, vm, False, False))
            sim_control(self.d, "ignore-requests " + ok(self.x.VM.get_uuid(self.s, vm)))
            tasks.append(ok(self.x.Async.VM.clean_shutdown(self.s, vm)))
        wait_for(lambda: all(ok(self.x.VM.get_current_operations(self.s, vm)) for vm in stuck), timeout=60)
        other = pv_vm(self.x, self.s, "other2")
        task = ok(self.x.Async.VM.start(self.s, other, False, False))
        wait_for(lambda: self.status(task) != "pending", timeout=60)
        self.assertEqual(self.status(task), "success", ok(self.x.task.get_error_info(self.s, task)))
        self.assertEqual([t for t in tasks if self.status(t) != "pending"], [], "the stuck ones were still waiting")
        # an Async hard shutdown cuts a waiting clean one short, parked or not
        hard = [ok(self.x.Async.VM.hard_shutdown(self.s, vm)) for vm in stuck]
        wait_for(lambda: all(self.status(t) not in ("pending", "cancelling") for t in hard + tasks), timeout=60)
        self.assertEqual({self.status(t) for t in hard}, {"success"})
        self.assertEqual({self.status(t) for t in tasks}, {"cancelled"})
        ok(self.x.VM.hard_shutdown(self.s, other))

    def test_parked_call_times_out(self):
        d = Daemon(extra_config="op_wait_timeout = 1\nclean_shutdown_timeout = 600\n").start()
        try:
            x, s = d.login()
            vm = ignoring_vm(d, x, s, "t")
            first = ok(x.Async.VM.clean_shutdown(s, vm))
            wait_for(lambda: ok(x.VM.get_current_operations(s, vm)))
            pause = ok(x.Async.VM.pause(s, vm))
            wait_for(lambda: ok(x.task.get_status(s, pause)) != "pending")
            self.assertEqual(ok(x.task.get_error_info(s, pause)),
                             ["OTHER_OPERATION_IN_PROGRESS", "VM", vm, "clean_shutdown", first])
            self.assertEqual(ok(x.VM.get_power_state(s, vm)), "Running")
            ok(x.VM.hard_shutdown(s, vm))
        finally:
            d.cleanup()

    def test_resumed_call_failing_early_gives_the_lock_back(self):
        """A parked VM.copy whose SR is forgotten meanwhile fails when resumed, before it takes the
        VM's lock again: the lock kept for it is released, and the VM stays usable."""
        vm = ignoring_vm(self.d, self.x, self.s, "copy-src")
        first = ok(self.x.Async.VM.clean_shutdown(self.s, vm))
        wait_for(lambda: ok(self.x.VM.get_current_operations(self.s, vm)))
        sr = new_sr(self.x, self.s, "short-lived")
        copy = ok(self.x.Async.VM.copy(self.s, vm, "copy", sr))
        wait_for(lambda: "cancel" in ok(self.x.task.get_allowed_operations(self.s, copy)))
        ok(self.x.SR.forget(self.s, sr))
        ok(self.x.task.cancel(self.s, first))
        wait_for(lambda: self.status(copy) != "pending")
        self.assertEqual(ok(self.x.task.get_error_info(self.s, copy))[0], "HANDLE_INVALID")
        ok(self.x.VM.pause(self.s, vm))
        ok(self.x.VM.hard_shutdown(self.s, vm))


if __name__ == "__main__":
    unittest.main()
