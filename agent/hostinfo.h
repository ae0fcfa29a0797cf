/* Facts about the machine this agent runs on, read from the real system
 * (uname, /proc/cpuinfo, /proc/meminfo, /etc/os-release, interfaces). */
#pragma once

#include <stdint.h>

typedef struct agent_cpu {
    char *vendor, *model_name, *flags;
    int family, model, stepping;
    int64_t speed_mhz;
} agent_cpu;

typedef struct agent_hostinfo {
    char *hostname;       /* gethostname */
    char *address;        /* primary IPv4 of the default-route interface, else first non-loopback, else "127.0.0.1" */
    char *kernel_release; /* uname -r */
    char *os_name;        /* PRETTY_NAME from /etc/os-release */
    char *machine;        /* uname -m */
    int cpu_count;
    agent_cpu *cpus;      /* cpu_count entries */
    int64_t memory_total; /* bytes, MemTotal */
    int64_t memory_free;  /* bytes, MemAvailable */
    char *boot_time;      /* epoch seconds as text, from /proc/stat btime */
} agent_hostinfo;

int agent_hostinfo_read(agent_hostinfo *ret);
void agent_hostinfo_free(agent_hostinfo *h);
