#!/usr/bin/env python3
"""os-xenapi style: the plugin API version Nova checks at every start (serialized)."""

import dom0_pluginlib

PLUGIN_VERSION = "2.1"


def get_version(session):
    return PLUGIN_VERSION


if __name__ == "__main__":
    dom0_pluginlib.register_plugin_calls(serialized=[get_version])
