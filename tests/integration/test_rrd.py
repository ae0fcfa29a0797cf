"""Statistics against the real daemon (sim backend, sampled every second): the
/rrd_updates body parsed the way CloudStack's stats collector parses it and
compared with the sample of xapi's documentation, a running guest's CPU time
growing, /host_rrd and /vm_rrd dumps, the Prometheus /metrics text, the data
source calls of host and VM, archives kept across a restart and dropped with
their VM, bad arguments and missing authentication."""

import base64
import json
import os
import re
import time
import unittest
import uuid as uuidlib
import xml.dom.minidom

from harness import PASSWORD, Daemon, DaemonTest, create_network, create_vbd, create_vdi, create_vif, create_vm, \
    fail, ok

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "rrd_updates_sample.xml")
CONFIG = "stats_interval = 1\nstats_save_interval = 1\n"


def cloudstack_parse(body):
    """As CitrixResourceBase.getHostStatsRawXML / getVmStatsRawXML read it: DOM
    children by position (no whitespace nodes allowed), legend entries split
    in 4, every row averaged per column, NaN skipped. Returns
    ({(cls, uuid, name): mean}, rows, columns)."""
    doc = xml.dom.minidom.parseString(body)
    xport = doc.documentElement
    assert xport.tagName == "xport", xport.tagName
    meta, data = xport.childNodes[0], xport.childNodes[1]
    assert meta.tagName == "meta" and data.tagName == "data"
    rows = int(meta.getElementsByTagName("rows")[0].childNodes[0].nodeValue)
    columns = int(meta.getElementsByTagName("columns")[0].childNodes[0].nodeValue)
    legend = [e.childNodes[0].nodeValue for e in meta.getElementsByTagName("legend")[0].childNodes]
    assert len(legend) == columns, (len(legend), columns)
    sums = {}
    for col, entry in enumerate(legend):
        parts = entry.split(":")
        assert len(parts) == 4, entry
        cf, cls, uuid, name = parts
        total, n = 0.0, 0
        for row in data.childNodes:
            assert row.tagName == "row"
            assert row.childNodes[0].tagName == "t"
            v = row.childNodes[col + 1]
            assert v.tagName == "v"
            x = float(v.childNodes[0].nodeValue)
            if x == x:
                total, n = total + x, n + 1
        sums[(cls, uuid, name)] = total / n if n else float("nan")
    assert len(data.childNodes) == rows
    return sums, rows, columns


def tag_shape(node):
    """The element names of a document, in order, text left out."""
    if node.nodeType != node.ELEMENT_NODE:
        return None
    kids = [tag_shape(c) for c in node.childNodes]
    return (node.tagName, [k for k in kids if k])


