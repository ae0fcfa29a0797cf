/* host.call_plugin. See plugin.h.
 *
 * No store lock is held while a plugin runs: plugins call back into the API
 * (XenAPI.xapi_local()), often with the caller's own session. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/log.h"
#include "agent/plugin_runner.h"
#include "xapi/cli.h"
#include "xapi/error.h"
#include "xapi/plugin.h"
#include "xapi/rpc.h"

#define PLUGIN_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define PLUGIN_LANG "C.UTF-8"
#define TOO_BIG_STDOUT_KEPT 4096 /* of a plugin's output when it printed too much, in the error */
#define STDERR_LOG_LINES 20

/* Plugins running now, against plugin_max_running, and per session, against
 * half of it (rounded up): one client cannot hold every slot. Calls beyond
 * wait their turn. */
typedef struct holder {
    char session[XAPI_REF_LEN + 1];
    int running;
} holder;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    int running;
    holder *holders; /* sessions running plugins (at most plugin_max_running) */
    unsigned nholders;
} slots = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, NULL, 0};

/* What every plugin gets, made once from the configuration (paths made absolute:
 * plugins run in "/"). */
static struct {
    pthread_once_t once;
    char *dir;
    char *env_strings[4];
    const char *env[5];
} fixed = {PTHREAD_ONCE_INIT, NULL, {NULL}, {NULL}};
static const agent_config *fixed_config;

static char *absolute(const char *path) {
    char cwd[4096];
    char *s = NULL;

    if (path[0] == '/' || !getcwd(cwd, sizeof cwd))
        return xapi_strdup(path);
    if (asprintf(&s, "%s/%s", cwd, path) < 0)
        xapi_oom();
    return s;
}

static char *env_entry(const char *name, const char *value) {
    char *s = NULL;

    if (asprintf(&s, "%s=%s", name, value) < 0)
        xapi_oom();
    return s;
}

static void fixed_init(void) {
    const agent_config *cfg = fixed_config;
    char xe[PATH_MAX], *slash, *path = NULL;
    unsigned n = 0;

    fixed.dir = absolute(cfg->plugin_dir);
    xapi_cli_xe_path(xe, sizeof xe);
    slash = strrchr(xe, '/'); /* an absolute path: its directory, "" for "/" */
    if (slash)
        *slash = 0;
    if (asprintf(&path, "%s:%s", xe, PLUGIN_PATH) < 0)
        xapi_oom();
    fixed.env_strings[n++] = env_entry("PATH", path);
    free(path);
    fixed.env_strings[n++] = env_entry("LANG", PLUGIN_LANG);
    if (*cfg->plugin_pythonpath) {
        char *p = absolute(cfg->plugin_pythonpath);
        fixed.env_strings[n++] = env_entry("PYTHONPATH", p);
        free(p);
    }
    if (*cfg->unix_socket) {
        char *p = absolute(cfg->unix_socket);
        fixed.env_strings[n++] = env_entry(XAPI_PLUGIN_SOCKET_ENV, p);
        free(p);
    }
    for (unsigned i = 0; i < n; i++)
        fixed.env[i] = fixed.env_strings[i];
}

static int per_session_limit(const agent_config *cfg) {
    return (cfg->plugin_max_running + 1) / 2;
}

static holder *holder_of(const char *session) {
    for (unsigned i = 0; i < slots.nholders; i++)
        if (strcmp(slots.holders[i].session, session) == 0)
            return &slots.holders[i];
    return NULL;
}

static bool slot_free(const agent_config *cfg, const char *session) {
    const holder *h = holder_of(session);

    return slots.running < cfg->plugin_max_running && (!h || h->running < per_session_limit(cfg));
}

static int slot_take(const agent_config *cfg, const char *session) {
    struct timespec until;
    holder *h;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += cfg->plugin_queue_timeout;
    pthread_mutex_lock(&slots.lock);
    while (!slot_free(cfg, session) && rc == 0)
        rc = pthread_cond_timedwait(&slots.freed, &slots.lock, &until);
    if (slot_free(cfg, session)) {
        h = holder_of(session);
        if (!h) {
            slots.holders = xapi_realloc(slots.holders, (slots.nholders + 1) * sizeof *slots.holders);
            h = &slots.holders[slots.nholders++];
            snprintf(h->session, sizeof h->session, "%s", session);
            h->running = 0;
        }
        h->running++;
        slots.running++;
        rc = 0;
    } else
        rc = -EBUSY;
    pthread_mutex_unlock(&slots.lock);
    return rc;
}

static void slot_release(const char *session) {
    holder *h;

    pthread_mutex_lock(&slots.lock);
    slots.running--;
    h = holder_of(session);
    if (h && --h->running == 0)
        *h = slots.holders[--slots.nholders];
    pthread_cond_broadcast(&slots.freed); /* waiters wait for different things: all look */
    pthread_mutex_unlock(&slots.lock);
}

