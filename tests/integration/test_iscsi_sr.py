"""The "iscsi" and "lvmoiscsi" SRs (storage/drv_iscsi.c) against a made-up
target (fake_iscsi.py: an iscsiadm answering as open-iscsi's, a sysfs tree whose
LUNs are loop devices): SR.probe's XML as sm's BaseISCSI gives it (targets
through SR_BACKEND_FAILURE_96, LUNs), SR.create logging in, SR.scan making one
VDI per LUN with sm_config LUNid/SCSIid, the LUN's bytes read through the VDI,
VDI.create refused as sm's LUNperVDI does, PBD.unplug logging out, and xapi's
error codes for bad device_config, an unreachable target and wrong CHAP
credentials. A real target and initiator run in the Xen lab (tests/e2e)."""

import os
import unittest
import xml.dom.minidom

from fake_iscsi import FakeTarget, can_loop
from harness import DaemonTest, fail, ok

MiB = 1 << 20
IQN = "iqn.2026-12.test.xenapid:lun1"
DATA = b"xenapid iscsi LUN 1\n" * 8


def texts(doc, parent, name):
    return [e.firstChild.data if e.firstChild else "" for e in doc.getElementsByTagName(parent)
            for e in e.getElementsByTagName(name)]


class IscsiConfigErrorsTest(DaemonTest):
    """device_config checks before anything runs (no target needed)."""

    def host(self):
        return ok(self.x.host.get_all(self.s))[0]

    def test_types_are_known(self):
        types = ok(self.x.SR.get_supported_types(self.s))
        self.assertIn("iscsi", types)
        self.assertIn("lvmoiscsi", types)

    def test_bad_device_config(self):
        cases = [
            ({}, "95"),  # ConfigTargetMissing
            ({"target": "127.0.0.1", "port": "0", "targetIQN": IQN}, "142"),  # ISCSIPort
            ({"target": "127.0.0.1", "port": "3260x", "targetIQN": IQN}, "142"),
            ({"target": "-o", "targetIQN": IQN}, "140"),  # DNSError: never an option to iscsiadm
            ({"target": "127.0.0.1"}, "96"),  # ConfigTargetIQNMissing (create needs it)
            ({"target": "127.0.0.1", "targetIQN": "-o update"}, "106"),  # InvalidIQN
            ({"target": "127.0.0.1", "targetIQN": IQN, "chapuser": "u"}, "1"),  # a user without a password
        ]
        for dc, code in cases:
            for t in ("iscsi", "lvmoiscsi"):
                err = fail(self.x.SR.create(self.s, self.host(), dc, "0", "x", "", t, "user", True, {}))
                self.assertEqual(err[0], "SR_BACKEND_FAILURE_" + code, (t, dc, err))
        err = fail(self.x.SR.create(self.s, self.host(), {"target": "127.0.0.1", "targetIQN": IQN}, "0", "x", "",
                                    "lvmoiscsi", "user", True, {}))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_107", err)  # ConfigSCSIid
        self.assertEqual([r for r in ok(self.x.SR.get_all_records(self.s)).values()
                          if r["type"] in ("iscsi", "lvmoiscsi")], [])


