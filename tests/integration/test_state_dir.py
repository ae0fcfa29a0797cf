"""Where the accounts file is: beside the config file, or in the state
directory when there is none; never relative to the working directory by
itself, so `xenapid --state-dir DIR` starts from anywhere and two daemons
started from one directory keep their own accounts."""

import os
import shutil
import tempfile
import unittest

from harness import Daemon, ok


class AccountsFileTest(unittest.TestCase):
    def setUp(self):
        self.cwd = tempfile.mkdtemp(prefix="xenapid-cwd-")
        self.daemons = []

    def tearDown(self):
        try:
            for d in self.daemons:
                d.cleanup()
        finally:
            shutil.rmtree(self.cwd, ignore_errors=True)

    def daemon(self, password="test-password-0", **kw):
        d = Daemon(config=False, cwd=self.cwd, env={"XENAPID_ROOT_PASSWORD": password}, **kw)
        self.daemons.append(d)
        return d

    def test_state_dir_from_an_empty_directory(self):
        d = self.daemon().start()  # before: "cannot create the accounts file etc/accounts", exit 1
        d.login()
        self.assertTrue(os.path.isfile(os.path.join(d.state_dir, "accounts")))
        self.assertEqual(os.stat(os.path.join(d.state_dir, "accounts")).st_mode & 0o777, 0o600)
        self.assertEqual(os.listdir(self.cwd), [], "the daemon wrote into its working directory")

    def test_two_daemons_started_from_one_directory(self):
        os.mkdir(os.path.join(self.cwd, "etc"))  # before: both used ./etc/accounts, the first one's
        a = self.daemon("password-a").start()
        b = self.daemon("password-b").start()
        xa, sa = a.login(password="password-a")
        xb, sb = b.login(password="password-b")
        ok(xa.session.change_password(sa, "password-a", "password-a2"))
        b.login(password="password-b")
        a.login(password="password-a2")
        self.assertEqual(os.listdir(os.path.join(self.cwd, "etc")), [])
        # a restart reads the same file again
        b.restart()
        b.login(password="password-b")

    def test_beside_the_config_file(self):
        conf_dir = tempfile.mkdtemp(dir=self.cwd)
        conf = os.path.join(conf_dir, "xenapid.conf")
        with open(conf, "w") as f:
            f.write("log_level = debug\n")
        d = self.daemon(args=["--config", conf]).start()
        d.login()
        self.assertTrue(os.path.isfile(os.path.join(conf_dir, "accounts")))
        self.assertFalse(os.path.exists(os.path.join(d.state_dir, "accounts")))

    def test_explicit_accounts_file(self):
        explicit = os.path.join(self.cwd, "explicit-accounts")
        d = Daemon(extra_config="accounts_file = %s\n" % explicit)  # the last accounts_file line wins
        self.daemons.append(d)
        d.start()
        d.login()
        self.assertTrue(os.path.isfile(explicit))
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(d.config), "accounts")))
        self.assertFalse(os.path.exists(os.path.join(d.state_dir, "accounts")))


if __name__ == "__main__":
    unittest.main()
