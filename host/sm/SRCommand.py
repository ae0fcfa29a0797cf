"""xenapid's stand-in for sm's `SRCommand` (the SM driver command line, which
xenapid's daemon does not use): importable for plugins, refusing to run."""

import sys


class SRCommand:
    def __init__(self, driver_info=None):
        self.driver_info = driver_info
        self.params = None


def run(driver, driver_info):
    sys.stderr.write("SRCommand.run: SM drivers run inside xenapid, not as programs\n")
    sys.exit(1)
