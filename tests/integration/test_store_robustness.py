"""The object store when its storage fails or its files are not what they should be: a full disk
fails writes with OUT_OF_SPACE (and takes them back) while reads, event.from and existing sessions
go on, and writes work again once there is space, without a restart; a start on a full disk exits
once with the status systemd does not restart on; an empty or damaged database is refused, never
taken for a first start; the store's files are private whatever the umask; a call that fails
changes nothing (no event, no generation)."""

import configparser
import os
import stat
import subprocess
import tempfile
import threading
import unittest

from harness import ROOT, Daemon, create_vdi, create_vm, fail, ok, vm_record

EXIT_STORE = 74  # agent/main.c: the store cannot be used; RestartPreventExitStatus= in the unit
BIG = "x" * (256 << 10)  # a value that needs new pages in the WAL, whatever room is left in it


def event_from(x, s, classes, token, timeout):
    return ok(getattr(x.event, "from")(s, classes, token, timeout))


class Tmpfs:
    """A small tmpfs to be the daemon's state directory (root only)."""

    def __init__(self, size="8m"):
        self.dir = tempfile.mkdtemp(prefix="xenapid-tmpfs-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", self.dir],
                           capture_output=True, text=True)
        if r.returncode != 0:
            os.rmdir(self.dir)
            raise unittest.SkipTest("cannot mount a tmpfs here (needs root and mount rights): %s"
                                    % r.stderr.strip())
        self.filler = os.path.join(self.dir, "filler")

    def fill(self, leave=0):
        """Takes every free block but about `leave` bytes."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for n in (64 << 10, 4096, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\xff" * n)
                except OSError:
                    pass
            if leave:
                os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
        finally:
            os.close(fd)

    def free(self):
        os.unlink(self.filler)

    def cleanup(self):
        subprocess.run(["umount", "-l", self.dir], capture_output=True)
        os.rmdir(self.dir)


class FullDisk(unittest.TestCase):

    def setUp(self):
        self.fs = Tmpfs()
        self.addCleanup(self.fs.cleanup)
        self.state = os.path.join(self.fs.dir, "var")
        self.d = Daemon(state_dir=self.state)
        self.addCleanup(self.d.cleanup)

    def test_writes_fail_clearly_reads_go_on_and_space_coming_back_needs_no_restart(self):
        d = self.d.start()
        x, s = d.login()
        vm = create_vm(x, s, name_label="before")
        vms = sorted(ok(x.VM.get_all(s)))
        token = event_from(x, s, ["VM"], "", 0.0)["token"]

        self.fs.fill()
        err = fail(x.VM.set_name_label(s, vm, BIG))
        self.assertEqual(err, ["OUT_OF_SPACE", self.state])
        err = fail(x.VM.create(s, vm_record(name_label=BIG)))
        self.assertEqual(err, ["OUT_OF_SPACE", self.state])
        self.assertTrue(d.alive(), d.read_log())

        # Nothing half-written: memory is what the disk holds.
        self.assertEqual(ok(x.VM.get_name_label(s, vm)), "before")
        self.assertEqual(sorted(ok(x.VM.get_all(s))), vms)
        r = event_from(x, s, ["VM"], token, 0.5)
        self.assertEqual(r["events"], [], "a write that failed must not be an event")
        self.assertEqual(r["token"], token)
        # Reads of every kind go on; the session made before still works.
        self.assertTrue(ok(x.VM.get_all_records(s)))
        self.assertTrue(ok(x.host.get_all(s)))

        self.fs.free()
        ok(x.VM.set_name_label(s, vm, "after"))
        new = create_vm(x, s, name_label="new")
        self.assertEqual(ok(x.VM.get_name_label(s, vm)), "after")
        r = event_from(x, s, ["VM"], token, 5.0)
        self.assertEqual({e["ref"] for e in r["events"]}, {vm, new})

        # What was acknowledged is what is stored.
        d.restart()
        x, s = d.login()
        self.assertEqual(ok(x.VM.get_name_label(s, vm)), "after")
        self.assertEqual(sorted(ok(x.VM.get_all(s))), sorted(vms + [new]))

    def test_concurrent_writers_on_a_full_disk_get_what_memory_and_disk_agree_on(self):
        """Group commit: writes that fail in one batch fail together, and what was queued on top of
        them too. Whatever each writer was told, memory and then the disk (after a restart) say the
        same."""
        d = self.d.start()
        n = 8
        clients = [d.login() for _ in range(n)]
        x, s = clients[0]
        vms = [create_vm(x, s, name_label="vm%d" % i) for i in range(n)]
        acked = [("vm%d" % i, "") for i in range(n)]
        errors = []
        self.fs.fill(leave=192 << 10)  # room for some small writes, not for a big one

        def writer(i):
            cx, cs = clients[i]
            label, desc = acked[i]
            try:
                for k in range(12):
                    if k % 3 == 0:  # a big write: fails for want of space, with whatever shares its batch
                        new_label, new_desc = BIG + str(k), desc
                        r = cx.VM.set_name_label(cs, vms[i], new_label)
                    else:  # a small one: may fit in the WAL's free room, or fail
                        new_label, new_desc = label, "d%d" % k
                        r = cx.VM.set_name_description(cs, vms[i], new_desc)
                    if r["Status"] == "Success":
                        label, desc = new_label, new_desc
                    elif r["ErrorDescription"] != ["OUT_OF_SPACE", self.state]:
                        errors.append(r)
                acked[i] = (label, desc)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertTrue(d.alive(), d.read_log())

        def state(x, s):
            return [(ok(x.VM.get_name_label(s, vm)), ok(x.VM.get_name_description(s, vm))) for vm in vms]

        self.assertEqual(state(x, s), acked, "memory must hold exactly what was acknowledged")
        self.fs.free()
        d.restart()
        x, s = d.login()
        self.assertEqual(state(x, s), acked, "the disk must hold exactly what was acknowledged")

    def test_login_on_a_full_disk(self):
        """A login stores a session: on a full disk it fails with OUT_OF_SPACE (a clear error, not a
        crash), and sessions made before go on working."""
        d = self.d.start()
        x, s = d.login()
        self.fs.fill()
        # Make the WAL's free room too small for anything (a big write first).
        fail(x.VM.create(s, vm_record(name_label=BIG)))
        r = x.session.login_with_password("root", d_password(), "1.0", "tests")
        if r["Status"] == "Failure":
            self.assertEqual(r["ErrorDescription"], ["OUT_OF_SPACE", self.state])
        self.assertTrue(ok(x.VM.get_all(s)) is not None)
        self.assertTrue(d.alive(), d.read_log())

    def test_start_on_a_full_disk_exits_once_with_the_status_systemd_does_not_restart_on(self):
        d = self.d.start()
        x, s = d.login()
        vm = create_vm(x, s, name_label="kept")
        d.stop()
        self.fs.fill()
        d.start(wait=False)
        try:
            d.wait_ready()
            started = True
        except RuntimeError:
            started = False
        if started:  # it serves what it can: reads, and writes fail clearly
            x, s = d.login()
            self.assertEqual(ok(x.VM.get_name_label(s, vm)), "kept")
            self.assertEqual(fail(x.VM.set_name_label(s, vm, BIG))[0], "OUT_OF_SPACE")
        else:
            rc = d.wait_exit()
            log = d.read_log()
            self.assertEqual(rc, EXIT_STORE, log)
            self.assertIn("no space left", log)
            self.assertIn("Not restarted automatically", log)
        self.fs.free()
        d.stop()
        d.start()
        x, s = d.login()
        self.assertEqual(ok(x.VM.get_name_label(s, vm)), "kept")

    def test_the_unit_does_not_restart_on_the_store_exit_status(self):
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.read(os.path.join(ROOT, "systemd", "xenapid.service"))
        statuses = unit.get("Service", "RestartPreventExitStatus", fallback="").split()
        self.assertIn(str(EXIT_STORE), statuses)


def d_password():
    from harness import PASSWORD
    return PASSWORD


class BadDatabase(unittest.TestCase):

    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)
        os.makedirs(self.d.state_dir)
        self.db = os.path.join(self.d.state_dir, "xenapid.db")

    def refused(self):
        self.d.start(wait=False)
        rc = self.d.wait_exit(timeout=15)
        return rc, self.d.read_log()

    def test_an_empty_database_is_not_a_first_start(self):
        open(self.db, "wb").close()
        rc, log = self.refused()
        self.assertEqual(rc, EXIT_STORE, log)
        self.assertIn("is empty", log)
        self.assertIn("remove it", log)
        self.assertEqual(os.path.getsize(self.db), 0, "the empty file must be left as it was")

    def test_a_damaged_database_is_refused_with_how_to_recover(self):
        with open(self.db, "wb") as f:
            f.write(b"this is not a database at all\n" * 200)
        rc, log = self.refused()
        self.assertEqual(rc, EXIT_STORE, log)
        self.assertIn("not an SQLite database", log)
        self.assertIn("backup", log)

    def test_a_missing_database_is_a_first_start(self):
        self.d.start()
        x, s = self.d.login()
        self.assertTrue(ok(x.host.get_all(s)))
        self.assertFalse(os.path.exists(self.db + ".new"))


class CleanClose(unittest.TestCase):

    def test_a_clean_stop_closes_the_database(self):
        """Loading tombstones left a statement unfinalized, so sqlite3_close failed (unchecked) and
        the WAL was never checkpointed and removed at a clean stop."""
        d = Daemon()
        self.addCleanup(d.cleanup)
        d.start()
        x, s = d.login()
        ok(x.VM.destroy(s, create_vm(x, s)))  # a tombstone
        d.restart()  # loads it
        d.login()
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.exists(os.path.join(d.state_dir, "xenapid.db-wal")),
                         "the database was not closed: its WAL is left behind")
        self.assertNotIn("closing the database", d.read_log())


class FileModes(unittest.TestCase):
    """The database and its WAL hold live session refs (bearer tokens)."""

    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)
        self.old_umask = os.umask(0o022)
        self.addCleanup(os.umask, self.old_umask)

    def modes(self):
        st = self.d.state_dir
        out = {"dir": stat.S_IMODE(os.stat(st).st_mode)}
        for name in ("xenapid.db", "xenapid.db-wal", "xenapid.db-shm", "xenapid.lock"):
            p = os.path.join(st, name)
            if os.path.exists(p):
                out[name] = stat.S_IMODE(os.stat(p).st_mode)
        return out

    def check_private(self):
        m = self.modes()
        self.assertEqual(m["dir"], 0o700, m)
        for name in ("xenapid.db", "xenapid.db-wal", "xenapid.db-shm", "xenapid.lock"):
            self.assertIn(name, m)
            self.assertEqual(m[name], 0o600, "%s: %o" % (name, m[name]))

    def test_private_with_umask_022_in_a_directory_made_like_scripts_run_sh(self):
        os.makedirs(self.d.state_dir, mode=0o755)  # scripts/run.sh: mkdir -p var
        self.d.start()
        x, s = self.d.login()  # a session: in the WAL now
        create_vm(x, s)
        self.check_private()

    def test_files_left_readable_are_made_private_at_start(self):
        self.d.start()
        x, s = self.d.login()
        self.d.kill9()  # WAL and shm left behind, as after a crash
        st = self.d.state_dir
        os.chmod(st, 0o755)
        for name in ("xenapid.db", "xenapid.db-wal", "xenapid.db-shm", "xenapid.lock"):
            p = os.path.join(st, name)
            if os.path.exists(p):
                os.chmod(p, 0o644)
        self.d.start()
        self.d.login()
        self.check_private()


class AtomicWrites(unittest.TestCase):
    """A call that fails leaves the store as it was: VBD.create sets the VBD's VM (which adds the
    VBD to the VM's VBDs) before it finds a bad field later in the record."""

    def setUp(self):
        self.d = Daemon().start()
        self.addCleanup(self.d.cleanup)
        self.x, self.s = self.d.login()

    def test_a_failed_create_changes_nothing_and_is_no_event(self):
        x, s = self.x, self.s
        vm = create_vm(x, s)
        vdi = create_vdi(x, s)
        before = ok(x.VM.get_record(s, vm))
        token = event_from(x, s, ["*"], "", 0.0)["token"]
        rec = {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "no-such-mode",
               "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
               "qos_algorithm_params": {}}
        err = fail(x.VBD.create(s, rec))
        self.assertEqual(err[0], "INVALID_VALUE")
        self.assertEqual(ok(x.VM.get_record(s, vm)), before)
        self.assertEqual(ok(x.VBD.get_all(s)), [])
        r = event_from(x, s, ["*"], token, 0.5)
        self.assertEqual(r["events"], [], "a failed call must be no event")
        self.assertEqual(r["token"], token, "a failed call must consume no generation")
        # The store is whole afterwards: the same create, right, works.
        rec["mode"] = "RW"
        vbd = ok(x.VBD.create(s, rec))
        self.assertEqual(ok(x.VM.get_VBDs(s, vm)), [vbd])


if __name__ == "__main__":
    unittest.main()
