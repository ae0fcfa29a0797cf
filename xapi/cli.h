/* xapi's thin CLI protocol (POST /cli, what a stock xe from another host speaks): the command's
 * words arrive as the body; the command runs in xenapid's own xe (tools/xe.c) over the local
 * socket, and its output, error text and exit status go back as Print / PrintStderr / Exit. */
#pragma once

void xapi_cli_register(void);
