/* The hypervisor backend interface. Everything above vmops/ drives domains
 * through these operations only, so the simulator and libxl are
 * interchangeable.
 *
 * A backend knows nothing of the XenAPI: it gets a flat domain description
 * (vmops_domain_config, built from the VM, VBD, VIF, VDI and network records
 * by vmops/config.c) and reports what happens to domains through a callback.
 * All operations are synchronous and may block (the caller holds the VM's
 * operation lock, not the store lock). They return 0 or a negative errno and
 * may fill *ret_msg with a malloc'd explanation for the API error. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum vmops_domain_type {
    VMOPS_PV = 0,
    VMOPS_PVH,
    VMOPS_HVM,
} vmops_domain_type;

typedef enum vmops_action {
    VMOPS_ACTION_DESTROY = 0,
    VMOPS_ACTION_RESTART,
    VMOPS_ACTION_PRESERVE,
    VMOPS_ACTION_RENAME_RESTART,
    VMOPS_ACTION_COREDUMP_DESTROY,
    VMOPS_ACTION_COREDUMP_RESTART,
    VMOPS_ACTION_SOFT_REBOOT,
} vmops_action;

typedef struct vmops_disk {
    char vbd_uuid[37];
    int devid;          /* from userdevice: 0 -> xvda / hda */
    char *vdev;         /* "xvda", "hda"... */
    char *target;       /* file or device path; NULL/"" for an empty CD drive */
    char *format;       /* "raw", "qcow2", "vhd" */
    bool readonly;
    bool cdrom;
    bool bootable;
} vmops_disk;

typedef struct vmops_nic {
    char vif_uuid[37];
    int devid;          /* from VIF.device */
    char mac[18];
    char *bridge;
    int64_t mtu;        /* 0: default */
    int64_t rate_kbps;  /* 0: unlimited */
} vmops_nic;

typedef struct vmops_domain_config {
    char uuid[37];      /* the VM's uuid: the domain's handle, so domains can be matched after a restart */
    char *name;
    vmops_domain_type type;
    int64_t memory_static_max, memory_dynamic_max, memory_dynamic_min, memory_target; /* bytes */
    int64_t vcpus_max, vcpus_at_startup;
    char *kernel, *ramdisk, *cmdline;   /* PV/PVH direct boot */
    char *bootloader, *bootloader_args; /* PV: pygrub */
    char *boot_order;                   /* HVM: "cd", "dc"... */
    char **platform_keys, **platform_values; /* VM.platform, nplatform entries */
    size_t nplatform;
    vmops_action on_poweroff, on_reboot, on_crash;
    vmops_disk *disks;
    size_t ndisks;
    vmops_nic *nics;
    size_t nnics;
} vmops_domain_config;

void vmops_domain_config_free(vmops_domain_config *c);

typedef enum vmops_domain_state {
    VMOPS_STATE_RUNNING = 0,
    VMOPS_STATE_PAUSED,
    VMOPS_STATE_SHUTDOWN, /* shut down, not yet destroyed: see reason */
    VMOPS_STATE_DYING,
} vmops_domain_state;

typedef enum vmops_shutdown_reason {
    VMOPS_REASON_NONE = -1,
    VMOPS_REASON_POWEROFF = 0,
    VMOPS_REASON_REBOOT,
    VMOPS_REASON_SUSPEND,
    VMOPS_REASON_CRASH,
    VMOPS_REASON_WATCHDOG,
    VMOPS_REASON_SOFT_RESET,
} vmops_shutdown_reason;

/* What a console carries: the guest's text console (xenconsoled's pty), or
 * the device model's VNC server (RFB). */
typedef enum vmops_console_protocol {
    VMOPS_CONSOLE_VT100 = 0,
    VMOPS_CONSOLE_RFB,
} vmops_console_protocol;

typedef struct vmops_domain_info {
    char uuid[37];
    int domid;
    vmops_domain_state state;
    vmops_shutdown_reason reason; /* for VMOPS_STATE_SHUTDOWN */
    int64_t memory_actual;        /* bytes */
    int vcpus;
    int64_t start_time;           /* epoch seconds */
} vmops_domain_info;

/* Statistics of one domain at one moment (the sample op), for the RRDs.
 * Counters are cumulative since the domain started; the sampler turns them
 * into rates. */
#define VMOPS_SAMPLE_MAX_VCPUS 64
#define VMOPS_SAMPLE_MAX_DEVS 16

typedef struct vmops_domain_sample {
    char uuid[37];
    int domid;
    int nvcpus;                                   /* online vCPUs */
    uint64_t vcpu_time_ns[VMOPS_SAMPLE_MAX_VCPUS]; /* cpu time used by each vCPU */
    int64_t memory;                               /* bytes allocated */
    int64_t memory_target;                        /* bytes, balloon target */
    int64_t memory_internal_free_kib;             /* the guest's own view; -1: unknown */
    int nvifs;
    struct {
        int devid;
        uint64_t rx_bytes, tx_bytes;              /* as the guest sees them */
    } vifs[VMOPS_SAMPLE_MAX_DEVS];
    int nvbds;
    struct {
        char dev[16];                             /* "xvda" */
        uint64_t read_bytes, write_bytes;
    } vbds[VMOPS_SAMPLE_MAX_DEVS];
} vmops_domain_sample;

