#!/usr/bin/env python3
"""os-xenapi style image download, for the tests: instead of fetching a tgz
of VHDs from Glance it writes one fixed VHD of the requested size, named
<uuid>.vhd in sr_path, as glance.download_vhd2 leaves the chain it fetched."""

import os

import dom0_pluginlib
import vhdfile


def download_vhd2(session, image_id, sr_path, extra_headers, uuid_stack, endpoint, api_version, size=2 << 20):
    if not os.path.isdir(sr_path):
        raise dom0_pluginlib.PluginError("sr_path %s is not a directory" % sr_path)
    leaf = uuid_stack[0]
    vhdfile.write_fixed(os.path.join(sr_path, leaf + ".vhd"), size, leaf)
    return {"root": {"uuid": leaf}}


if __name__ == "__main__":
    dom0_pluginlib.register_plugin_calls(serialized=[download_vhd2])
