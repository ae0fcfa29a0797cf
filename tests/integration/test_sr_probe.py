"""SR.probe(host, device_config, type, sm_config) for the drivers this build
has: a directory's uuid-named subdirectories are the SRs found there, in
sm's SRlist XML, and the drivers' errors are sm's."""

import os
import shutil
import tempfile
import unittest
import uuid
from xml.sax.saxutils import escape as xml_escape

from harness import NULL_REF, DaemonTest, fail, ok, wait_task

EMPTY = '<?xml version="1.0" ?>\n<SRlist/>\n'


def srlist(uuids):
    return ('<?xml version="1.0" ?>\n<SRlist>\n' +
            "".join("\t<SR>\n\t\t<UUID>%s</UUID>\n\t</SR>\n" % u for u in sorted(uuids)) + "</SRlist>\n")


class TestSRProbe(DaemonTest):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="xenapid-probe-")
        self.addCleanup(shutil.rmtree, self.dir)
        self.host = ok(self.x.host.get_all(self.s))[0]

    def probe(self, device_config, type="file", sm_config=None):
        return self.x.SR.probe(self.s, self.host, device_config, type, sm_config or {})

    def test_uuid_named_directories_are_the_srs(self):
        srs = [str(uuid.uuid4()) for _ in range(3)]
        for u in srs:
            os.mkdir(os.path.join(self.dir, u))
        os.mkdir(os.path.join(self.dir, "not-an-sr"))
        os.mkdir(os.path.join(self.dir, str(uuid.uuid4()).upper()))  # sm's uuids are lowercase
        open(os.path.join(self.dir, str(uuid.uuid4())), "w").close()  # a file, not an SR
        outside = tempfile.mkdtemp(prefix="xenapid-probe-outside-")
        self.addCleanup(shutil.rmtree, outside)
        os.symlink(outside, os.path.join(self.dir, str(uuid.uuid4())))  # never followed
        for type in ("file", "iso", "FILE"):
            with self.subTest(type):
                self.assertEqual(ok(self.probe({"location": self.dir}, type)), srlist(srs))
        self.assertEqual(ok(self.probe({"location": self.dir + "/"})), srlist(srs))

    def test_empty_directory(self):
        self.assertEqual(ok(self.probe({"location": self.dir})), EMPTY)

    def test_async(self):
        u = str(uuid.uuid4())
        os.mkdir(os.path.join(self.dir, u))
        task = ok(self.x.Async.SR.probe(self.s, self.host, {"location": self.dir}, "file", {}))
        rec = wait_task(self.x, self.s, task)
        self.assertEqual(rec["status"], "success", rec)
        # As xapi: the task's result is the XML-RPC <value> of the string.
        self.assertEqual(rec["result"], "<value>%s</value>" % xml_escape(srlist([u]), {'"': "&quot;"}))

    def test_driver_errors(self):
        missing = os.path.join(self.dir, "missing")
        cases = [
            ({}, "file", ["SR_BACKEND_FAILURE_94", "", "The request is missing the location parameter", ""]),
            ({}, "iso", ["SR_BACKEND_FAILURE_220", "", "The request is missing the location parameter", ""]),
            ({"location": "relative"}, "iso",
             ["SR_BACKEND_FAILURE_226", "", "Invalid local path [opterr=location must be an absolute path]", ""]),
            ({"location": "/a/../b"}, "file",
             ["SR_BACKEND_FAILURE_1", "", "Invalid argument [opterr=location must be an absolute path without '..']",
              ""]),
            ({"location": missing}, "file",
             ["SR_BACKEND_FAILURE_47", "", "The SR is not available [opterr=No such file or directory]", ""]),
        ]
        for dc, type, want in cases:
            with self.subTest(dc=dc, type=type):
                self.assertEqual(fail(self.probe(dc, type)), want)
        open(missing, "w").close()
        self.assertEqual(fail(self.probe({"location": missing}))[0], "SR_BACKEND_FAILURE_47")

    def test_call_errors(self):
        self.assertEqual(fail(self.probe({"location": self.dir}, "nosuchdriver")),
                         ["SR_UNKNOWN_DRIVER", "nosuchdriver"])
        self.assertEqual(fail(self.x.SR.probe(self.s, NULL_REF, {"location": self.dir}, "file", {})),
                         ["HANDLE_INVALID", "host", NULL_REF])
        self.assertEqual(fail(self.probe({"location": self.dir, "SRmaster": "true"}))[0], "VALUE_NOT_SUPPORTED")
        self.assertEqual(fail(self.probe({"k%d" % i: "v" for i in range(100)}))[0], "INVALID_VALUE")

    def test_probe_changes_nothing(self):
        before = ok(self.x.SR.get_all_records(self.s))
        os.mkdir(os.path.join(self.dir, str(uuid.uuid4())))
        ok(self.probe({"location": self.dir}))
        self.assertEqual(ok(self.x.SR.get_all_records(self.s)), before)
        self.assertEqual(len(os.listdir(self.dir)), 1)


if __name__ == "__main__":
    unittest.main()
