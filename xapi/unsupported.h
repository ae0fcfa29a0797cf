/* What this host answers for but cannot carry out (yet):
 * - the classes clients probe that it has no objects of and cannot make:
 *   pool_patch, host_patch and pool_update (no update mechanism), GPU_group,
 *   PGPU, VGPU_type and VGPU (no GPUs), Bond (bonds: issue 12). Their reads are
 *   the generic ones (empty sets, UUID_INVALID, HANDLE_INVALID); their explicit
 *   messages are answered here;
 * - the pool-wide operations that need a second host: migration to another
 *   host, pool.join / join_force / eject. */
#pragma once

/* Registers a handler for each of those messages. Call it before the modules
 * register theirs: a real handler registered later replaces these. */
void xapi_unsupported_register(void);
