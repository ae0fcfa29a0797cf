/* floor_server: the HTTP server of xenapid (libmicrohttpd, thread per
 * connection, the same options as xapi/http.c) answering every POST with one
 * fixed XML-RPC body: the floor that no XenAPI call can beat.
 *
 *   floor_server [-p PORT] [-f BODY_FILE]
 *
 * Reads each request body the way xapi/http.c does (into a growing buffer),
 * then answers 200 with the body of BODY_FILE (default: the reply of a
 * host.get_name_label) and the same headers as xenapid. Prints "port=N" once
 * listening (-p 0, the default, picks a free port) and serves until SIGTERM
 * or SIGINT. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "xapi/buf.h"
#include "xapi/value.h"

/* As xapi/http.c */
#define THREAD_STACK (512 * 1024)
#define MAX_BODY (300 * 1024)
#define MAX_CONNECTIONS 1024
#define CONNECTION_TIMEOUT 30

static const char default_body[] =
    "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct><member><name>Status</name>"
    "<value>Success</value></member><member><name>Value</name><value>bench-host</value></member></struct>"
    "</value></param></params></methodResponse>";

static char *reply_body;
static size_t reply_len;

typedef struct request_ctx {
    xapi_buf body;
    int too_large;
} request_ctx;

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls) {
    request_ctx *ctx = *con_cls;
    struct MHD_Response *resp;
    enum MHD_Result r;

    if (!ctx) {
        ctx = xapi_calloc(1, sizeof *ctx);
        *con_cls = ctx;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!ctx->too_large && ctx->body.len + *upload_data_size <= MAX_BODY)
            xapi_buf_append(&ctx->body, upload_data, *upload_data_size);
        else
            ctx->too_large = 1;
        *upload_data_size = 0;
        return MHD_YES;
    }
    resp = MHD_create_response_from_buffer(reply_len, reply_body, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/xml");
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers", "X-Requested-With, Content-Type");
    r = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return r;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    request_ctx *ctx = *con_cls;

    if (ctx) {
        xapi_buf_free(&ctx->body);
        free(ctx);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
}

int main(int argc, char **argv) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    struct MHD_Daemon *d;
    sigset_t sigs;
    int fd, one = 1, opt, sig;

    reply_body = (char *)default_body;
    reply_len = sizeof default_body - 1;
    while ((opt = getopt(argc, argv, "p:f:")) != -1) {
        if (opt == 'p')
            sa.sin_port = htons((uint16_t)atoi(optarg));
        else if (opt == 'f') {
            FILE *f = fopen(optarg, "rb");
            xapi_buf b = XAPI_BUF_INIT;
            char tmp[65536];
            size_t n;
            if (!f) {
                perror(optarg);
                return 2;
            }
            while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
                xapi_buf_append(&b, tmp, n);
            fclose(f);
            reply_body = xapi_buf_steal(&b, &reply_len);
        } else {
            fprintf(stderr, "usage: floor_server [-p PORT] [-f BODY_FILE]\n");
            return 2;
        }
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 128) < 0) {
        perror("floor_server: listen");
        return 1;
    }
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                             MHD_USE_ERROR_LOG,
                         0, NULL, NULL, handle, NULL, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED,
                         completed, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT, MHD_OPTION_THREAD_STACK_SIZE,
                         (size_t)THREAD_STACK, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                         MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "floor_server: cannot start the HTTP server\n");
        return 1;
    }
    printf("port=%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    do
        sig = sigwaitinfo(&sigs, NULL);
    while (sig < 0);
    MHD_stop_daemon(d);
    close(fd);
    return 0;
}