/* Something happened to a domain that nobody asked the backend for at that
 * moment (the guest shut down, rebooted, crashed), or a requested clean
 * shutdown completed. Called from a backend thread. */
typedef void (*vmops_event_fn)(void *ud, const char *uuid, int domid, vmops_shutdown_reason reason);

typedef struct vmops_backend vmops_backend;

typedef struct vmops_backend_ops {
    const char *name;
    /* Creates a domain, paused, with its devices. -ENOMEM: not enough free
     * memory; -ENOEXEC: the device model (qemu) it needs is not installed
     * or did not start; -EFBIG: the VM's memory is too small for its kernel
     * (and ramdisk). */
    int (*create)(vmops_backend *b, const vmops_domain_config *cfg, int *ret_domid, char **ret_msg);
    int (*unpause)(vmops_backend *b, int domid, char **ret_msg);
    int (*pause)(vmops_backend *b, int domid, char **ret_msg);
    /* VCPUs 0..n-1 online, the others (up to max) offline; the guest's kernel follows. */
    int (*set_vcpus)(vmops_backend *b, int domid, int n, int max, char **ret_msg);
    /* Asks the guest to power off or reboot; completion arrives as an event. */
    int (*request_shutdown)(vmops_backend *b, int domid, bool reboot, char **ret_msg);
    /* Destroys at once; no event for it. */
    int (*destroy)(vmops_backend *b, int domid, char **ret_msg);
    /* Saves the domain's memory to path and destroys it. */
    int (*suspend)(vmops_backend *b, int domid, const char *path, char **ret_msg);
    /* Creates a domain from a saved image, paused (errors as create). */
    int (*resume)(vmops_backend *b, const vmops_domain_config *cfg, const char *path, int *ret_domid, char **ret_msg);
    int (*disk_attach)(vmops_backend *b, int domid, const vmops_disk *d, char **ret_msg);
    int (*disk_detach)(vmops_backend *b, int domid, const vmops_disk *d, char **ret_msg);
    int (*nic_attach)(vmops_backend *b, int domid, const vmops_nic *n, char **ret_msg);
    int (*nic_detach)(vmops_backend *b, int domid, const vmops_nic *n, char **ret_msg);
    /* Every domain but dom0. */
    int (*list)(vmops_backend *b, vmops_domain_info **ret, size_t *ret_n);
    /* Statistics of every running or paused domain but dom0, in one call
     * (cheap: called every few seconds for all domains). */
    int (*sample)(vmops_backend *b, vmops_domain_sample **ret, size_t *ret_n);
    /* Path of the domain's console log, if the backend captures it (else NULL). */
    char *(*console_log_path)(vmops_backend *b, const char *uuid, int domid);
    /* Opens the running domain's console: a non-blocking, close-on-exec
     * descriptor carrying the guest's output and taking its input, which
     * reads its end (or an error) when the guest or its device model stops.
     * -ESRCH: no such running domain; -ENODEV: it has no console of that
     * protocol (an HVM guest without VNC). */
    int (*console_open)(vmops_backend *b, const char *uuid, int domid, vmops_console_protocol protocol, int *ret_fd,
                        char **ret_msg);
    /* The pid of the domain's device model (qemu) on this host, 0 if it has
     * none (a PV guest without one) or it is not known. May be NULL. */
    int (*device_model_pid)(vmops_backend *b, int domid);
    /* Where the graphical console (an RFB/VNC server) of the VM's HVM domain
     * listens: "unix:PATH" or "HOST:PORT", malloc'd; NULL when the backend
     * gives HVM guests none (and for backends without the op). No I/O. */
    char *(*vnc_address)(vmops_backend *b, const char *uuid);
    void (*free)(vmops_backend *b);
} vmops_backend_ops;

struct vmops_backend {
    const vmops_backend_ops *ops;
    vmops_event_fn on_event;
    void *event_ud;
    char *xen_version;
    int64_t host_memory_free; /* bytes available for guests, updated by the backend */
    void *priv;
};

/* Backends. state_dir: where the backend may keep its own files.
 * The simulator: guests react to requests after guest_delay_ms; memory_total
 * is what its host offers guests. Its domains are kept in <state_dir>/sim-domains.json
 * so they outlive a restart of the daemon, and <state_dir>/sim-control.sock takes
 * test-only commands "<verb> <vm uuid>": shutdown, reboot, crash (the guest does it now),
 * ignore-requests (it never answers a clean shutdown or reboot request), cooperate (it answers again),
 * reboot-before-next-op (it reboots just as the next operation on its domain reaches the backend: races). */
int vmops_sim_new(const char *state_dir, int guest_delay_ms, int64_t memory_total, vmops_backend **ret);
/* console_log_dir: where xenconsoled writes guest console logs (config console_log_dir). */
/* hotplug_helper: the device script of xenapid's disks and NICs (config hotplug_helper: "auto", "xen", a path). */
int vmops_libxl_new(const char *state_dir, const char *console_log_dir, const char *hotplug_helper,
                    vmops_backend **ret);