/* Stop when the daemon stops, or when the Async call's task is being cancelled. */
static bool should_stop(void *opaque) {
    xapi_call *c = opaque;
    xapi_obj *t;
    bool cancelling = false;

    if (c->srv->stopping)
        return true;
    if (!c->task)
        return false;
    xapi_store_rdlock(c->srv->store);
    t = xapi_store_get_class(c->srv->store, &xapi_classes[XAPI_C_task], c->task);
    cancelling = t && strcmp(t->fields[XAPI_F_task_status].s, "cancelling") == 0;
    xapi_store_rdunlock(c->srv->store);
    return cancelling;
}

/* Plugin output as an error parameter: valid UTF-8 (bad bytes become '?'), at most max bytes. */
static char *as_text(const char *s, size_t n, size_t max) {
    char *out;
    size_t i = 0, o = 0;

    if (n > max)
        n = max;
    out = xapi_malloc(n + 1);
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;

        if (len > 0 && i + len <= n && xapi_utf8_valid(s + i, len) && c != 0) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            out[o++] = '?';
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

static int plugin_failure(xapi_call *c, const char *status, const char *out, size_t out_len, const char *err,
                          size_t err_len) {
    char *o = as_text(out, out_len, SIZE_MAX), *e = as_text(err, err_len, SIZE_MAX);
    int rc = xapi_call_fail(c, "XENAPI_PLUGIN_FAILURE", status, o, e);

    free(o);
    free(e);
    return rc;
}

static bool all_strings(const xapi_value *a) {
    for (uint32_t i = 0; i < a->n; i++)
        if (a->items[i].kind != XAPI_V_STRING)
            return false;
    return true;
}

/* A plugin that exited 0: its stdout is one methodResponse, {Status, Value} or
 * {Status: Failure, ErrorDescription}, as xapi reads it. */
static int take_answer(xapi_call *c, const agent_plugin_reply *r) {
    xapi_value v = {0};
    const xapi_value *status = NULL, *value = NULL, *desc = NULL, *answer;
    char why[256];
    bool fault = false;
    int rc;

    rc = xapi_xmlrpc_decode_response(r->out, r->out_len, &v, &fault, why, sizeof why);
    if (rc == -EINVAL) {
        char *o = as_text(r->out, r->out_len, SIZE_MAX);
        rc = xapi_call_fail(c, "XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", o, why);
        free(o);
        return rc;
    }
    if (rc == 0 && fault && v.kind == XAPI_V_STRUCT) {
        const xapi_value *code = xapi_struct_get(&v, "faultCode"), *text = xapi_struct_get(&v, "faultString");
        char num[32] = "";

        if (code && code->kind == XAPI_V_INT)
            snprintf(num, sizeof num, "%lld", (long long)code->i);
        rc = xapi_call_fail(c, "XENAPI_PLUGIN_FAILURE", "fault", num, xapi_value_str(text));
        goto out;
    }
    answer = rc == 0 && !fault && v.n == 1 ? &v.items[0] : NULL;
    if (answer && answer->kind == XAPI_V_STRUCT) {
        status = xapi_struct_get(answer, "Status");
        value = xapi_struct_get(answer, "Value");
        desc = xapi_struct_get(answer, "ErrorDescription");
    }
    if (status && strcmp(xapi_value_str(status), "Success") == 0 && value && value->kind == XAPI_V_STRING) {
        xapi_out_string(c->out, value->s, value->n);
        rc = 0;
    } else if (status && strcmp(xapi_value_str(status), "Failure") == 0 && desc && desc->kind == XAPI_V_ARRAY &&
               desc->n > 0 && all_strings(desc)) {
        xapi_value_free(&c->err);
        c->err = xapi_value_copy(desc); /* the plugin's error, verbatim */
        rc = -XAPI_EFAIL;
    } else {
        char *o = as_text(r->out, r->out_len, SIZE_MAX);
        rc = xapi_call_fail(c, "XENAPI_PLUGIN_FAILURE", "unexpected XMLRPC result", o);
        free(o);
    }
out:
    xapi_value_free(&v);
    return rc;
}

static void log_stderr(const char *plugin, const char *fn, const agent_plugin_reply *r) {
    const char *p = r->err, *end = r->err + r->err_len;

    for (unsigned lines = 0; p < end && lines < STDERR_LOG_LINES; lines++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *text = as_text(p, n, 1024);

        log_info("plugin %s %s: stderr: %s", plugin, fn, text);
        free(text);
        p += n + 1;
    }
}

static int answer(xapi_call *c, const char *plugin, const char *fn, const agent_plugin_reply *r) {
    char status[64];

    log_stderr(plugin, fn, r);
    switch (r->end) {
    case AGENT_PLUGIN_EXITED:
        if (r->status == 0)
            return take_answer(c, r);
        return plugin_failure(c, "non-zero exit", r->out, r->out_len, r->err, r->err_len);
    case AGENT_PLUGIN_SIGNALED: {
        const char *name = sigabbrev_np(r->status);
        if (name)
            snprintf(status, sizeof status, "signal: SIG%s", name);
        else
            snprintf(status, sizeof status, "signal: %d", r->status);
        return plugin_failure(c, status, r->out, r->out_len, r->err, r->err_len);
    }
    case AGENT_PLUGIN_TIMED_OUT:
        log_warning("plugin %s %s: killed after plugin_timeout (%d s)", plugin, fn, c->srv->config->plugin_timeout);
        return plugin_failure(c, "timeout", r->out, r->out_len, r->err, r->err_len);
    case AGENT_PLUGIN_OUTPUT_TOO_BIG:
        log_warning("plugin %s %s: killed after printing more than plugin_max_output (%d bytes)", plugin, fn,
                    c->srv->config->plugin_max_output);
        return plugin_failure(c, "output too large", r->out, r->out_len < TOO_BIG_STDOUT_KEPT ? r->out_len
                                                                                              : TOO_BIG_STDOUT_KEPT,
                              r->err, r->err_len);
    case AGENT_PLUGIN_STOPPED:
        if (c->srv->stopping)
            return plugin_failure(c, "stopped: xenapid is shutting down", r->out, r->out_len, r->err, r->err_len);
        log_info("plugin %s %s: killed, its task %s was cancelled", plugin, fn, c->task);
        return xapi_call_fail(c, "TASK_CANCELLED", c->task);
    case AGENT_PLUGIN_NOT_STARTED:
        break; /* answered by the caller */
    }
    return -EINVAL;
}

int xapi_host_call_plugin(xapi_call *c) {
    const agent_config *cfg = c->srv->config;
    const char *plugin = c->args[1].s, *fn = c->args[2].s;
    const xapi_value *args = &c->args[3];
    const char **pairs = NULL;
    agent_plugin_reply reply = {0};
    agent_plugin_request req;
    xapi_obj *h;
    char reason[512];
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, &xapi_classes[XAPI_C_host], c->args[0].s, &h);
    xapi_store_rdunlock(c->srv->store);
    if (rc < 0)
        return rc;
    /* A NUL inside the name would cut it short: what xapi lists cannot hold one. */
    if (!agent_plugin_name_ok(plugin) || strlen(plugin) != c->args[1].n)
        return xapi_call_fail(c, "XENAPI_MISSING_PLUGIN", plugin);

    fixed_config = cfg;
    pthread_once(&fixed.once, fixed_init);
    pairs = xapi_calloc(2 * (size_t)args->n + 1, sizeof *pairs);
    for (uint32_t i = 0; i < args->n; i++) {
        pairs[2 * i] = args->members[i].name;
        pairs[2 * i + 1] = xapi_value_str(&args->members[i].value);
    }
    req = (agent_plugin_request){
        .dir = fixed.dir,
        .name = plugin,
        .fn = fn,
        .session = c->session,
        .args = pairs,
        .env = fixed.env,
        .timeout_ms = cfg->plugin_timeout * 1000,
        .max_output = (size_t)cfg->plugin_max_output,
        .stop = should_stop,
        .opaque = c,
    };

    if (slot_take(cfg, c->session) < 0) {
        snprintf(reason, sizeof reason,
                 "%d plugins are running (plugin_max_running), or half of them for this session; waited %d s",
                 cfg->plugin_max_running, cfg->plugin_queue_timeout);
        rc = xapi_call_fail(c, "XENAPI_PLUGIN_FAILURE", "too many plugins running", "", reason);
        goto out;
    }
    log_debug("plugin %s %s: starting", plugin, fn);
    rc = agent_plugin_run(&req, &reply);
    slot_release(c->session);
    if (rc == -ENOENT)
        rc = xapi_call_fail(c, "XENAPI_MISSING_PLUGIN", plugin);
    else if (rc == -EACCES) {
        snprintf(reason, sizeof reason, "%s/%s: %s", fixed.dir, plugin, strerror(EACCES));
        rc = xapi_call_fail(c, "XENAPI_PLUGIN_FAILURE", "not executable", "", reason);
    } else if (rc < 0 || reply.end == AGENT_PLUGIN_NOT_STARTED) {
        snprintf(reason, sizeof reason, "%s/%s: %s", fixed.dir, plugin, strerror(rc < 0 ? -rc : reply.status));
        rc = xapi_call_fail(c, "XENAPI_PLUGIN_FAILURE", "cannot run", "", reason);
    } else
        rc = answer(c, plugin, fn, &reply);
out:
    agent_plugin_reply_free(&reply);
    free(pairs);
    return rc;
}
