/* Driver I/O in a thread that the caller may abandon (storage/io.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/log.h"
#include "storage/io.h"
#include "xapi/value.h"

typedef struct io_job {
    storage_io_fn fn;
    void *ctx;
    void (*ctx_free)(void *);
    void (*late)(void *, int);
    int rc;
    storage_err e;
    bool done, abandoned;
    char sr[37];
    char what[64];
    pthread_cond_t cond;
    struct io_job *next; /* in the stuck list, once abandoned */
} io_job;

/* One lock for every job: jobs are few and the critical sections tiny. */
static pthread_mutex_t io_lock = PTHREAD_MUTEX_INITIALIZER;
static io_job *stuck_list;
static unsigned stuck_count;

static void job_free(io_job *j) {
    pthread_cond_destroy(&j->cond);
    free(j);
}

static void *io_thread(void *arg) {
    io_job *j = arg;
    storage_err e = {0};
    int rc = j->fn(j->ctx, &e);

    pthread_mutex_lock(&io_lock);
    j->rc = rc;
    j->e = e;
    j->done = true;
    if (!j->abandoned) {
        pthread_cond_signal(&j->cond);
        pthread_mutex_unlock(&io_lock);
        return NULL;
    }
    for (io_job **p = &stuck_list; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            break;
        }
    stuck_count--;
    pthread_mutex_unlock(&io_lock);
    log_info("storage: SR %s: %s abandoned at its time limit has now ended (%s); its result was dropped",
             *j->sr ? j->sr : "-", j->what, rc < 0 ? strerror(-rc) : "success");
    if (j->late)
        j->late(j->ctx, rc);
    if (j->ctx_free)
        j->ctx_free(j->ctx);
    job_free(j);
    return NULL;
}

/* Whether the SR has an abandoned operation still running, and which (io_lock held). */
static const io_job *stuck_on(const char *sr_uuid) {
    for (const io_job *j = stuck_list; j && sr_uuid; j = j->next)
        if (strcmp(j->sr, sr_uuid) == 0)
            return j;
    return NULL;
}

unsigned storage_io_stuck(void) {
    unsigned n;

    pthread_mutex_lock(&io_lock);
    n = stuck_count;
    pthread_mutex_unlock(&io_lock);
    return n;
}

int storage_io_run(const char *sr_uuid, const char *what, storage_io_fn fn, void *ctx, void (*ctx_free)(void *),
                   storage_err *e) {
    return storage_io_run_late(sr_uuid, what, fn, ctx, ctx_free, NULL, e);
}

int storage_io_run_late(const char *sr_uuid, const char *what, storage_io_fn fn, void *ctx,
                        void (*ctx_free)(void *), void (*late)(void *ctx, int rc), storage_err *e) {
    pthread_condattr_t ca;
    pthread_attr_t ta;
    pthread_t tid;
    struct timespec deadline;
    sigset_t all, old;
    io_job *j = NULL;
    const io_job *other;
    char detail[200];
    int rc;

    pthread_mutex_lock(&io_lock);
    other = stuck_on(sr_uuid);
    if (other || stuck_count >= STORAGE_IO_MAX_STUCK) {
        if (other)
            snprintf(detail, sizeof detail, "%s: an earlier %s on this SR is still waiting for the storage", what,
                     other->what);
        else
            snprintf(detail, sizeof detail, "%s: %u storage operations are stuck waiting for their storage", what,
                     stuck_count);
        pthread_mutex_unlock(&io_lock);
        return storage_err_set(e, SM_ERR_SR_UNAVAILABLE, EBUSY, "The SR is not available", detail);
    }
    pthread_mutex_unlock(&io_lock);

    j = xapi_calloc(1, sizeof *j);
    j->fn = fn;
    j->ctx = ctx;
    j->ctx_free = ctx_free;
    j->late = late;
    snprintf(j->sr, sizeof j->sr, "%s", sr_uuid ? sr_uuid : "");
    snprintf(j->what, sizeof j->what, "%s", what);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cond, &ca);
    pthread_condattr_destroy(&ca);

    /* The thread takes no signals (the daemon's signal handling stays on its own threads). */
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = -pthread_create(&tid, &ta, io_thread, j);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&ta);
    if (rc < 0) {
        job_free(j);
        snprintf(detail, sizeof detail, "%s: %s", what, strerror(-rc));
        return storage_err_set(e, SM_ERR_SR_UNAVAILABLE, rc, "The SR is not available", detail);
    }

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)storage_io_timeout + 1;
    pthread_mutex_lock(&io_lock);
    while (!j->done)
        if (pthread_cond_timedwait(&j->cond, &io_lock, &deadline) == ETIMEDOUT && !j->done) {
            j->abandoned = true;
            j->next = stuck_list;
            stuck_list = j;
            stuck_count++;
            break;
        }
    if (j->done) {
        rc = j->rc;
        *e = j->e;
        pthread_mutex_unlock(&io_lock);
        job_free(j);
        return rc;
    }
    pthread_mutex_unlock(&io_lock);
    log_warning("storage: SR %s: %s did not finish within %u s: abandoned (the storage does not answer)",
                sr_uuid ? sr_uuid : "-", what, storage_io_timeout);
    snprintf(detail, sizeof detail, "%s: no answer from the storage within %u s", what, storage_io_timeout);
    storage_err_set(e, SM_ERR_SR_UNAVAILABLE, ETIME, "The SR is not available", detail);
    return -ETIME;
}
