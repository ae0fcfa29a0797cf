#!/usr/bin/env python3
"""os-xenapi style: the version Nova checks at every login (pickled call)."""

import dom0_helpers

PLUGIN_VERSION = "2.1"


def get_version(session):
    return PLUGIN_VERSION


if __name__ == "__main__":
    dom0_helpers.register_plugin_calls(get_version)
