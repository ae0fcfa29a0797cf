/* host.call_plugin (and its Async form): xapi's host plugins, run by
 * agent/plugin_runner from the plugin_dir of the configuration. This module
 * is the API side: the checks, the limits on plugins running at once, the
 * plugin's environment, and the translation of the program's answer into a
 * result or a XenAPI error as xapi makes them. */
#pragma once

#include "xapi/api.h"

/* The handler, for the host module's table. */
int xapi_host_call_plugin(xapi_call *c);

/* The environment variable through which plugins learn the daemon's local
 * socket (host/python/XenAPI.py's xapi_local() connects to it, else to xapi's
 * /var/lib/xcp/xapi). */
#define XAPI_PLUGIN_SOCKET_ENV "XENAPID_LOCAL_SOCKET"
