"""Strings XML cannot carry: one client writing one over JSON-RPC must not make
every XML-RPC reply that holds it malformed for every other client.

Stored strings follow xapi's database rule (its UTF8_XML check): valid UTF-8,
no control characters but TAB, LF and CR, no U+FFFE/U+FFFF or other Unicode
non-characters. A client writing anything else gets INVALID_VALUE; a store of
an older version that already holds such a string is still served as
well-formed XML."""

import os
import sqlite3
import unittest
import xmlrpc.client

from harness import Daemon, DaemonTest, RawXML, create_vm, fail, ok, vm_record, xml_call

# What no client may store: each refused over JSON-RPC (XML-RPC cannot even send most of them).
REFUSED = {
    "U+FFFE": "\ufffe",
    "U+FFFF": "\uffff",
    "U+0001": "\x01",
    "NUL": "\x00",
    "ESC": "\x1b",
    "U+000B": "\x0b",
    "U+FDD0": "\ufdd0",
    "U+1FFFE": "\U0001fffe",
    "U+10FFFF": "\U0010ffff",
}
# Characters next to those, which are fine.
ACCEPTED = "tab\t lf\n cr\r \ufffd \ufdcf \ufdf0 \U0001fffd \u00e9\u20ac\U0001F600 ~\x7f"


class StringCharsTest(DaemonTest):
    def jsonrpc_error(self, method, params):
        r = self.d.jsonrpc(method, params)
        self.assertIn("error", r, "%s%r was accepted: %r" % (method, params[1:], r))
        return [r["error"]["message"]] + r["error"].get("data", [])

    def assert_xml_replies_parse(self):
        """Every client's view of all VMs: xmlrpc.client would raise ExpatError on a malformed reply."""
        recs = ok(self.x.VM.get_all_records(self.s))
        self.assertTrue(recs)
        return recs

    def test_set_field_refused_and_xml_stays_well_formed(self):
        vm = create_vm(self.x, self.s, name_label="before")
        for name, ch in REFUSED.items():
            with self.subTest(char=name):
                err = self.jsonrpc_error("VM.set_name_label", [self.s, vm, "a" + ch + "b"])
                self.assertEqual(err[0], "INVALID_VALUE", err)
                self.assertIn("XML", err[1])
                self.assertEqual(err[2], "value")
                self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), "before")
        self.assert_xml_replies_parse()

    def test_create_and_map_entries_refused(self):
        vm = create_vm(self.x, self.s)
        for field, over in (("name_label", {"name_label": "x\ufffe"}),
                            ("other_config key", {"other_config": {"k\uffff": "v"}}),
                            ("other_config value", {"other_config": {"k": "v\x01"}})):
            with self.subTest(field=field):
                err = self.jsonrpc_error("VM.create", [self.s, vm_record(**over)])
                self.assertEqual(err[0], "INVALID_VALUE", err)
        for key, value in (("k\ufffe", "v"), ("k", "v\ufffe")):
            err = self.jsonrpc_error("VM.add_to_other_config", [self.s, vm, key, value])
            self.assertEqual(err[0], "INVALID_VALUE", err)
        self.assertEqual(ok(self.x.VM.get_other_config(self.s, vm)), {})
        self.assert_xml_replies_parse()

    def test_over_xml_rpc(self):
        vm = create_vm(self.x, self.s, name_label="before")
        # a non-character XML can carry: refused by the same rule
        self.assertEqual(fail(self.x.VM.set_name_label(self.s, vm, "a\ufdd0b"))[0], "INVALID_VALUE")
        # what XML cannot carry does not even parse; the daemon answers and stores nothing
        for ref in ("&#xFFFE;", "&#x1;", "\ufffe"):
            with self.subTest(ref=ref):
                body = xml_call("VM.set_name_label", self.s, vm, RawXML("<value>a%sb</value>" % ref))
                status, _, data = self.d.post_xml(body.encode())
                self.assertIn(status, (200, 400))
                if status == 200:
                    self.assertEqual(xmlrpc.client.loads(data)[0][0]["Status"], "Failure")
        self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), "before")

    def test_characters_xml_carries_are_kept(self):
        vm = create_vm(self.x, self.s)
        r = self.d.jsonrpc("VM.set_name_label", [self.s, vm, ACCEPTED])
        self.assertEqual(r.get("result"), "", r)
        r = self.d.jsonrpc("VM.add_to_other_config", [self.s, vm, ACCEPTED, ACCEPTED])
        self.assertEqual(r.get("result"), "", r)
        # CR is kept on the wire but an XML parser reads it as LF (end-of-line handling)
        as_xml = ACCEPTED.replace("\r", "\n")
        self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), as_xml)
        self.assertEqual(self.d.jsonrpc("VM.get_name_label", [self.s, vm])["result"], ACCEPTED)
        self.assertEqual(self.d.jsonrpc("VM.get_other_config", [self.s, vm])["result"], {ACCEPTED: ACCEPTED})
        self.assertEqual(self.assert_xml_replies_parse()[vm]["name_label"], as_xml)


class OlderStoreTest(unittest.TestCase):
    """A store written by an earlier version, which took any valid UTF-8 over JSON-RPC."""

    def test_planted_strings_are_served_as_well_formed_xml(self):
        d = Daemon()
        try:
            d.start()
            x, s = d.login()
            vm = create_vm(x, s, name_label="legacy-vm", other_config={"k": "legacy-value"})
            d.stop()
            db = sqlite3.connect(os.path.join(d.state_dir, "xenapid.db"))
            (data,) = db.execute("SELECT data FROM objects WHERE ref = ?", (vm,)).fetchone()
            self.assertIn('"name_label":"legacy-vm"', data)
            data = data.replace('"name_label":"legacy-vm"', '"name_label":"a\ufffeb\uffffc\\u0001d"')
            data = data.replace('"legacy-value"', '"v\ufffe"')
            db.execute("UPDATE objects SET data = ? WHERE ref = ?", (data, vm))
            db.commit()
            db.close()
            d.start()
            x, s = d.login()
            recs = ok(x.VM.get_all_records(s))  # ExpatError before the fix
            self.assertEqual(recs[vm]["name_label"], "a\ufffdb\ufffdcd")
            self.assertEqual(recs[vm]["other_config"], {"k": "v\ufffd"})
            # JSON carries them as they are
            r = d.jsonrpc("VM.get_record", [s, vm])["result"]
            self.assertEqual(r["name_label"], "a\ufffeb\uffffc\x01d")
            # and the strings can be replaced by ones a client may store
            ok(x.VM.set_name_label(s, vm, "clean"))
            self.assertEqual(ok(x.VM.get_name_label(s, vm)), "clean")
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