class IscsiUnreachableTest(DaemonTest):
    """A target whose port takes no connection: ISCSITarget (141), before iscsiadm runs."""

    def test_unreachable(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        host = ok(self.x.host.get_all(self.s))[0]
        dc = {"target": "127.0.0.1", "port": str(port), "targetIQN": IQN}
        err = fail(self.x.SR.create(self.s, host, dc, "0", "x", "", "iscsi", "user", True, {}))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_141", err)
        self.assertIn("127.0.0.1 port %d" % port, err[2])
        err = fail(self.x.SR.probe(self.s, host, {"target": "127.0.0.1", "port": str(port)}, "iscsi", {}))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_141", err)


class TargetTest(DaemonTest):
    """A daemon whose iscsiadm talks to a FakeTarget of TARGETS (its argument)."""

    TARGETS = {}

    @classmethod
    def setUpClass(cls):
        cls.target = FakeTarget(cls.TARGETS)
        cls.extra_config = cls.target.config()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.target.close()


@unittest.skipUnless(can_loop(), "needs root and loop devices")
class IscsiSrTest(TargetTest):
    TARGETS = {IQN: [{"lun": 1, "size": 16 * MiB, "data": DATA}, {"lun": 2, "size": 8 * MiB}],
               "iqn.2026-12.test.xenapid:chap": [{"lun": 1, "size": 4 * MiB}]}

    def host(self):
        return ok(self.x.host.get_all(self.s))[0]

    def dc(self, **over):
        d = {"target": "127.0.0.1", "port": str(self.target.port), "targetIQN": IQN}
        d.update(over)
        return {k: v for k, v in d.items() if v is not None}

    def create(self, dc, type="iscsi"):
        return self.x.SR.create(self.s, self.host(), dc, "0", "iscsi test", "", type, "user", True, {})

    def forget(self, sr):
        for pbd in ok(self.x.SR.get_PBDs(self.s, sr)):
            ok(self.x.PBD.unplug(self.s, pbd))
        ok(self.x.SR.forget(self.s, sr))

    def test_probe_targets(self):
        # Without targetIQN: the target's IQNs as sm's iscsi-target-iqns XML, in the error's third parameter.
        err = fail(self.x.SR.probe(self.s, self.host(), self.dc(targetIQN=None), "iscsi", {}))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_96", err)
        doc = xml.dom.minidom.parseString(err[3])
        self.assertEqual(texts(doc, "TGT", "TargetIQN"), ["iqn.2026-12.test.xenapid:chap", IQN, "*"])
        self.assertEqual(texts(doc, "TGT", "Port"), [str(self.target.port)] * 3)
        self.assertEqual(texts(doc, "TGT", "IPAddress"), ["127.0.0.1"] * 3)
        self.assertEqual(texts(doc, "TGT", "Index"), ["0", "1", "2"])
        self.assertIn(["-m", "discovery", "-t", "sendtargets", "-p", "127.0.0.1:%d" % self.target.port],
                      self.target.calls())

    def test_probe_luns(self):
        # With targetIQN: the LUNs (vendor, LUNid, size, SCSIid); the probe logs out again.
        xml_text = ok(self.x.SR.probe(self.s, self.host(), self.dc(), "iscsi", {}))
        doc = xml.dom.minidom.parseString(xml_text)
        luns = self.target.luns(IQN)
        self.assertEqual(texts(doc, "LUN", "SCSIid"), [l["scsi_id"] for l in luns])
        self.assertEqual(texts(doc, "LUN", "LUNid"), ["1", "2"])
        self.assertEqual(texts(doc, "LUN", "size"), [str(16 * MiB), str(8 * MiB)])
        self.assertEqual(texts(doc, "LUN", "vendor"), ["IET", "IET"])
        self.assertEqual(self.target.sessions(), [])
        # lvmoiscsi without SCSIid: ConfigSCSIid (107) with the same LUNs, as CloudStack parses them.
        err = fail(self.x.SR.probe(self.s, self.host(), self.dc(), "lvmoiscsi", {}))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_107", err)
        self.assertIn("<SCSIid>%s</SCSIid>" % luns[0]["scsi_id"], err[3])
        self.assertEqual(self.target.sessions(), [])

    def test_sr_lifecycle(self):
        sr = ok(self.create(self.dc()))
        try:
            self.assertEqual(len(self.target.sessions()), 1)
            pbd = ok(self.x.SR.get_PBDs(self.s, sr))[0]
            self.assertTrue(ok(self.x.PBD.get_currently_attached(self.s, pbd)))
            # SR.scan (at plug) introduced one VDI per LUN, raw, sm_config as sm's LUNperVDI.
            vdis = {ok(self.x.VDI.get_location(self.s, v)): v for v in ok(self.x.SR.get_VDIs(self.s, sr))}
            luns = self.target.luns(IQN)
            self.assertEqual(sorted(vdis), sorted(l["scsi_id"] for l in luns))
            rec = ok(self.x.VDI.get_record(self.s, vdis[luns[0]["scsi_id"]]))
            self.assertEqual(rec["sm_config"].get("LUNid"), "1")
            self.assertEqual(rec["sm_config"].get("SCSIid"), luns[0]["scsi_id"])
            self.assertEqual(rec["virtual_size"], str(16 * MiB))
            srec = ok(self.x.SR.get_record(self.s, sr))
            self.assertEqual(srec["physical_size"], str(24 * MiB))
            # The VDI's data is the LUN's: its first bytes come back through the export.
            status, _, body = self.d.http("GET", "/export_raw_vdi?session_id=%s&vdi=%s" % (self.s, rec["uuid"]),
                                          timeout=30)
            self.assertEqual(status, 200)
            self.assertEqual(len(body), 16 * MiB)
            self.assertEqual(body[:len(DATA)], DATA)
            # LUNs are made on the target: VDI.create fails as LUNperVDI does without a free LUN.
            err = fail(self.x.VDI.create(self.s, {
                "name_label": "x", "name_description": "", "SR": sr, "virtual_size": str(MiB), "type": "user",
                "sharable": False, "read_only": False, "other_config": {}, "xenstore_data": {}, "sm_config": {},
                "tags": []}))
            self.assertEqual(err[0], "SR_BACKEND_FAILURE_44", err)
            # One SR per target IQN and portal.
            err = fail(self.create(self.dc()))
            self.assertEqual(err[0], "SR_BACKEND_FAILURE_42", err)
            # PBD.unplug logs out; PBD.plug logs in again and finds the same VDIs.
            ok(self.x.PBD.unplug(self.s, pbd))
            self.assertEqual(self.target.sessions(), [])
            self.assertIn("--logout", self.target.calls()[-1])
            ok(self.x.PBD.plug(self.s, pbd))
            self.assertEqual(len(self.target.sessions()), 1)
            self.assertEqual(sorted(ok(self.x.SR.get_VDIs(self.s, sr))), sorted(vdis.values()))
        finally:
            self.forget(sr)
        self.assertEqual(self.target.sessions(), [])

    def test_chap(self):
        chap_iqn = "iqn.2026-12.test.xenapid:chap"
        self.target.target["chap"] = ["user1", "secret one"]
        self.target.save()
        try:
            err = fail(self.create(self.dc(targetIQN=chap_iqn)))
            self.assertEqual(err[0], "SR_BACKEND_FAILURE_68", err)  # ISCSILogin
            self.assertIn("code is 24", err[2])
            err = fail(self.create(self.dc(targetIQN=chap_iqn, chapuser="user1", chappassword="wrong")))
            self.assertEqual(err[0], "SR_BACKEND_FAILURE_68", err)
            self.assertEqual(self.target.sessions(), [])
            sr = ok(self.create(self.dc(targetIQN=chap_iqn, chapuser="user1", chappassword="secret one")))
            # each setting one argument, the password with its space: no shell
            self.assertIn(["-m", "node", "-T", chap_iqn, "-p", "127.0.0.1:%d" % self.target.port, "-o", "update",
                           "-n", "node.session.auth.password", "-v", "secret one"], self.target.calls())
            self.assertEqual(len(ok(self.x.SR.get_VDIs(self.s, sr))), 1)
            self.forget(sr)
        finally:
            self.target.target["chap"] = None
            self.target.save()

    def test_unknown_iqn(self):
        err = fail(self.create(self.dc(targetIQN="iqn.2026-12.test.xenapid:none")))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_68", err)
        self.assertIn("code is 19", err[2])

    def test_no_initiator_transport(self):
        # iscsiadm's own failure (recorded: no iscsi_tcp module) comes back with its message.
        self.target.target["no_transport"] = True
        self.target.save()
        try:
            err = fail(self.x.SR.probe(self.s, self.host(), self.dc(targetIQN=None), "iscsi", {}))
            self.assertEqual(err[0], "SR_BACKEND_FAILURE_83", err)  # ISCSIDiscovery
            self.assertIn("code is 12", err[2])
            self.assertIn("iSCSI driver not found", err[2])
        finally:
            self.target.target["no_transport"] = False
            self.target.save()

    def test_lvmoiscsi_bad_scsi_id(self):
        err = fail(self.create(self.dc(SCSIid="36000000000000000000000000000dead"), "lvmoiscsi"))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_107", err)
        self.assertEqual(self.target.sessions(), [])
        err = fail(self.create(self.dc(SCSIid="../../etc"), "lvmoiscsi"))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_107", err)


@unittest.skipUnless(can_loop(), "needs root and loop devices")
class IscsiSharedTargetTest(TargetTest):
    """Two SRs on one target (an iscsi SR, and an lvmoiscsi SR on one of its LUNs) share its session:
    unplugging either keeps it for the other; the last one logs out."""

    IQN = "iqn.2026-12.test.xenapid:shared"
    TARGETS = {IQN: [{"lun": 1, "size": 8 * MiB}, {"lun": 2, "size": 8 * MiB}]}

    def create(self, type, **over):
        dc = {"target": "127.0.0.1", "port": str(self.target.port), "targetIQN": self.IQN}
        dc.update(over)
        sr = ok(self.x.SR.create(self.s, ok(self.x.host.get_all(self.s))[0], dc, "0", type, "", type, "user", True,
                                 {}))
        self.addCleanup(self.forget, sr)
        return sr, ok(self.x.SR.get_PBDs(self.s, sr))[0]

    def forget(self, sr):
        for pbd in ok(self.x.SR.get_PBDs(self.s, sr)):
            ok(self.x.PBD.unplug(self.s, pbd))
        ok(self.x.SR.forget(self.s, sr))

    def logouts(self):
        return len([c for c in self.target.calls() if "--logout" in c])

    def test_unplugging_one_sr_keeps_the_others_session(self):
        raw, raw_pbd = self.create("iscsi")
        lvm, lvm_pbd = self.create("lvmoiscsi", SCSIid=self.target.luns(self.IQN)[1]["scsi_id"])
        self.assertEqual(len(self.target.sessions()), 1)
        logouts = self.logouts()

        ok(self.x.PBD.unplug(self.s, raw_pbd))
        self.assertEqual(len(self.target.sessions()), 1, "unplugging the iscsi SR logged out the lvmoiscsi SR's")
        self.assertEqual(self.logouts(), logouts)
        ok(self.x.SR.scan(self.s, lvm))

        ok(self.x.PBD.plug(self.s, raw_pbd))
        ok(self.x.PBD.unplug(self.s, lvm_pbd))
        self.assertEqual(len(self.target.sessions()), 1, "unplugging the lvmoiscsi SR logged out the iscsi SR's")
        ok(self.x.SR.scan(self.s, raw))
        self.assertEqual(len(ok(self.x.SR.get_VDIs(self.s, raw))), 2)

        # A probe while an SR uses the session does not end it either.
        ok(self.x.SR.probe(self.s, ok(self.x.host.get_all(self.s))[0],
                           {"target": "127.0.0.1", "port": str(self.target.port), "targetIQN": self.IQN}, "iscsi", {}))
        self.assertEqual(len(self.target.sessions()), 1)

        ok(self.x.PBD.unplug(self.s, raw_pbd))
        self.assertEqual(self.target.sessions(), [])
        self.assertEqual(self.logouts(), logouts + 1)


if __name__ == "__main__":
    unittest.main()
