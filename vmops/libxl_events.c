/* libxl's file descriptors and timeouts polled by a thread of our own, as
 * libvirt's libxl driver does with its event loop.
 *
 * The registry (fds and timeouts libxl asked for) and the queue of libxl
 * events are guarded by l->lock. libxl calls the registration hooks with its
 * ctx lock held, so l->lock comes after libxl's locks: no libxl function is
 * ever called with l->lock held (libxl_event.h's rule (a)). The thread works
 * on a snapshot: it polls copies of the registrations, then tells libxl what
 * happened. libxl copes with a stale for_libxl (its nexus objects live as long
 * as the ctx and are checked on every call), and rechecks an fd before acting.
 *
 * Synchronous libxl calls on API threads run libxl's own poller on the same
 * fds meanwhile; whichever thread sees an event first handles it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "agent/log.h"
#include "vmops/libxl_events.h"
#include "xapi/value.h"

#define POLL_MAX_MS 60000

typedef struct loop_fd {
    int fd;
    short events;
    void *for_libxl;
    struct loop_fd *next;
} loop_fd;

typedef struct loop_timer {
    struct timeval abs;
    void *for_libxl;
    struct loop_timer *next;
} loop_timer;

typedef struct loop_event {
    libxl_event *ev;
    struct loop_event *next;
} loop_event;

/* What one poll watches for libxl. */
typedef struct poll_tag {
    int fd;
    short events;
    void *for_libxl;
} poll_tag;

struct vmops_libxl_loop {
    libxl_ctx *ctx;
    vmops_libxl_event_fn fn;
    void *ud;
    pthread_mutex_t lock;
    loop_fd *fds;
    loop_timer *timers;
    loop_event *queue, **queue_tail;
    int wake[2];
    bool stop, running;
    pthread_t thread;
};

static void wake(vmops_libxl_loop *l) {
    static const char b = 0;

    /* A full pipe already wakes the thread. */
    if (write(l->wake[1], &b, 1) < 0 && errno != EAGAIN)
        log_debug("libxl loop: wake: %s", strerror(errno));
}

/* ---- the hooks libxl calls (ctx locked) ----------------------------------------- */

static int fd_register(void *user, int fd, void **for_app_out, short events, void *for_libxl) {
    vmops_libxl_loop *l = user;
    loop_fd *r = calloc(1, sizeof *r);

    if (!r)
        return ERROR_OSEVENT_REG_FAIL;
    r->fd = fd;
    r->events = events;
    r->for_libxl = for_libxl;
    pthread_mutex_lock(&l->lock);
    r->next = l->fds;
    l->fds = r;
    pthread_mutex_unlock(&l->lock);
    *for_app_out = r;
    wake(l);
    return 0;
}

static int fd_modify(void *user, int fd, void **for_app_update, short events) {
    vmops_libxl_loop *l = user;
    loop_fd *r = *for_app_update;

    pthread_mutex_lock(&l->lock);
    r->events = events;
    pthread_mutex_unlock(&l->lock);
    wake(l);
    return 0;
}

static void fd_deregister(void *user, int fd, void *for_app) {
    vmops_libxl_loop *l = user;
    loop_fd **p;

    pthread_mutex_lock(&l->lock);
    for (p = &l->fds; *p; p = &(*p)->next)
        if (*p == for_app) {
            *p = ((loop_fd *)for_app)->next;
            break;
        }
    pthread_mutex_unlock(&l->lock);
    free(for_app);
    wake(l);
}

static int timeout_register(void *user, void **for_app_out, struct timeval abs, void *for_libxl) {
    vmops_libxl_loop *l = user;
    loop_timer *t = calloc(1, sizeof *t);

    if (!t)
        return ERROR_OSEVENT_REG_FAIL;
    t->abs = abs;
    t->for_libxl = for_libxl;
    pthread_mutex_lock(&l->lock);
    t->next = l->timers;
    l->timers = t;
    pthread_mutex_unlock(&l->lock);
    *for_app_out = t;
    wake(l);
    return 0;
}

/* Only ever "fire as soon as possible" ({0,0}), possibly racing with the
 * thread firing it already: the timer stays allocated until its
 * libxl_osevent_occurred_timeout has returned, so this is harmless. */
static int timeout_modify(void *user, void **for_app_update, struct timeval abs) {
    vmops_libxl_loop *l = user;
    loop_timer *t = *for_app_update;

    pthread_mutex_lock(&l->lock);
    t->abs = abs;
    pthread_mutex_unlock(&l->lock);
    wake(l);
    return 0;
}

