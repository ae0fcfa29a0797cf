/* Text consoles of running VMs: records and the GET /console endpoint. */
#pragma once

#include "xapi/api.h"

/* A console record for a running VM, if it has none (store write lock held). */
void vmops_console_ensure(xapi_server *srv, xapi_obj *vm);
/* The VM's console records go when it stops (store write lock held). */
void vmops_console_remove(xapi_server *srv, xapi_obj *vm);
/* Registers GET /console?ref=<console ref>|uuid=<console uuid>&session_id=<session>. */
void vmops_console_register(void);
