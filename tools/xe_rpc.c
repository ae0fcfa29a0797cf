/* XML-RPC over libcurl for xe: see xe_rpc.h for why the transport is not xmlrpc-c's. */
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/xe_rpc.h"

/* A vm-list of thousands of VMs is tens of megabytes of XML; xmlrpc-c refuses more than 512 KiB
 * by default. The bound stays: a runaway server cannot make xe eat the machine. */
#define XE_MAX_REPLY (512u << 20)

struct xe_conn {
    CURL *curl;
    struct curl_slist *headers;
    xmlrpc_env env;
    char *url;
    char *session;
    const xv *error;
    xv_doc **docs; /* every reply of the command: values handed out stay valid */
    size_t ndocs;
    xv *synthetic[8];
    unsigned nsynthetic;
    char message[CURL_ERROR_SIZE + 64];
    char curl_error[CURL_ERROR_SIZE];
    char *reply;
    size_t reply_len, reply_cap;
};

void xe_check_env(xmlrpc_env *env) {
    if (env->fault_occurred) {
        fprintf(stderr, "xe: internal error: %s\n", env->fault_string);
        abort();
    }
}

xmlrpc_env *xe_env(xe_conn *c) {
    return &c->env;
}

static const xv empty_value = {.kind = XV_STRING, .s = ""};

static void doc_keep(xe_conn *c, xv_doc *d) {
    xv_doc **p = realloc(c->docs, (c->ndocs + 1) * sizeof *p);

    if (!p)
        abort();
    c->docs = p;
    c->docs[c->ndocs++] = d;
}

const xv *xe_conn_error(xe_conn *c) {
    return c->error;
}

const char *xe_conn_message(xe_conn *c) {
    return c->message;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg) {
    xe_conn *c = arg;
    size_t len = size * n;

    if (c->reply_len + len > XE_MAX_REPLY)
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    if (c->reply_len + len > c->reply_cap) {
        size_t cap = c->reply_cap ? c->reply_cap : 1 << 20;
        char *p;

        while (cap < c->reply_len + len)
            cap *= 2;
        p = realloc(c->reply, cap);
        if (!p)
            return 0;
        c->reply = p;
        c->reply_cap = cap;
    }
    memcpy(c->reply + c->reply_len, data, len);
    c->reply_len += len;
    return len;
}

int xe_conn_open(const xe_target *t, xe_conn **ret_conn) {
    xe_conn *c = NULL;
    int rc = -1;

    c = calloc(1, sizeof *c);
    if (!c)
        goto out;
    xmlrpc_env_init(&c->env);
    xmlrpc_limit_set(XMLRPC_XML_SIZE_LIMIT_ID, XE_MAX_REPLY);
    c->curl = curl_easy_init();
    if (!c->curl)
        goto out;
    if (t->unix_socket) {
        /* xapi's local URL: the host part names the socket and is otherwise ignored. */
        c->url = strdup("http://_var_lib_xcp_xapi/");
        curl_easy_setopt(c->curl, CURLOPT_UNIX_SOCKET_PATH, t->unix_socket);
    } else {
        bool v6 = strchr(t->server, ':') != NULL;

        if (asprintf(&c->url, "%s://%s%s%s:%d/", t->tls ? "https" : "http", v6 ? "[" : "", t->server, v6 ? "]" : "",
                     t->port) < 0)
            c->url = NULL;
        if (t->tls) {
            /* As xe's stunnel: the pool's self-signed certificate is not checked unless asked. */
            bool verify = t->cafile != NULL;

            curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
            curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
            if (verify)
                curl_easy_setopt(c->curl, CURLOPT_CAINFO, t->cafile);
            curl_easy_setopt(c->curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
        }
    }
    if (!c->url)
        goto out;
    c->headers = curl_slist_append(NULL, "Content-Type: text/xml");
    c->headers = curl_slist_append(c->headers, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(c->curl, CURLOPT_URL, c->url);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "xe-cli/xenapid/1.0");
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->curl_error);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c->curl, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->curl, CURLOPT_BUFFERSIZE, 256L << 10); /* fewer reads of a large list */
    *ret_conn = c;
    c = NULL;
    rc = 0;
out:
    xe_conn_close(c);
    return rc;
}

void xe_conn_close(xe_conn *c) {
    if (!c)
        return;
    for (size_t i = 0; i < c->ndocs; i++)
        xv_doc_free(c->docs[i]);
    free(c->docs);
    for (unsigned i = 0; i < 8; i++)
        free(c->synthetic[i]);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    xmlrpc_env_clean(&c->env);
    free(c->url);
    free(c->session);
    free(c->reply);
    free(c);
}

