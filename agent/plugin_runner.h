/* Runs one host plugin (a program in xapi's /etc/xapi.d/plugins) the way xapi
 * does: argv[1] is an XML-RPC methodCall of the function with the caller's
 * session and the string arguments; what comes back is the program's stdout,
 * its stderr and how it ended. Nothing here knows the XenAPI: the request is
 * plain typed data and the reply plain bytes, so this can later run behind a
 * small privileged helper (request: plugin, function, arguments; reply:
 * bytes, exit status).
 *
 * The program runs with nothing of the daemon: a clean environment (the one
 * given), stdin /dev/null, no other descriptor, default signal dispositions and
 * an empty signal mask, in its own process group (killed whole on a time limit,
 * too much output or a stop request), cwd "/". */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct agent_plugin_request {
    const char *dir;          /* the plugin directory (absolute) */
    const char *name;         /* an entry of dir (checked: agent_plugin_name_ok) */
    const char *fn;           /* the function: the methodCall's name */
    const char *session;      /* param 1 */
    const char *const *args;  /* param 2, a struct: key, value, key, value, ..., NULL */
    const char *const *env;   /* the whole environment: "K=V", ..., NULL */
    int timeout_ms;
    size_t max_output;        /* stdout bytes */
    /* Asked every AGENT_PLUGIN_POLL_MS while the plugin runs: true kills it. NULL: never. */
    bool (*stop)(void *opaque);
    void *opaque;
} agent_plugin_request;

#define AGENT_PLUGIN_POLL_MS 100
#define AGENT_PLUGIN_MAX_STDERR (64 * 1024) /* kept (and logged) of stderr; the rest is read and dropped */

typedef enum agent_plugin_end {
    AGENT_PLUGIN_EXITED,         /* status: the exit status */
    AGENT_PLUGIN_SIGNALED,       /* status: the signal */
    AGENT_PLUGIN_TIMED_OUT,      /* killed after timeout_ms */
    AGENT_PLUGIN_OUTPUT_TOO_BIG, /* killed when stdout passed max_output (out holds the first max_output bytes) */
    AGENT_PLUGIN_STOPPED,        /* killed because stop() said so */
    AGENT_PLUGIN_NOT_STARTED,    /* status: why exec failed (errno: its interpreter missing, arguments too long...) */
} agent_plugin_end;

typedef struct agent_plugin_reply {
    agent_plugin_end end;
    int status;
    char *out; /* NUL-terminated; may contain NULs (out_len is the length) */
    size_t out_len;
    char *err;
    size_t err_len;
} agent_plugin_reply;

/* A name xapi would find in the directory listing and that stays inside it:
 * not empty, no '/', not hidden (so neither "." nor ".."), at most NAME_MAX. */
bool agent_plugin_name_ok(const char *name);

/* Returns 0 with *ret set (whatever the plugin did, exec failures included), or:
 * -ENOENT (no such plugin, a bad name, not a regular file; symlinks are
 * followed, as xapi's exec does), -EACCES (not executable), another -errno
 * when no process could be made (pipes, descriptors). */
int agent_plugin_run(const agent_plugin_request *req, agent_plugin_reply *ret);
void agent_plugin_reply_free(agent_plugin_reply *r);