class RrdTest(DaemonTest):
    extra_config = CONFIG

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        x, s = cls.x, cls.s
        cls.vm = create_vm(x, s, name_label="stats-vm", VCPUs_max="2", VCPUs_at_startup="2")
        cls.vm_uuid = ok(x.VM.get_uuid(s, cls.vm))
        create_vif(x, s, cls.vm, create_network(x, s))
        vbd = create_vbd(x, s, cls.vm, create_vdi(x, s))
        ok(x.VM.start(s, cls.vm, False, False))
        cls.dev = ok(x.VBD.get_device(s, vbd))  # hda for this HVM guest (xvda for PV)
        assert cls.dev
        cls.host = ok(x.session.get_this_host(s, s))
        cls.host_uuid = ok(x.host.get_uuid(s, cls.host))
        cls.wait_samples(cls.d, cls.s, cls.vm_uuid, 3)

    @staticmethod
    def wait_samples(d, s, vm_uuid, n, timeout=20):
        """Until the VM's finest archive has n known cpu0 points."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st, _, body = d.http("GET", "/rrd_updates?session_id=%s&start=-60&vm_uuid=%s" % (s, vm_uuid))
            if st == 200 and b"cpu0" in body:
                doc = xml.dom.minidom.parseString(body)
                legend = [e.childNodes[0].nodeValue for e in doc.getElementsByTagName("entry")]
                col = [i for i, e in enumerate(legend) if e.endswith(":cpu0")][0]
                known = [r for r in doc.getElementsByTagName("row")
                         if r.getElementsByTagName("v")[col].childNodes[0].nodeValue != "NaN"]
                if len(known) >= n:
                    return
            time.sleep(0.3)
        raise AssertionError("no %d samples of %s within %ss" % (n, vm_uuid, timeout))

    def get(self, path, **kw):
        sep = "&" if "?" in path else "?"
        return self.d.http("GET", path + sep + "session_id=" + self.s, **kw)

    # ---- /rrd_updates ----

    def test_cloudstack_host_and_vm_stats(self):
        # GetHostStatsCommand / GetVmStatsCommand: cf=AVERAGE, interval=60, start=now-1100; host=true|false
        start = int(time.time()) - 1100
        st, headers, body = self.get("/rrd_updates?host=true&cf=AVERAGE&interval=60&start=%d" % start)
        self.assertEqual(st, 200)
        self.assertEqual(headers["Content-Type"], "text/xml")
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")
        sums, rows, cols = cloudstack_parse(body)
        self.assertGreater(rows, 0)
        names = set(sums)
        for name in ("memory_total_kib", "memory_free_kib", "cpu_avg", "cpu0", "loadavg"):
            self.assertIn(("host", self.host_uuid, name), names)
        for name in ("cpu0", "cpu1", "memory", "memory_target", "memory_internal_free", "vif_0_rx", "vif_0_tx",
                     "vbd_%s_read" % self.dev, "vbd_%s_write" % self.dev):
            self.assertIn(("vm", self.vm_uuid, name), names)
        self.assertTrue(all(k[0] in ("host", "vm") for k in names))
        self.assertIn("<step>60</step>", body.decode())
        # host=false: the VMs only
        st, _, body = self.get("/rrd_updates?host=false&cf=AVERAGE&interval=60&start=%d" % start)
        sums, _, _ = cloudstack_parse(body)
        self.assertFalse([k for k in sums if k[0] == "host"])
        self.assertIn(("vm", self.vm_uuid, "cpu0"), sums)

    def test_values_at_the_finest_step(self):
        st, _, body = self.get("/rrd_updates?host=true&start=-30&vm_uuid=%s" % self.vm_uuid)
        self.assertEqual(st, 200)
        sums, _, _ = cloudstack_parse(body)
        self.assertIn("<step>1</step>", body.decode())
        # sim: vCPU 0 busy 10 %, vCPU 1 15 %; VIF 0 receives 1 MB/s; the disk reads 2 MB/s
        self.assertAlmostEqual(sums[("vm", self.vm_uuid, "cpu0")], 0.10, delta=0.01)
        self.assertAlmostEqual(sums[("vm", self.vm_uuid, "cpu1")], 0.15, delta=0.01)
        self.assertAlmostEqual(sums[("vm", self.vm_uuid, "vif_0_rx")], 1e6, delta=1e5)
        self.assertAlmostEqual(sums[("vm", self.vm_uuid, "vbd_%s_read" % self.dev)], 2e6, delta=2e5)
        self.assertEqual(sums[("vm", self.vm_uuid, "memory")], 256 << 20)
        total = sums[("host", self.host_uuid, "memory_total_kib")]
        free = sums[("host", self.host_uuid, "memory_free_kib")]
        self.assertGreater(total, 0)
        self.assertLessEqual(free, total)
        self.assertTrue(0 <= sums[("host", self.host_uuid, "cpu_avg")] <= 1)

    def test_same_shape_as_xapi_sample(self):
        with open(SAMPLE, "rb") as f:
            sample = f.read()
        st, _, ours = self.get("/rrd_updates?host=true&cf=AVERAGE&start=-10&vm_uuid=none")
        self.assertEqual(st, 200)
        self.assertTrue(ours.startswith(b'<?xml version="1.0" encoding="UTF-8"?><xport><meta><start>'))
        a = tag_shape(xml.dom.minidom.parseString(sample).documentElement)
        b = tag_shape(xml.dom.minidom.parseString(ours).documentElement)
        # xport -> meta (start, step, end, rows, columns, legend) and data; rows are t then v...
        self.assertEqual(a[0], b[0])
        self.assertEqual([c[0] for c in a[1]], [c[0] for c in b[1]])
        self.assertEqual([c[0] for c in a[1][0][1]], [c[0] for c in b[1][0][1]])
        self.assertEqual({r[0] for r in b[1][1][1]}, {"row"})
        self.assertEqual({c[0] for r in b[1][1][1] for c in r[1][1:]}, {"v"})
        self.assertTrue(all(r[1][0][0] == "t" for r in b[1][1][1]))
        # rows newest first, one step apart, within [start, end]
        doc = xml.dom.minidom.parseString(ours)
        ts = [int(t.childNodes[0].nodeValue) for t in doc.getElementsByTagName("t")]
        end = int(doc.getElementsByTagName("end")[0].childNodes[0].nodeValue)
        start = int(doc.getElementsByTagName("start")[0].childNodes[0].nodeValue)
        self.assertEqual(ts[0], end)
        self.assertEqual(ts, list(range(end, end - len(ts), -1)))
        self.assertGreaterEqual(ts[-1], start)

    def test_cpu_time_grows_while_running(self):
        def cpu_seconds():
            st, _, body = self.get("/metrics")
            self.assertEqual(st, 200)
            m = re.search(r'^xenapid_vm_cpu_seconds_total\{vm="%s",vcpu="0"\} (\S+)$' % self.vm_uuid,
                          body.decode(), re.M)
            self.assertIsNotNone(m, body[:2000])
            return float(m.group(1))
        first = cpu_seconds()
        time.sleep(2.5)
        second = cpu_seconds()
        self.assertGreater(second, first)
        self.assertAlmostEqual(second - first, 0.1 * 2.5, delta=0.15)

    def test_paused_guest_uses_no_cpu(self):
        x, s = self.x, self.s
        vm = create_vm(x, s, name_label="paused-vm")
        vm_uuid = ok(x.VM.get_uuid(s, vm))
        ok(x.VM.start(s, vm, True, False))  # paused from the start

        def cpu_seconds():
            m = re.search(r'^xenapid_vm_cpu_seconds_total\{vm="%s",vcpu="0"\} (\S+)$' % vm_uuid,
                          self.get("/metrics")[2].decode(), re.M)
            return float(m.group(1)) if m else None
        deadline = time.monotonic() + 10
        while cpu_seconds() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        first = cpu_seconds()
        self.assertIsNotNone(first)
        time.sleep(2.2)
        self.assertEqual(cpu_seconds(), first)
        ok(x.VM.unpause(s, vm))
        time.sleep(2.2)
        self.assertGreater(cpu_seconds(), first)
        ok(x.VM.hard_shutdown(s, vm))

    def test_json(self):
        st, headers, body = self.get("/rrd_updates?start=-10&host=true&json=true")
        self.assertEqual(st, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        doc = json.loads(body)
        meta = doc["meta"]
        for k in ("start", "step", "end", "rows", "columns"):
            self.assertIsInstance(meta[k], str)
        self.assertEqual(int(meta["columns"]), len(meta["legend"]))
        self.assertEqual(int(meta["rows"]), len(doc["data"]))
        for row in doc["data"]:
            self.assertIsInstance(row["t"], str)
            self.assertEqual(len(row["values"]), len(meta["legend"]))
            self.assertTrue(all(isinstance(v, str) for v in row["values"]))
        # Accept naming JSON also selects it; a wildcard keeps XML (CloudStack's Java client sends one)
        _, headers, _ = self.get("/rrd_updates?start=-10", headers={"Accept": "application/json"})
        self.assertEqual(headers["Content-Type"], "application/json")
        _, headers, _ = self.get("/rrd_updates?start=-10", headers={"Accept": "text/html, image/gif, *; q=.2, */*; q=.2"})
        self.assertEqual(headers["Content-Type"], "text/xml")

    def test_vm_selection(self):
        # repeated vm_uuid, the special none, and a uuid without an RRD (left out)
        other = str(uuidlib.uuid4())
        _, _, body = self.get("/rrd_updates?start=-10&vm_uuid=%s&vm_uuid=%s" % (self.vm_uuid, other))
        sums, _, _ = cloudstack_parse(body)
        self.assertTrue(sums)
        self.assertEqual({k[1] for k in sums}, {self.vm_uuid})
        _, _, body = self.get("/rrd_updates?start=-10&vm_uuid=none")
        self.assertEqual(cloudstack_parse(body)[2], 0)
        # MIN archives exist for the host only
        _, _, body = self.get("/rrd_updates?start=-600&cf=MIN&interval=60&host=true")
        sums, _, _ = cloudstack_parse(body)
        self.assertTrue(sums)
        self.assertIn("<entry>MIN:host:", body.decode())
        self.assertNotIn(":vm:", body.decode())
        # no cf, or one xapi does not know: every CF (cf is case-sensitive)
        for cf in ("", "&cf=average", "&cf=BOGUS"):
            _, _, body = self.get("/rrd_updates?start=-600&interval=60&host=true&vm_uuid=none" + cf)
            text = body.decode()
            for c in ("AVERAGE", "MIN", "MAX"):
                self.assertIn("<entry>%s:host:%s:memory_total_kib</entry>" % (c, self.host_uuid), text, cf)

    def test_bad_arguments_400(self):
        for q in ("", "start=", "start=abc", "start=10&interval=x", "start=10&interval=-5",
                  "start=10&vm_uuid=not-a-uuid"):
            st, _, body = self.get("/rrd_updates?" + q)
            self.assertEqual(st, 400, q)
        # the ends of int64 and far-off times: an answer, no rows
        for start in ("9223372036854775807", "-9223372036854775808", "4000000000"):
            st, _, body = self.get("/rrd_updates?host=true&start=" + start)
            self.assertEqual(st, 200, start)
            cloudstack_parse(body)
        st, _, body = self.get("/rrd_updates?host=true&start=4000000000")
        self.assertEqual(cloudstack_parse(body)[1], 0)
        self.assertEqual(self.get("/rrd_updates?start=1&interval=9223372036854775807&host=true")[0], 200)
        self.assertEqual(self.get("/vm_rrd")[0], 400)
        self.assertEqual(self.get("/vm_rrd?uuid=x")[0], 400)
        self.assertEqual(self.get("/vm_rrd?uuid=%s" % uuidlib.uuid4())[0], 404)

    def test_unauthenticated(self):
        for path in ("/rrd_updates?start=-10", "/host_rrd", "/vm_rrd?uuid=" + self.vm_uuid, "/metrics"):
            st, _, body = self.d.http("GET", path)
            self.assertEqual(st, 401, path)
            self.assertNotIn(b"cpu0", body)
            st, _, _ = self.d.http("GET", path + ("&" if "?" in path else "?") + "session_id=OpaqueRef:nope")
            self.assertEqual(st, 401, path)
        # Nova reads /vm_rrd with user:password@ in the URL: basic auth
        auth = base64.b64encode(b"root:" + PASSWORD.encode()).decode()
        st, _, body = self.d.http("GET", "/vm_rrd?uuid=" + self.vm_uuid, headers={"Authorization": "Basic " + auth})
        self.assertEqual(st, 200)

    # ---- full dumps ----

    def test_vm_rrd_as_nova_reads_it(self):
        # Nova's _get_rrd: <lastupdate>, the <ds> names, the last row of the first <rra>
        st, headers, body = self.get("/vm_rrd?uuid=" + self.vm_uuid)
        self.assertEqual(st, 200)
        self.assertEqual(headers["Content-Type"], "text/xml")
        doc = xml.dom.minidom.parseString(body)
        root = doc.documentElement
        self.assertEqual(root.tagName, "rrd")
        self.assertEqual([c.tagName for c in root.childNodes[:3]], ["version", "step", "lastupdate"])
        last = int(root.getElementsByTagName("lastupdate")[0].childNodes[0].nodeValue)
        self.assertLessEqual(abs(last - time.time()), 5)
        names = [d.getElementsByTagName("name")[0].childNodes[0].nodeValue
                 for d in root.childNodes if d.tagName == "ds"]
        self.assertIn("cpu0", names)
        rras = [c for c in root.childNodes if c.tagName == "rra"]
        self.assertEqual(len(rras), 4)  # a VM: AVERAGE at 4 timescales
        self.assertEqual([r.getElementsByTagName("cf")[0].childNodes[0].nodeValue for r in rras], ["AVERAGE"] * 4)
        rows = rras[0].getElementsByTagName("database")[0].getElementsByTagName("row")
        self.assertEqual(len(rows), 600)  # 10 minutes of 1 s rows (120 of 5 s at the default step)
        newest = [v.childNodes[0].nodeValue for v in rows[-1].getElementsByTagName("v")]
        self.assertEqual(len(newest), len(names))
        self.assertAlmostEqual(float(newest[names.index("cpu0")]), 0.1, delta=0.01)

    def test_host_rrd(self):
        st, _, body = self.get("/host_rrd")
        self.assertEqual(st, 200)
        root = xml.dom.minidom.parseString(body).documentElement
        rras = [c for c in root.childNodes if c.tagName == "rra"]
        self.assertEqual(len(rras), 10)
        self.assertEqual([r.getElementsByTagName("cf")[0].childNodes[0].nodeValue for r in rras[1:4]],
                         ["AVERAGE", "MIN", "MAX"])
        st, headers, body = self.get("/host_rrd?json=true")
        self.assertEqual(headers["Content-Type"], "application/json")
        doc = json.loads(body)
        self.assertEqual(doc["version"], "0003")
        self.assertEqual(len(doc["rra"]), 10)
        self.assertIn("memory_total_kib", [d["name"] for d in doc["ds"]])

    # ---- /metrics ----

    def test_metrics_text_format(self):
        st, headers, body = self.get("/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        text = body.decode()
        families = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ")
                self.assertNotIn(name, families)  # one block per family
                families[name] = kind
            elif line and not line.startswith("#"):
                m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*)\} (\S+)$', line)
                self.assertIsNotNone(m, line)
                self.assertIn(m.group(1), families)
                float(m.group(4).replace("+Inf", "inf"))
        self.assertEqual(families["xenapid_vm_cpu_seconds_total"], "counter")
        self.assertEqual(families["xenapid_vm_memory_bytes"], "gauge")
        self.assertEqual(families["xenapid_host_memory_total_bytes"], "gauge")
        self.assertIn('xenapid_vm_memory_bytes{vm="%s"} %d' % (self.vm_uuid, 256 << 20), text)
        self.assertIn('xenapid_vm_network_receive_bytes_total{vm="%s",vif="0"}' % self.vm_uuid, text)
        self.assertIn('xenapid_vm_disk_read_bytes_total{vm="%s",device="%s"}' % (self.vm_uuid, self.dev), text)

    # ---- data source calls ----

    def test_vm_data_sources(self):
        x, s = self.x, self.s
        dss = ok(x.VM.get_data_sources(s, self.vm))
        by_name = {d["name_label"]: d for d in dss}
        for name in ("cpu0", "memory", "vif_0_rx", "vbd_%s_write" % self.dev):
            self.assertIn(name, by_name)
        cpu = by_name["cpu0"]
        self.assertEqual(set(cpu), {"name_label", "name_description", "enabled", "standard", "units", "min",
                                    "max", "value"})
        self.assertEqual((cpu["enabled"], cpu["standard"], cpu["min"], cpu["max"], cpu["value"]),
                         (True, True, 0.0, 1.0, 0.0))
        v = ok(x.VM.query_data_source(s, self.vm, "cpu0"))
        self.assertAlmostEqual(v, 0.1, delta=0.01)
        self.assertEqual(ok(x.VM.query_data_source(s, self.vm, "memory")), float(256 << 20))
        self.assertEqual(fail(x.VM.query_data_source(s, self.vm, "no_such_ds")), ["INVALID_VALUE", "data_source",
                                                                                  "no_such_ds"])
        self.assertEqual(fail(x.VM.get_data_sources(s, "OpaqueRef:nope"))[0], "HANDLE_INVALID")
        self.assertEqual(fail(x.VM.record_data_source(s, self.vm, "no_such_ds")),
                         ["INVALID_VALUE", "data_source", "no_such_ds"])

    def test_forget_and_record(self):
        x, s = self.x, self.s
        ok(x.VM.forget_data_source_archives(s, self.vm, "vif_0_tx"))
        ok(x.VM.forget_data_source_archives(s, self.vm, "vif_0_tx"))  # idempotent
        ok(x.VM.forget_data_source_archives(s, self.vm, "no_such_ds"))
        # a standard source comes back (empty) with the next sample; record_data_source re-adds it at once
        ok(x.VM.record_data_source(s, self.vm, "vif_0_tx"))
        ok(x.VM.record_data_source(s, self.vm, "vif_0_tx"))  # idempotent
        by_name = {d["name_label"]: d for d in ok(x.VM.get_data_sources(s, self.vm))}
        self.assertTrue(by_name["vif_0_tx"]["enabled"])

    def test_host_data_sources(self):
        x, s = self.x, self.s
        names = {d["name_label"] for d in ok(x.host.get_data_sources(s, self.host))}
        for name in ("cpu0", "cpu_avg", "loadavg", "memory_total_kib", "memory_free_kib", "running_domains"):
            self.assertIn(name, names)
        self.assertGreater(ok(x.host.query_data_source(s, self.host, "memory_total_kib")), 0)
        # the running guest and the control domain, as Xen counts domains
        self.assertEqual(ok(x.host.query_data_source(s, self.host, "running_domains")), 2.0)
        dom0 = ok(x.VM.get_all_records_where(s, 'field "is_control_domain"="true"'))
        self.assertGreater(ok(x.VM.query_data_source(s, list(dom0)[0], "memory")), 0)

        def known_loadavg():
            _, _, body = self.get("/rrd_updates?start=-60&host=true&vm_uuid=none")
            sums = xml.dom.minidom.parseString(body)
            legend = [e.childNodes[0].nodeValue for e in sums.getElementsByTagName("entry")]
            name = "AVERAGE:host:%s:loadavg" % self.host_uuid
            if name not in legend:  # forgotten, not sampled again yet
                return 0
            col = legend.index(name)
            return len([r for r in sums.getElementsByTagName("row")
                        if r.getElementsByTagName("v")[col].childNodes[0].nodeValue != "NaN"])
        deadline = time.monotonic() + 10
        while known_loadavg() < 4 and time.monotonic() < deadline:
            time.sleep(0.3)
        self.assertGreaterEqual(known_loadavg(), 4)
        # forgotten: its history goes; being standard, it comes back empty with the next sample
        ok(x.host.forget_data_source_archives(s, self.host, "loadavg"))
        self.assertLessEqual(known_loadavg(), 2)
        self.assertEqual(fail(x.host.get_data_sources(s, "OpaqueRef:nope"))[0], "HANDLE_INVALID")

    def test_halted_vm_has_no_data_sources(self):
        x, s = self.x, self.s
        vm = create_vm(x, s, name_label="never-started")
        self.assertEqual(ok(x.VM.get_data_sources(s, vm)), [])
        self.assertEqual(fail(x.VM.query_data_source(s, vm, "cpu0")), ["INVALID_VALUE", "data_source", "cpu0"])


class RrdPersistenceTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(extra_config=CONFIG).start()

    def tearDown(self):
        self.d.cleanup()

    def rows(self, s, vm_uuid):
        st, _, body = self.d.http("GET", "/rrd_updates?session_id=%s&start=-300&vm_uuid=%s" % (s, vm_uuid))
        self.assertEqual(st, 200)
        doc = xml.dom.minidom.parseString(body)
        legend = [e.childNodes[0].nodeValue for e in doc.getElementsByTagName("entry")]
        col = legend.index("AVERAGE:vm:%s:cpu0" % vm_uuid)
        return {int(r.getElementsByTagName("t")[0].childNodes[0].nodeValue):
                r.getElementsByTagName("v")[col].childNodes[0].nodeValue for r in doc.getElementsByTagName("row")}

    def test_archives_survive_restart_and_go_with_their_vm(self):
        x, s = self.d.login()
        vm = create_vm(x, s, name_label="kept")
        vm_uuid = ok(x.VM.get_uuid(s, vm))
        ok(x.VM.start(s, vm, False, False))
        RrdTest.wait_samples(self.d, s, vm_uuid, 3)
        before = {t: v for t, v in self.rows(s, vm_uuid).items() if v != "NaN"}
        self.assertGreaterEqual(len(before), 3)
        self.assertEqual(self.d.stop(), 0)
        path = os.path.join(self.d.state_dir, "rrd", "vm-%s.rrd" % vm_uuid)
        self.assertTrue(os.path.exists(path))
        self.assertFalse([f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")])

        self.d.start()
        x, s = self.d.login()
        after = self.rows(s, vm_uuid)
        for t, v in before.items():
            self.assertEqual(after.get(t), v, t)
        # halted, the VM keeps its archive (saves go on every second); destroyed, it loses it at the next save
        ok(x.VM.hard_shutdown(s, vm))
        time.sleep(2.5)
        self.assertTrue(os.path.exists(path))
        st, _, _ = self.d.http("GET", "/vm_rrd?session_id=%s&uuid=%s" % (s, vm_uuid))
        self.assertEqual(st, 200)
        ok(x.VM.destroy(s, vm))
        deadline = time.monotonic() + 10
        while os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertFalse(os.path.exists(path))
        st, _, _ = self.d.http("GET", "/vm_rrd?session_id=%s&uuid=%s" % (s, vm_uuid))
        self.assertEqual(st, 404)

    def test_samples_do_not_write_the_store(self):
        x, s = self.d.login()
        vm = create_vm(x, s, name_label="quiet")
        vm_uuid = ok(x.VM.get_uuid(s, vm))
        ok(x.VM.start(s, vm, False, False))
        RrdTest.wait_samples(self.d, s, vm_uuid, 2)

        def store_state():
            out = []
            for name in ("xenapid.db", "xenapid.db-wal"):
                p = os.path.join(self.d.state_dir, name)
                st = os.stat(p) if os.path.exists(p) else None
                out.append((name, st.st_size, st.st_mtime_ns) if st else (name,))
            return out
        before = store_state()
        rrd_file = os.path.join(self.d.state_dir, "rrd", "vm-%s.rrd" % vm_uuid)
        rrd_before = os.stat(rrd_file).st_mtime_ns if os.path.exists(rrd_file) else 0
        time.sleep(3.5)  # 3 samples and 3 saves
        self.assertEqual(store_state(), before)
        self.assertGreater(os.stat(rrd_file).st_mtime_ns, rrd_before)

    def wait_host_rrd(self, s):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st, _, body = self.d.http("GET", "/host_rrd?session_id=" + s)
            if st == 200:
                return body
            time.sleep(0.2)
        self.fail("no host RRD")

    def test_damaged_archive_starts_afresh(self):
        x, s = self.d.login()
        host_uuid = ok(x.host.get_uuid(s, ok(x.session.get_this_host(s, s))))
        self.wait_host_rrd(s)
        self.assertEqual(self.d.stop(), 0)
        path = os.path.join(self.d.state_dir, "rrd", "host-%s.rrd" % host_uuid)
        with open(path, "r+b") as f:
            f.truncate(100)
        self.d.start()
        x, s = self.d.login()
        self.assertIn("cannot be read", self.d.read_log())
        self.assertIn(b"memory_total_kib", self.wait_host_rrd(s))


if __name__ == "__main__":
    unittest.main()