static const xv *synthetic_error(xe_conn *c, const char *code, const char *why) {
    xv *e = calloc(3, sizeof *e);

    if (!e)
        abort();
    c->synthetic[c->nsynthetic++ % 8] = e; /* freed at close */
    e[0].kind = XV_ARRAY;
    e[0].n = 2;
    e[0].first = &e[1];
    e[0].last = &e[2];
    e[1] = (xv){.kind = XV_STRING, .s = code, .next = &e[2]};
    e[2] = (xv){.kind = XV_STRING, .s = why};
    return e;
}

static int decode(xe_conn *c, const xv **ret_value) {
    xv_doc *doc = NULL;
    const xv *root = NULL, *value;
    const char *why = NULL, *status;
    bool fault = false;

    /* The reply buffer becomes the doc's (its strings point into it); the next call starts a new one. */
    char *buf = c->reply;
    size_t len = c->reply_len;

    c->reply = NULL;
    c->reply_len = c->reply_cap = 0;
    if (!buf) {
        c->error = synthetic_error(c, "INTERNAL_ERROR", "empty reply");
        return XE_RPC_FAILURE;
    }
    if (xv_parse(buf, len, &doc, &root, &fault, &why) < 0) {
        c->error = synthetic_error(c, "INTERNAL_ERROR", why);
        return XE_RPC_FAILURE;
    }
    doc_keep(c, doc);
    if (fault) {
        c->error = synthetic_error(c, "XMLRPC_FAULT", xv_str(xv_member(root, "faultString")));
        return XE_RPC_FAILURE;
    }
    status = xv_str(xv_member(root, "Status"));
    if (strcmp(status, "Success") == 0) {
        value = xv_member(root, "Value");
        *ret_value = value ? value : &empty_value; /* void results may omit it */
        return XE_RPC_OK;
    }
    value = xv_member(root, "ErrorDescription");
    if (!*status || !value || value->kind != XV_ARRAY || value->n < 1) {
        c->error = synthetic_error(c, "INTERNAL_ERROR", "the reply is not {Status, Value|ErrorDescription}");
        return XE_RPC_FAILURE;
    }
    c->error = value;
    return XE_RPC_FAILURE;
}

int xe_call(xe_conn *c, const char *method, xmlrpc_value *params, const xv **ret_value) {
    xmlrpc_env *env = &c->env;
    xmlrpc_mem_block *body = NULL;
    xmlrpc_value *all = NULL;
    long status = 0;
    CURLcode cc;
    int rc = XE_RPC_TRANSPORT;

    all = xmlrpc_array_new(env);
    if (c->session) {
        xmlrpc_value *s = xmlrpc_string_new(env, c->session);

        xmlrpc_array_append_item(env, all, s);
        xmlrpc_DECREF(s);
    }
    for (int i = 0, n = params ? xmlrpc_array_size(env, params) : 0; i < n; i++) {
        xmlrpc_value *v = NULL;

        xmlrpc_array_read_item(env, params, i, &v);
        xmlrpc_array_append_item(env, all, v);
        xmlrpc_DECREF(v);
    }
    body = XMLRPC_MEMBLOCK_NEW(char, env, 0);
    xmlrpc_serialize_call(env, body, method, all);
    xe_check_env(env);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, XMLRPC_MEMBLOCK_CONTENTS(char, body));
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)XMLRPC_MEMBLOCK_SIZE(char, body));
    c->reply_len = 0;
    c->curl_error[0] = 0;
    cc = curl_easy_perform(c->curl);
    if (cc != CURLE_OK) {
        snprintf(c->message, sizeof c->message, "%s", c->curl_error[0] ? c->curl_error : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        snprintf(c->message, sizeof c->message, "HTTP status %ld", status);
        goto out;
    }
    rc = decode(c, ret_value);
out:
    if (body)
        XMLRPC_MEMBLOCK_FREE(char, body);
    if (all)
        xmlrpc_DECREF(all);
    if (params)
        xmlrpc_DECREF(params);
    return rc;
}

int xe_callf(xe_conn *c, const xv **ret_value, const char *method, const char *format, ...) {
    xmlrpc_value *params = NULL;
    const xv *v = NULL;
    const char *tail = NULL;
    va_list ap;
    int rc;

    va_start(ap, format);
    xmlrpc_build_value_va(&c->env, format, ap, &params, &tail);
    va_end(ap);
    xe_check_env(&c->env);
    rc = xe_call(c, method, params, &v);
    if (rc == XE_RPC_OK && ret_value)
        *ret_value = v;
    return rc;
}

int xe_conn_login(xe_conn *c, const char *user, const char *password) {
    const xv *v = NULL;
    int rc;

    rc = xe_callf(c, &v, "session.login_with_password", "(ssss)", user, password, "1.0", "xe");
    if (rc != XE_RPC_OK)
        return rc;
    c->session = strdup(xv_str(v));
    return c->session ? XE_RPC_OK : XE_RPC_FAILURE;
}

void xe_conn_logout(xe_conn *c) {
    if (c->session)
        (void)xe_callf(c, NULL, "session.logout", "()");
    free(c->session);
    c->session = NULL;
}