/* Never called by libxl 4.17 (a deprecated mode); kept correct anyway. */
static void timeout_deregister(void *user, void *for_app) {
    vmops_libxl_loop *l = user;
    loop_timer **p, *t = for_app;
    bool found = false;

    pthread_mutex_lock(&l->lock);
    for (p = &l->timers; *p; p = &(*p)->next)
        if (*p == t) {
            *p = t->next;
            found = true;
            break;
        }
    pthread_mutex_unlock(&l->lock);
    if (found)
        free(t);
}

static const libxl_osevent_hooks osevent_hooks = {
    .fd_register = fd_register,
    .fd_modify = fd_modify,
    .fd_deregister = fd_deregister,
    .timeout_register = timeout_register,
    .timeout_modify = timeout_modify,
    .timeout_deregister = timeout_deregister,
};

pid_t vmops_libxl_fork(void *user) {
    pid_t pid;

    (void)user;
    pid = fork();
    if (pid == 0) {
        sigset_t none;

        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
    }
    return pid;
}

/* libxl reaps its own children (hotplug scripts, bootloader, QEMU) and leaves
 * every other child of the daemon alone; it forks them with no signal blocked. */
static const libxl_childproc_hooks childproc_hooks = {
    .chldowner = libxl_sigchld_owner_libxl_always_selective_reap,
    .fork_replacement = vmops_libxl_fork,
};

/* On whatever thread made libxl notice the event (ctx unlocked): queued for ours. */
static void event_occurs(void *user, libxl_event *ev) {
    vmops_libxl_loop *l = user;
    loop_event *q = calloc(1, sizeof *q);

    if (!q) {
        log_error("libxl loop: out of memory: %s event of domain %u lost", libxl_event_type_to_string(ev->type),
                  ev->domid);
        libxl_event_free(l->ctx, ev);
        return;
    }
    q->ev = ev;
    pthread_mutex_lock(&l->lock);
    *l->queue_tail = q;
    l->queue_tail = &q->next;
    pthread_mutex_unlock(&l->lock);
    wake(l);
}

static void event_disaster(void *user, libxl_event_type type, const char *msg, int errnoval) {
    log_error("libxl: its event machinery failed (%s%s%s): events may be lost; restart xenapid", msg,
              errnoval ? ": " : "", errnoval ? strerror(errnoval) : "");
}

static const libxl_event_hooks event_hooks = {
    .event_occurs_mask = LIBXL_EVENTMASK_ALL,
    .event_occurs = event_occurs,
    .disaster = event_disaster,
};

/* ---- the thread ------------------------------------------------------------------- */

/* Milliseconds from now to abs, rounded up (poll must not wake before it), capped. */
static int ms_until(const struct timeval *abs, const struct timeval *now) {
    long long us;

    if (!timercmp(abs, now, >))
        return 0;
    us = (long long)(abs->tv_sec - now->tv_sec) * 1000000LL + (abs->tv_usec - now->tv_usec);
    return us >= (long long)POLL_MAX_MS * 1000 ? POLL_MAX_MS : (int)((us + 999) / 1000);
}

static void drain(int fd) {
    char buf[64];

    while (read(fd, buf, sizeof buf) > 0)
        ;
}

