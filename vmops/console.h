/* Text consoles of running VMs: records and the GET /console endpoint. */
#pragma once

#include "vmops/backend.h"
#include "xapi/api.h"
#include "xapi/http.h"

/* A console record for a running VM, if it has none (store write lock held). */
void vmops_console_ensure(xapi_server *srv, xapi_obj *vm);
/* The VM's console records go when it stops (store write lock held). */
void vmops_console_remove(xapi_server *srv, xapi_obj *vm);
/* xapi's console.<domid> in guest_console_dir: a link to the running domain's
 * console log, where Nova's console plugin reads it (no store lock needed,
 * better none: the backend's name look-up, a readlink, and a symlink when the
 * domid is new there). */
void vmops_console_log_link(xapi_server *srv, const char *uuid, int domid);
/* Registers GET /console?ref=<console ref>|uuid=<console uuid>&session_id=<session>
 * (the text console's log) and CONNECT /console (the live console, console_proxy.c). */
void vmops_console_register(void);

/* The console a /console request names, copied out of the store. */
typedef struct vmops_console_target {
    char ref[XAPI_REF_LEN + 1];      /* the console record */
    char vm_ref[XAPI_REF_LEN + 1];
    char vm_uuid[XAPI_UUID_LEN + 1];
    int domid;
    vmops_console_protocol protocol;
} vmops_console_target;

/* Checks the caller (http/connect_console, vm-operator) and finds the console
 * of ref= (a console or, as Nova sends, a VM: its rfb console, else its first)
 * or uuid=: 0 with *ret, or < 0 with rep filled (401, 403, 404 HANDLE_INVALID,
 * 409 VM_BAD_POWER_STATE for a VM that is not running). */
int vmops_console_resolve(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep, vmops_console_target *ret);
/* Whether the target's console is still there, on the same domain (takes the store's read lock). */
bool vmops_console_alive(xapi_server *srv, const vmops_console_target *t);
/* A reply naming an API error as "CODE param...", as the disk handlers do. */
void vmops_console_reply_error(xapi_http_reply *rep, unsigned status, const char *code, const char *p1,
                               const char *p2, const char *p3);
/* The CONNECT /console handler (console_proxy.c). */
void vmops_console_connect(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep);
