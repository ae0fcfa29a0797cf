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
    xmlrpc_value *error;
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

xmlrpc_value *xe_conn_error(xe_conn *c) {
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
        size_t cap = c->reply_cap ? c->reply_cap : 1 << 16;
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
    if (c->error)
        xmlrpc_DECREF(c->error);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    xmlrpc_env_clean(&c->env);
    free(c->url);
    free(c->session);
    free(c->reply);
    free(c);
}

static void set_failure(xe_conn *c, xmlrpc_value *error) {
    if (c->error)
        xmlrpc_DECREF(c->error);
    c->error = error;
}

/* A reply that is not {Status, Value|ErrorDescription} becomes INTERNAL_ERROR, as a server bug. */
static void set_bad_reply(xe_conn *c, const char *why) {
    set_failure(c, xmlrpc_build_value(&c->env, "(ss)", "INTERNAL_ERROR", why));
    xe_check_env(&c->env);
}

static int decode(xe_conn *c, xmlrpc_value **ret_value) {
    xmlrpc_env env;
    xmlrpc_value *result = NULL, *status = NULL, *value = NULL;
    const char *fault_string = NULL, *s = NULL;
    int fault_code = 0, rc = XE_RPC_FAILURE;

    xmlrpc_env_init(&env);
    xmlrpc_parse_response2(&env, c->reply, c->reply_len, &result, &fault_code, &fault_string);
    if (env.fault_occurred) {
        set_bad_reply(c, env.fault_string);
        goto out;
    }
    if (fault_string) {
        set_failure(c, xmlrpc_build_value(&c->env, "(ssis)", "XMLRPC_FAULT", "", fault_code, fault_string));
        xe_check_env(&c->env);
        goto out;
    }
    xmlrpc_struct_find_value(&env, result, "Status", &status);
    if (env.fault_occurred || !status || xmlrpc_value_type(status) != XMLRPC_TYPE_STRING) {
        set_bad_reply(c, "reply without a Status");
        goto out;
    }
    xmlrpc_read_string(&env, status, &s);
    if (strcmp(s, "Success") == 0) {
        xmlrpc_struct_find_value(&env, result, "Value", &value);
        if (!value)
            value = xmlrpc_string_new(&c->env, ""); /* void results may omit it */
        *ret_value = value;
        value = NULL;
        rc = XE_RPC_OK;
    } else {
        xmlrpc_struct_find_value(&env, result, "ErrorDescription", &value);
        if (!value || xmlrpc_value_type(value) != XMLRPC_TYPE_ARRAY || xmlrpc_array_size(&env, value) < 1) {
            set_bad_reply(c, "failure without an ErrorDescription");
            goto out;
        }
        set_failure(c, value);
        value = NULL;
    }
out:
    free((char *)s);
    free((char *)fault_string);
    if (value)
        xmlrpc_DECREF(value);
    if (status)
        xmlrpc_DECREF(status);
    if (result)
        xmlrpc_DECREF(result);
    xmlrpc_env_clean(&env);
    return rc;
}

int xe_call(xe_conn *c, const char *method, xmlrpc_value *params, xmlrpc_value **ret_value) {
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

int xe_callf(xe_conn *c, xmlrpc_value **ret_value, const char *method, const char *format, ...) {
    xmlrpc_value *params = NULL, *v = NULL;
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
    else if (rc == XE_RPC_OK)
        xmlrpc_DECREF(v);
    return rc;
}

int xe_conn_login(xe_conn *c, const char *user, const char *password) {
    xmlrpc_value *v = NULL;
    const char *s = NULL;
    int rc;

    rc = xe_callf(c, &v, "session.login_with_password", "(ssss)", user, password, "1.0", "xe");
    if (rc != XE_RPC_OK)
        return rc;
    if (xmlrpc_value_type(v) == XMLRPC_TYPE_STRING) {
        xmlrpc_read_string(&c->env, v, &s);
        c->session = (char *)s;
    }
    xmlrpc_DECREF(v);
    return c->session ? XE_RPC_OK : XE_RPC_FAILURE;
}

void xe_conn_logout(xe_conn *c) {
    if (c->session)
        (void)xe_callf(c, NULL, "session.logout", "()");
    free(c->session);
    c->session = NULL;
}
