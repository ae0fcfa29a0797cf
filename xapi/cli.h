/* xapi's thin CLI protocol (POST /cli, what a stock xe from another host speaks): the command's
 * words arrive as the body; the command runs in xenapid's own xe (tools/xe.c) over the local
 * socket, and its output, error text and exit status go back as Print / PrintStderr / Exit. */
#pragma once

#include <stddef.h>

void xapi_cli_register(void);

/* xenapid's own xe: the one next to the daemon binary (the build tree), else ../bin/xe, else
 * /usr/bin/xe. Host plugins find it first on their PATH (os-xenapi's run `xe ...`). */
void xapi_cli_xe_path(char *out, size_t size);