static void *loop_main(void *arg) {
    vmops_libxl_loop *l = arg;
    struct pollfd *pfds = NULL;
    poll_tag *tags = NULL;
    size_t cap = 0;

    pthread_setname_np(pthread_self(), "libxl-loop");
    for (;;) {
        loop_timer *due = NULL;
        loop_event *events = NULL;
        struct timeval now;
        size_t n = 1;
        int timeout = -1;

        /* snapshot of what libxl wants */
        pthread_mutex_lock(&l->lock);
        if (l->stop) {
            pthread_mutex_unlock(&l->lock);
            break;
        }
        for (loop_fd *r = l->fds; r; r = r->next)
            n++;
        if (n > cap) {
            cap = n * 2;
            pfds = realloc(pfds, cap * sizeof *pfds);
            tags = realloc(tags, cap * sizeof *tags);
            if (!pfds || !tags)
                xapi_oom();
        }
        pfds[0] = (struct pollfd){.fd = l->wake[0], .events = POLLIN};
        n = 1;
        for (loop_fd *r = l->fds; r; r = r->next) {
            if (!r->events)
                continue;
            pfds[n] = (struct pollfd){.fd = r->fd, .events = r->events};
            tags[n] = (poll_tag){.fd = r->fd, .events = r->events, .for_libxl = r->for_libxl};
            n++;
        }
        gettimeofday(&now, NULL);
        for (loop_timer *t = l->timers; t; t = t->next) {
            int ms = ms_until(&t->abs, &now);
            if (timeout < 0 || ms < timeout)
                timeout = ms;
        }
        pthread_mutex_unlock(&l->lock);

        if (poll(pfds, n, timeout) < 0 && errno != EINTR) {
            log_error("libxl loop: poll: %s", strerror(errno));
            usleep(100000); /* do not spin on a persistent failure */
            continue;
        }
        if (pfds[0].revents)
            drain(l->wake[0]);

        /* what happened, told to libxl without our lock */
        for (size_t i = 1; i < n; i++)
            if (pfds[i].revents)
                libxl_osevent_occurred_fd(l->ctx, tags[i].for_libxl, tags[i].fd, tags[i].events, pfds[i].revents);

        pthread_mutex_lock(&l->lock);
        gettimeofday(&now, NULL);
        for (loop_timer **p = &l->timers; *p;) {
            loop_timer *t = *p;
            if (!timercmp(&t->abs, &now, >)) {
                *p = t->next;
                t->next = due;
                due = t;
            } else
                p = &t->next;
        }
        pthread_mutex_unlock(&l->lock);
        while (due) {
            loop_timer *t = due;
            due = t->next;
            /* libxl considers the timeout deregistered from here on */
            libxl_osevent_occurred_timeout(l->ctx, t->for_libxl);
            free(t);
        }

        pthread_mutex_lock(&l->lock);
        events = l->queue;
        l->queue = NULL;
        l->queue_tail = &l->queue;
        pthread_mutex_unlock(&l->lock);
        while (events) {
            loop_event *q = events;
            events = q->next;
            l->fn(l->ud, q->ev);
            free(q);
        }
    }
    free(pfds);
    free(tags);
    return NULL;
}

/* ---- life ------------------------------------------------------------------------- */

int vmops_libxl_loop_new(libxl_ctx *ctx, vmops_libxl_event_fn fn, void *ud, vmops_libxl_loop **ret) {
    vmops_libxl_loop *l = NULL;
    int rc;

    l = xapi_calloc(1, sizeof *l);
    l->ctx = ctx;
    l->fn = fn;
    l->ud = ud;
    l->wake[0] = l->wake[1] = -1;
    l->queue_tail = &l->queue;
    pthread_mutex_init(&l->lock, NULL);
    if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        rc = -errno;
        goto out;
    }
    /* before anything else registers an fd or a timeout with the ctx */
    libxl_osevent_register_hooks(ctx, &osevent_hooks, l);
    libxl_childproc_setmode(ctx, &childproc_hooks, l);
    libxl_event_register_callbacks(ctx, &event_hooks, l);
    *ret = l;
    l = NULL;
    rc = 0;
out:
    vmops_libxl_loop_free(l);
    return rc;
}

int vmops_libxl_loop_start(vmops_libxl_loop *l) {
    int rc = pthread_create(&l->thread, NULL, loop_main, l);

    if (rc != 0)
        return -rc;
    l->running = true;
    return 0;
}

void vmops_libxl_loop_stop(vmops_libxl_loop *l) {
    if (!l || !l->running)
        return;
    pthread_mutex_lock(&l->lock);
    l->stop = true;
    pthread_mutex_unlock(&l->lock);
    wake(l);
    pthread_join(l->thread, NULL);
    l->running = false;
}

void vmops_libxl_loop_free(vmops_libxl_loop *l) {
    if (!l)
        return;
    vmops_libxl_loop_stop(l);
    while (l->fds) {
        loop_fd *r = l->fds;
        l->fds = r->next;
        free(r);
    }
    while (l->timers) {
        loop_timer *t = l->timers;
        l->timers = t->next;
        free(t);
    }
    while (l->queue) {
        loop_event *q = l->queue;
        l->queue = q->next;
        libxl_event_free(NULL, q->ev);
        free(q);
    }
    if (l->wake[0] >= 0)
        close(l->wake[0]);
    if (l->wake[1] >= 0)
        close(l->wake[1]);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
