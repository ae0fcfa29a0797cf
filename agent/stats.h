/* The statistics sampler: every stats_interval seconds it reads the host's
 * figures (/proc, /sys/class/net) and every domain's (the backend's sample
 * op) and feeds them, under xapi's data source names, types and ranges, into
 * the RRDs of xapi/rrd_db.h; every stats_save_interval seconds and at stop it
 * writes them to state_dir/rrd. It lives host-side (agent/) because it reads
 * the machine and the backend; the RRDs and their readers are API-side
 * (xapi/rrd*). It never holds the store lock while sampling: only a short
 * read of the VM list when saving. */
#pragma once

#include "xapi/api.h"

typedef struct agent_stats agent_stats;

/* Loads the archives and starts the sampler thread. */
int agent_stats_start(xapi_server *srv, agent_stats **ret);
/* Stops the thread and writes the archives. */
void agent_stats_stop(agent_stats *s);

/* The parts, for tests and benchmarks: a sampler without its thread, one
 * round of sampling at wall time t, one save. */
int agent_stats_new(xapi_server *srv, agent_stats **ret);
void agent_stats_round(agent_stats *s, double t);
int agent_stats_save(agent_stats *s);
void agent_stats_free(agent_stats *s);
