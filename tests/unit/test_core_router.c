/* ABI 1.3 on the real router code with in-process fake plugins: deliver()
 * waits in the chat's order behind routed messages, returns send()'s
 * message id, is never acknowledged, cleans its text, refuses an unknown
 * transport or a draining router, and leaves a caller that gave up alone;
 * intercept() sees reply_to (absent for a 1.2 transport) and takes the
 * message before the backend, which the watermark then covers; events of
 * deliveries and taken answers name the caller and the task (answered()
 * counts only inside intercept()); ABI 1.4 sends that finish later keep
 * the chat's order; 1.5 sends from the backend's completing thread; 1.7
 * frees the chat once an ordered transport took its reply; the layout of
 * the 1.3 and 1.4 members. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"
#include "router.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char log_[4096]; /* "send:<chat>:<text>|" and "handle:<text>|" in order */
static int64_t next_msg_id = 500, last_ack = -1, last_reply_to = -2, last_update = -2;
static uint32_t last_flags;
static char last_corr[64];
static int backend_ms, send_fails;
static rd_ctx *tr, *be, *ib, *sk;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&mu);
    size_t n = strlen(log_);
    vsnprintf(log_ + n, sizeof log_ - n, fmt, ap);
    pthread_mutex_unlock(&mu);
    va_end(ap);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ABI 1.4: with pend_mode, send() returns RD_PENDING and the test (or,
 * with pend_auto, a thread 20 ms later) finishes it with send_done(). */
static int pend_mode, pend_auto;
static rd_send *pend[16];
static int64_t pend_chat[16];
static size_t npend;

static void *auto_done(void *arg) {
    sleep_ms(20);
    host_api.send_done(arg, RD_OK, 777, NULL);
    return NULL;
}

static int pend_race;

static void *now_done(void *arg) {
    host_api.send_done(arg, RD_OK, 778, NULL);
    return NULL;
}

static size_t pending_now(void) {
    pthread_mutex_lock(&mu);
    size_t n = npend;
    pthread_mutex_unlock(&mu);
    return n;
}

static void wait_pending(size_t n) {
    int64_t end = mono_ms() + 5000;
    while (pending_now() < n && mono_ms() < end)
        sleep_ms(5);
    assert_int_equal(pending_now(), n);
}

/* Finishes the pending send of chat (the oldest one). */
static void finish_pending(int64_t chat, rd_status st, int64_t id, const char *why) {
    rd_send *s = NULL;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < npend && !s; i++)
        if (pend_chat[i] == chat) {
            s = pend[i];
            memmove(pend + i, pend + i + 1, (npend - i - 1) * sizeof *pend);
            memmove(pend_chat + i, pend_chat + i + 1, (npend - i - 1) * sizeof *pend_chat);
            npend--;
        }
    pthread_mutex_unlock(&mu);
    assert_non_null(s);
    rd_error e = {.code = st};
    snprintf(e.msg, sizeof e.msg, "%s", why ? why : "");
    host_api.send_done(s, st, id, why ? &e : NULL);
}

/* ABI 1.5: with nowait_mode the transport takes RD_OUT_NOWAIT (its
 * descriptor says so): a text with "[wait]" would wait, so it is refused
 * then; the rest finish later (20 ms). Each send is logged with whether
 * it was allowed to wait and its thread's name. */
static int nowait_mode;

static rd_status t_send(void *self, const rd_outbound *out, rd_error *err) {
    (void)self;
    if (nowait_mode) {
        char name[16] = "";
        pthread_getname_np(pthread_self(), name, sizeof name);
        bool nw = out->flags & RD_OUT_NOWAIT;
        note("send:%lld:%s:%s:%s|", (long long)out->chat_id, out->text, nw ? "nowait" : "wait",
             name);
        if (nw && strstr(out->text, "[wait]")) return RD_E_WOULDBLOCK;
        pthread_mutex_lock(&mu);
        last_flags = out->flags;
        pthread_mutex_unlock(&mu);
        pthread_t th;
        if (!out->done || pthread_create(&th, NULL, auto_done, out->done) != 0)
            return RD_E_INTERNAL;
        pthread_detach(th);
        return RD_PENDING;
    }
    if (pend_mode && out->done && pend_race) {
        /* send_done() on another thread before send() returns */
        note("send:%lld:%s|", (long long)out->chat_id, out->text);
        pthread_t th;
        if (pthread_create(&th, NULL, now_done, out->done) != 0) return RD_E_INTERNAL;
        pthread_join(th, NULL);
        return RD_PENDING;
    }
    if (pend_mode && out->done) {
        note("send:%lld:%s|", (long long)out->chat_id, out->text);
        if (out->sent_id) *out->sent_id = 999; /* must not count: the id comes with send_done */
        if (pend_auto) {
            pthread_t th;
            if (pthread_create(&th, NULL, auto_done, out->done) != 0) return RD_E_INTERNAL;
            pthread_detach(th);
            return RD_PENDING;
        }
        pthread_mutex_lock(&mu);
        pend[npend] = out->done;
        pend_chat[npend++] = out->chat_id;
        pthread_mutex_unlock(&mu);
        return RD_PENDING;
    }
    if (send_fails) {
        snprintf(err->msg, sizeof err->msg, "chat not found");
        return RD_E_FATAL;
    }
    note("send:%lld:%s|", (long long)out->chat_id, out->text);
    pthread_mutex_lock(&mu);
    last_flags = out->flags;
    last_update = out->update_id;
    snprintf(last_corr, sizeof last_corr, "%s", out->correlation_id ? out->correlation_id : "");
    int64_t id = ++next_msg_id;
    pthread_mutex_unlock(&mu);
    if (RD_HAS(out, sent_id) && out->sent_id) *out->sent_id = id;
    return RD_OK;
}

static atomic_int activity_calls;

static void t_activity(void *self, const rd_outbound *where, int active) {
    (void)self, (void)where, (void)active;
    atomic_fetch_add(&activity_calls, 1);
}

static void t_ack(void *self, int64_t wm) {
    (void)self;
    last_ack = wm; /* under R.mu */
}

/* What the sink saw of each message event. */
typedef struct seen_ev {
    rd_event_type type;
    char status[32], corr[80], caller[32], backend[48];
    bool has_caller;
} seen_ev;
static seen_ev evs[64];
static size_t nevs;

static void s_event(void *self, const rd_event *ev) {
    (void)self;
    if (ev->type == RD_EV_LOG) return;
    pthread_mutex_lock(&mu);
    if (nevs < sizeof evs / sizeof *evs) {
        seen_ev *e = &evs[nevs++];
        e->type = ev->type;
        snprintf(e->status, sizeof e->status, "%s", ev->status ? ev->status : "");
        snprintf(e->corr, sizeof e->corr, "%s", ev->correlation_id ? ev->correlation_id : "");
        snprintf(e->backend, sizeof e->backend, "%s", ev->backend ? ev->backend : "");
        e->has_caller = RD_HAS(ev, caller) && ev->caller;
        snprintf(e->caller, sizeof e->caller, "%s", e->has_caller ? ev->caller : "");
    }
    pthread_mutex_unlock(&mu);
}

/* The replied event with that status, after sinks saw what was queued. */
static seen_ev replied_with(const char *status) {
    sinks_flush(5000);
    seen_ev r = {0};
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nevs; i++)
        if (evs[i].type == RD_EV_REPLIED && !strcmp(evs[i].status, status)) r = evs[i];
    nevs = 0;
    pthread_mutex_unlock(&mu);
    assert_string_equal(r.status, status);
    return r;
}

/* With be_pending, handle() returns RD_PENDING and a thread named
 * "be-done" completes the call 10 ms later: "fail" with a timeout. */
static int be_pending;
static atomic_int be_threads; /* be-done threads not yet out of complete() */

typedef struct be_call {
    rd_reply *rp;
    char text[64];
} be_call;

static void *be_done(void *arg) {
    be_call *c = arg;
    pthread_setname_np(pthread_self(), "be-done");
    sleep_ms(10);
    if (!strcmp(c->text, "fail")) {
        rd_error e = {.code = RD_E_TIMEOUT};
        snprintf(e.msg, sizeof e.msg, "agent too slow");
        host_api.complete(c->rp, RD_E_TIMEOUT, &e);
    } else {
        router_reply_append(c->rp, "echo: ", 6);
        router_reply_append(c->rp, c->text, strlen(c->text));
        host_api.complete(c->rp, RD_OK, NULL);
    }
    free(c);
    atomic_fetch_sub(&be_threads, 1);
    return NULL;
}

static rd_status b_handle(void *self, const rd_request *rq, rd_reply *rp, rd_error *err) {
    (void)self, (void)err;
    note("handle:%s|", rq->text);
    if (be_pending) {
        be_call *c = calloc(1, sizeof *c);
        pthread_t th;
        if (!c) return RD_E_INTERNAL;
        c->rp = rp;
        snprintf(c->text, sizeof c->text, "%s", rq->text);
        atomic_fetch_add(&be_threads, 1);
        if (pthread_create(&th, NULL, be_done, c) != 0) {
            atomic_fetch_sub(&be_threads, 1);
            free(c);
            return RD_E_INTERNAL;
        }
        pthread_detach(th);
        return RD_PENDING;
    }
    /* Not inside intercept(): ignored, even on the message's worker. */
    if (!strcmp(rq->text, "sneaky")) host_api.answered(ib, "task-sneaky", "mallory");
    sleep_ms(backend_ms);
    router_reply_append(rp, "echo: ", 6);
    router_reply_append(rp, rq->text, rq->text_len);
    return RD_OK;
}

static int i_intercept(void *self, const rd_request *rq) {
    (void)self;
    pthread_mutex_lock(&mu);
    last_reply_to = rq->reply_to;
    pthread_mutex_unlock(&mu);
    /* 77 and 79 are answers to a task of the planner's; 78 names one but
     * does not take the message. */
    if (rq->reply_to >= 77 && rq->reply_to <= 78) host_api.answered(ib, "task-77", "planner");
    if (rq->reply_to == 79) host_api.answered(tr, "task-79", "planner"); /* not the inbound */
    return rq->reply_to == 77 || rq->reply_to == 79;
}

static rd_status x_create(const rd_host *h, rd_ctx *c, void **self, rd_error *e) {
    (void)h, (void)c, (void)self, (void)e;
    return RD_OK;
}

static const rd_ops tr_ops = {
    .size = sizeof tr_ops, .send = t_send, .activity = t_activity, .ack = t_ack};
static const rd_ops be_ops = {.size = sizeof be_ops, .handle = b_handle};
static const rd_ops in_ops = {.size = sizeof in_ops, .intercept = i_intercept};
static const rd_ops sk_ops = {.size = sizeof sk_ops, .event = s_event};
static const rd_plugin sk_desc = {.kind = RD_KIND_SINK, .name = "t"};

static persona P;
static rd_series *no_series[1];

static int setup(void **state) {
    (void)state;
    memset(&R, 0, sizeof R);
    R.max_workers = 4;
    R.queue_depth = 64;
    R.request_timeout_s = 5;
    R.chat_idle_s = 60;
    R.max_overrides = 10;
    R.failure_notice = "failed";
    R.rate_limit_notice = "slow down";
    snprintf(R.hash_key, sizeof R.hash_key, "key");
    tr = ctx_new(RD_KIND_TRANSPORT, "transport.t", "t");
    tr->ops = &tr_ops;
    be = ctx_new(RD_KIND_BACKEND, "backend.b", "b");
    be->ops = &be_ops;
    ib = ctx_new(RD_KIND_INBOUND, "inbound.people", "people");
    ib->ops = &in_ops;
    ib->started = true;
    sk = ctx_new(RD_KIND_SINK, "sink.t", "t");
    sk->ops = &sk_ops;
    sk->desc = &sk_desc;
    R.ctx = &sk;
    R.nctx = 1;
    R.tr = &tr;
    R.ntr = 1;
    R.inb = &ib;
    R.ninb = 1;
    P = (persona){.tag = "p", .backend = be, .is_default = true};
    P.m_received = P.m_replied = no_series;
    R.personas = &P;
    R.npersonas = 1;
    R.default_persona = &P;
    char err[64];
    router_init(err, sizeof err);
    router_open_inbound();
    sinks_start();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    router_stop_workers(mono_ms() + 5000);
    router_fini();
    sinks_stop();
    ctx_free(tr);
    ctx_free(be);
    ctx_free(ib);
    ctx_free(sk);
    memset(&R, 0, sizeof R);
    return 0;
}

static void reset_log(void) {
    pthread_mutex_lock(&mu);
    log_[0] = 0;
    pthread_mutex_unlock(&mu);
}

static void submit(int64_t update, int64_t chat, const char *text, int64_t reply_to,
                   uint32_t size) {
    rd_inbound in = {.size = size ? size : sizeof in,
                     .update_id = update,
                     .chat_id = chat,
                     .user_id = chat,
                     .message_id = update * 10,
                     .text = text,
                     .text_len = strlen(text),
                     .reply_to = reply_to};
    assert_int_equal(router_submit(tr, &in), RD_OK);
}

static rd_status deliver(const char *transport, int64_t chat, const char *text, size_t len,
                         int64_t timeout_ms, int64_t *sent_id, rd_error *err) {
    rd_outbound out = {.size = sizeof out,
                       .chat_id = chat,
                       .text = text,
                       .text_len = len,
                       .flags = RD_OUT_QUESTION,
                       .correlation_id = "task-0123456789-abcdef-0123456789-abcdef",
                       .caller = "planner"};
    return router_deliver(ib, transport, &out, timeout_ms, sent_id, err);
}

static void wait_idle(void) {
    int64_t end = mono_ms() + 5000;
    while (!router_wait_idle(end) && mono_ms() < end)
        ;
    assert_true(router_wait_idle(end));
}

/* Behind the message being answered, sent by a worker, its id returned,
 * no acknowledgement of its own. */
static void deliver_in_chat_order(void **state) {
    (void)state;
    reset_log();
    backend_ms = 200;
    submit(1, 15, "first", 0, 0);
    sleep_ms(50); /* the backend has it */
    int64_t sent = -1;
    rd_error err = {0};
    assert_int_equal(deliver("t", 15, "Question?", 9, 0, &sent, &err), RD_OK);
    assert_string_equal(log_, "handle:first|send:15:echo: first|send:15:Question?|");
    pthread_mutex_lock(&mu);
    assert_int_equal(sent, next_msg_id);
    assert_true(last_flags & RD_OUT_QUESTION);
    assert_int_equal(last_update, -1);
    assert_string_equal(last_corr, "task-0123456789-abcdef-0123456789-abcdef");
    pthread_mutex_unlock(&mu);
    wait_idle();
    /* The delivery's event names the task and the calling agent. */
    seen_ev e = replied_with("delivered");
    assert_string_equal(e.corr, "task-0123456789-abcdef-0123456789-abcdef");
    assert_string_equal(e.caller, "planner");
    assert_string_equal(e.backend, "inbound.people");
    pthread_mutex_lock(&R.mu);
    assert_int_equal(last_ack, 1);
    assert_int_equal(R.waiting, 0);
    pthread_mutex_unlock(&R.mu);

    /* Text is cleaned like replies; nothing at all is refused. */
    reset_log();
    assert_int_equal(deliver("t", 16,
                             "a\xff"
                             "b",
                             3, 0, NULL, &err),
                     RD_OK);
    assert_string_equal(log_, "send:16:a\xef\xbf\xbd"
                              "b|");
    assert_int_equal(deliver("t", 16, "", 0, 0, &sent, &err), RD_E_FATAL);
    assert_non_null(strstr(err.msg, "nothing to send"));
    /* send()'s failure comes back with its message. */
    send_fails = 1;
    assert_int_equal(deliver("t", 16, "x", 1, 0, &sent, &err), RD_E_FATAL);
    assert_string_equal(err.msg, "chat not found");
    assert_int_equal(sent, 0);
    send_fails = 0;
}

static void deliver_refused(void **state) {
    (void)state;
    int64_t sent = -1;
    rd_error err = {0};
    assert_int_equal(deliver("nope", 15, "x", 1, 0, &sent, &err), RD_E_UNAVAILABLE);
    assert_non_null(strstr(err.msg, "'nope'"));
    assert_int_equal(sent, 0);
    atomic_store(&R.draining, true);
    assert_int_equal(deliver("t", 15, "x", 1, 0, &sent, &err), RD_E_UNAVAILABLE);
    atomic_store(&R.draining, false);
    pthread_mutex_lock(&R.mu);
    assert_int_equal(R.waiting, 0);
    pthread_mutex_unlock(&R.mu);
}

/* The caller gives up; the send still happens later, and the caller's
 * variables are not written then (ASan would also see a freed waiter). */
static void deliver_waiter_gone(void **state) {
    (void)state;
    reset_log();
    backend_ms = 300;
    submit(2, 17, "slow", 0, 0);
    sleep_ms(50);
    int64_t sent = -1;
    rd_error err = {0};
    assert_int_equal(deliver("t", 17, "late", 4, 30, &sent, &err), RD_E_TIMEOUT);
    assert_int_equal(sent, 0);
    assert_int_equal(err.code, RD_E_TIMEOUT);
    sent = 12345;
    wait_idle();
    assert_string_equal(log_, "handle:slow|send:17:echo: slow|send:17:late|");
    assert_int_equal(sent, 12345);
    backend_ms = 0;
}

/* reply_to reaches intercept(); a taken message skips the backend and is
 * acknowledged; a 1.2 transport's struct has no reply_to. */
static size_t replied_count(void) {
    sinks_flush(5000);
    size_t n = 0;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nevs; i++)
        n += evs[i].type == RD_EV_REPLIED;
    pthread_mutex_unlock(&mu);
    return n;
}

/* ABI 1.4: a send that finishes later holds its chat (the next message
 * waits for send_done()) but not a worker; its reply is counted only at the
 * end; a failure comes back through send_done(); deliver() gets the
 * id send_done() names. */
static void pending_send_holds_chat(void **state) {
    (void)state;
    reset_log();
    backend_ms = 0;
    pend_mode = 1;
    replied_count();
    pthread_mutex_lock(&mu);
    nevs = 0;
    pthread_mutex_unlock(&mu);
    submit(40, 60, "one", 0, 0);
    submit(41, 60, "two", 0, 0);
    for (int i = 0; i < 6; i++) { /* more chats than the 4 workers: none is held */
        char t[8];
        snprintf(t, sizeof t, "c%d", i);
        submit(42 + i, 61 + i, t, 0, 0);
    }
    wait_pending(7);
    sleep_ms(100);
    assert_int_equal(pending_now(), 7);
    assert_null(strstr(log_, "handle:two|"));
    pthread_mutex_lock(&R.mu);
    size_t inflight = R.inflight, waiting = R.waiting;
    pthread_mutex_unlock(&R.mu);
    assert_int_equal(inflight, 7);
    assert_int_equal(waiting, 1);
    assert_int_equal(replied_count(), 0); /* nothing ended yet */
    finish_pending(60, RD_OK, 901, NULL);
    wait_pending(7); /* "two" is sent now */
    const char *one = strstr(log_, "send:60:echo: one|"), *two = strstr(log_, "send:60:echo: two|");
    assert_non_null(one);
    assert_non_null(two);
    assert_true(one < strstr(log_, "handle:two|") && strstr(log_, "handle:two|") < two);
    assert_int_equal(replied_count(), 1);
    /* a failure through send_done() is a failed send */
    finish_pending(61, RD_E_FATAL, 0, "bot was blocked by the user");
    for (int i = 1; i < 6; i++)
        finish_pending(61 + i, RD_OK, 0, NULL);
    finish_pending(60, RD_OK, 902, NULL);
    wait_idle();
    assert_int_equal(replied_count(), 8);
    seen_ev e = replied_with("send_failed");
    assert_string_equal(e.status, "send_failed");
    /* deliver(): the id from send_done(), not what send() wrote */
    pend_auto = 1;
    int64_t sent = -1;
    rd_error err = {0};
    assert_int_equal(deliver("t", 70, "Question?", 9, 0, &sent, &err), RD_OK);
    assert_int_equal(sent, 777);
    wait_idle();
    pend_auto = pend_mode = 0;
}

/* ABI 1.7: a transport that keeps a chat's sends in order
 * (RD_PF_ORDERED_SEND) frees the chat once send() took the reply: the next
 * message is handled while the reply before it is still going out; each
 * update is acknowledged only once its send is done. A send_done() that
 * comes before send() returns frees nothing twice. Without the flag (or
 * for a 1.6 plugin) the chat waits, as before. */
static void ordered_send_frees_chat(void **state) {
    (void)state;
    static const rd_plugin d_ordered = {.abi_major = RD_ABI_MAJOR,
                                        .abi_minor = RD_ABI_MINOR,
                                        .size = sizeof d_ordered,
                                        .kind = RD_KIND_TRANSPORT,
                                        .name = "t",
                                        .flags = RD_PF_ORDERED_SEND};
    rd_plugin d_old = d_ordered;
    d_old.abi_minor = 6;
    reset_log();
    backend_ms = 0;
    pend_mode = 1;
    tr->desc = &d_ordered;
    replied_count();
    pthread_mutex_lock(&mu);
    nevs = 0;
    pthread_mutex_unlock(&mu);
    submit(200, 90, "one", 0, 0);
    submit(201, 90, "two", 0, 0);
    submit(202, 90, "three", 0, 0);
    wait_pending(3);
    assert_string_equal(log_, "handle:one|send:90:echo: one|handle:two|send:90:echo: two|"
                              "handle:three|send:90:echo: three|");
    /* all three still running: none ended (acknowledged, counted) yet */
    pthread_mutex_lock(&R.mu);
    size_t inflight = R.inflight;
    pthread_mutex_unlock(&R.mu);
    assert_int_equal(inflight, 3);
    assert_int_equal(replied_count(), 0);
    finish_pending(90, RD_OK, 1, NULL);
    assert_int_equal(replied_count(), 1);
    finish_pending(90, RD_OK, 2, NULL);
    finish_pending(90, RD_OK, 3, NULL);
    wait_idle();
    assert_int_equal(replied_count(), 3);

    /* send_done() before send() returns, many messages of two chats */
    reset_log();
    pthread_mutex_lock(&mu);
    nevs = 0;
    pthread_mutex_unlock(&mu);
    pend_race = 1;
    for (int i = 0; i < 12; i++)
        submit(210 + i, 91 + i % 2, i % 2 ? "b" : "a", 0, 0);
    wait_idle();
    assert_int_equal(replied_count(), 12);
    /* each chat's sends in order */
    for (const char *p = log_, *prev[2] = {0}; (p = strstr(p, "send:")); p++) {
        int k = p[5] == '9' && p[6] == '2';
        assert_true(!prev[k] || prev[k] < p);
        prev[k] = p;
    }
    pend_race = 0;

    /* A 1.6 plugin with the same bit: the chat waits for send_done(). The
     * workers are out of send() first (its send_done() came before it
     * returned): they read tr->desc there. */
    int64_t end = mono_ms() + 5000;
    for (bool idle = false; !idle && mono_ms() < end; sleep_ms(idle ? 0 : 1)) {
        pthread_mutex_lock(&R.mu);
        idle = R.idle_threads == R.nthreads;
        pthread_mutex_unlock(&R.mu);
    }
    reset_log();
    tr->desc = &d_old;
    submit(260, 93, "one", 0, 0);
    submit(261, 93, "two", 0, 0);
    wait_pending(1);
    sleep_ms(100);
    assert_int_equal(pending_now(), 1);
    assert_null(strstr(log_, "handle:two|"));
    finish_pending(93, RD_OK, 4, NULL);
    wait_pending(1);
    finish_pending(93, RD_OK, 5, NULL);
    wait_idle();
    tr->desc = NULL;
    pend_mode = 0;
}

/* The message may end (send_done) before its be-done thread is out of
 * complete(): wait for that before changing what the thread reads. */
static void be_threads_gone(void) {
    int64_t end = mono_ms() + 5000;
    while (atomic_load(&be_threads) > 0 && mono_ms() < end)
        sleep_ms(1);
    assert_int_equal(atomic_load(&be_threads), 0);
}

/* ABI 1.5: a transport with RD_PF_NOWAIT_SEND gets an answer that
 * completes later on the thread that completes it, asked not to wait; what
 * would wait is refused there and sent from a worker, once. Chat order,
 * typing and events are those of a worker's send. A
 * descriptor of 1.4, or a serial transport, is never asked. */
static void nowait_sends(void **state) {
    (void)state;
    static const rd_plugin d_nowait = {.abi_major = RD_ABI_MAJOR,
                                       .abi_minor = RD_ABI_MINOR,
                                       .size = sizeof d_nowait,
                                       .kind = RD_KIND_TRANSPORT,
                                       .name = "t",
                                       .flags = RD_PF_NOWAIT_SEND};
    rd_plugin d_old = d_nowait, d_serial = d_nowait;
    d_old.abi_minor = 4;
    d_serial.flags |= RD_PF_SERIAL;
    reset_log();
    backend_ms = 0;
    be_pending = nowait_mode = 1;
    tr->desc = &d_nowait;
    replied_count(); /* the events of earlier tests reached the sink */
    pthread_mutex_lock(&mu);
    nevs = 0;
    pthread_mutex_unlock(&mu);
    int typing = atomic_load(&activity_calls);
    submit(90, 80, "plain", 0, 0);
    submit(91, 80, "[wait] files", 0, 0);
    submit(92, 80, "fail", 0, 0);
    wait_idle();
    be_threads_gone();
    assert_string_equal(log_, "handle:plain|send:80:echo: plain:nowait:be-done|"
                              "handle:[wait] files|send:80:echo: [wait] files:nowait:be-done|"
                              "send:80:echo: [wait] files:wait:rd-worker|"
                              "handle:fail|send:80:failed:nowait:be-done|");
    pthread_mutex_lock(&mu);
    assert_int_equal(last_flags, RD_OUT_NOTICE | RD_OUT_NOWAIT);
    pthread_mutex_unlock(&mu);
    assert_int_equal(atomic_load(&activity_calls) - typing, 6); /* shown and ended, each */
    assert_int_equal(replied_count(), 3);
    seen_ev e = replied_with("failed");
    assert_string_equal(e.status, "failed");
    pthread_mutex_lock(&R.mu);
    size_t inflight = R.inflight, waiting = R.waiting;
    pthread_mutex_unlock(&R.mu);
    assert_int_equal(inflight, 0);
    assert_int_equal(waiting, 0);

    /* Not asked: a plugin built for 1.4, a serial transport, a stopping router. */
    const rd_plugin *not_asked[] = {&d_old, &d_serial, &d_nowait};
    for (int i = 0; i < 3; i++) {
        reset_log();
        tr->desc = not_asked[i];
        submit(93 + i, 81, "again", 0, 0);
        /* a stopping router takes no new message: this one is already in */
        if (i == 2) atomic_store(&R.draining, true);
        wait_idle();
        be_threads_gone();
        assert_string_equal(log_, "handle:again|send:81:echo: again:wait:rd-worker|");
    }
    atomic_store(&R.draining, false);
    tr->desc = NULL;
    be_pending = nowait_mode = 0;
}

static void intercept_takes(void **state) {
    (void)state;
    reset_log();
    backend_ms = 0;
    int typing = atomic_load(&activity_calls);
    submit(3, 18, "the answer", 77, 0);
    wait_idle();
    assert_string_equal(log_, "");
    assert_int_equal(atomic_load(&activity_calls), typing); /* no typing shown */
    pthread_mutex_lock(&R.mu);
    assert_int_equal(last_ack, 3);
    pthread_mutex_unlock(&R.mu);
    assert_int_equal(last_reply_to, 77);
    submit(4, 18, "old transport", 77, (uint32_t)offsetof(rd_inbound, reply_to));
    wait_idle();
    assert_string_equal(log_, "handle:old transport|send:18:echo: old transport|");
    assert_int_equal(last_reply_to, 0);
    assert_int_equal(atomic_load(&activity_calls), typing + 2);
}

/* The event of a taken answer carries the task id and caller intercept()
 * named with answered(); answered() anywhere else changes nothing. */
static void answered_names_task_and_caller(void **state) {
    (void)state;
    reset_log();
    backend_ms = 0;
    sinks_flush(5000);
    pthread_mutex_lock(&mu);
    nevs = 0;
    pthread_mutex_unlock(&mu);
    submit(11, 20, "the answer", 77, 0);
    wait_idle();
    seen_ev e = replied_with("answered");
    assert_string_equal(e.corr, "task-77");
    assert_string_equal(e.caller, "planner");
    assert_string_equal(e.backend, "inbound.people");
    /* named but not taken: the message routes on as its own */
    submit(12, 20, "not an answer", 78, 0);
    wait_idle();
    e = replied_with("ok");
    assert_int_equal(strlen(e.corr), 32);
    assert_false(e.has_caller);
    assert_string_equal(e.backend, "b");
    /* from a backend on the message's worker, or from the test thread */
    host_api.answered(ib, "task-outside", "mallory");
    submit(13, 20, "sneaky", 0, 0);
    wait_idle();
    assert_string_equal(log_, "handle:not an answer|send:20:echo: not an answer|"
                              "handle:sneaky|send:20:echo: sneaky|");
    e = replied_with("ok");
    assert_int_equal(strlen(e.corr), 32);
    assert_false(e.has_caller);
    /* from another instance than the one intercepting */
    submit(14, 20, "taken", 79, 0);
    wait_idle();
    e = replied_with("answered");
    assert_int_equal(strlen(e.corr), 32);
    assert_false(e.has_caller);
}

/* Until the inbound instances started, admitted messages are held;
 * deliveries (from an inbound start()) go out meanwhile. */
static void held_until_inbound_started(void **state) {
    (void)state;
    router_stop_workers(mono_ms() + 5000);
    router_fini();
    R.shutdown = false;
    char e[64];
    router_init(e, sizeof e);
    reset_log();
    submit(5, 19, "early", 0, 0);
    sleep_ms(100);
    assert_string_equal(log_, "");
    int64_t sent = -1;
    rd_error err = {0};
    assert_int_equal(deliver("t", 19, "Question again?", 15, 0, &sent, &err), RD_OK);
    assert_true(sent > 0);
    assert_string_equal(log_, "send:19:Question again?|");
    assert_false(router_wait_idle(mono_ms() + 50)); /* "early" still waits */
    router_open_inbound();
    wait_idle();
    assert_string_equal(log_, "send:19:Question again?|handle:early|send:19:echo: early|");
    assert_int_equal(last_reply_to, 0);
}

/* A start that failed before the inbound instances ran: the held messages
 * are neither routed nor acknowledged (the transport offers them again). */
static void held_dropped_after_failed_start(void **state) {
    (void)state;
    router_stop_workers(mono_ms() + 5000);
    router_fini();
    R.shutdown = false;
    char e[64];
    router_init(e, sizeof e);
    reset_log();
    int64_t acked = last_ack;
    submit(6, 19, "never", 0, 0);
    router_drop_parked();
    assert_true(router_wait_idle(mono_ms() + 1000));
    sleep_ms(50);
    assert_string_equal(log_, "");
    assert_int_equal(last_ack, acked);
    router_open_inbound();
}

static void abi_layout(void **state) {
    (void)state;
    assert_int_equal(RD_ABI_MINOR, 7);
    assert_int_equal(host_api.abi_minor, RD_ABI_MINOR);
    /* 1.7 appends no member: a flag of rd_plugin */
    assert_int_equal(RD_PF_ORDERED_SEND, 0x8);
    /* 1.6 appends two host calls after the last 1.4 one */
    assert_true(offsetof(rd_host, kv_txn_lazy) == offsetof(rd_host, send_done) + 8);
    assert_true(offsetof(rd_host, kv_sync) == offsetof(rd_host, kv_txn_lazy) + 8);
    assert_int_equal(sizeof(rd_host), offsetof(rd_host, kv_sync) + 8);
    assert_true(RD_HAS(&host_api, kv_sync) && host_api.kv_txn_lazy && host_api.kv_sync);
    /* 1.5 appends no member: a flag of rd_outbound, rd_plugin and rd_status each */
    assert_int_equal(RD_OUT_NOWAIT, 0x8);
    assert_int_equal(RD_PF_NOWAIT_SEND, 0x4);
    assert_int_equal(RD_E_WOULDBLOCK, -9);
    assert_true(RD_HAS(&host_api, deliver));
    assert_non_null(host_api.deliver);
    /* Appended after the last 1.2 member of each struct. */
    assert_true(offsetof(rd_inbound, reply_to) >= offsetof(rd_inbound, nattachments) + 8);
    assert_true(offsetof(rd_request, reply_to) >= offsetof(rd_request, nattachments) + 8);
    assert_true(offsetof(rd_outbound, sent_id) >= offsetof(rd_outbound, choices) + 8);
    assert_true(offsetof(rd_host, deliver) >= offsetof(rd_host, reply_choices) + 8);
    assert_true(offsetof(rd_host, answered) == offsetof(rd_host, deliver) + 8);
    assert_true(offsetof(rd_outbound, caller) == offsetof(rd_outbound, sent_id) + 8);
    assert_true(offsetof(rd_event, caller) >= offsetof(rd_event, backend_span_id) + 8);
    assert_true(RD_HAS(&host_api, answered) && host_api.answered);
    assert_true(offsetof(rd_ops, intercept) >= offsetof(rd_ops, flush) + 8);
    assert_int_equal(sizeof(rd_inbound), offsetof(rd_inbound, reply_to) + 8);
    assert_int_equal(sizeof(rd_request), offsetof(rd_request, reply_to) + 8);
    /* 1.4: a send that finishes later */
    assert_true(offsetof(rd_outbound, done) == offsetof(rd_outbound, caller) + 8);
    assert_true(offsetof(rd_host, send_done) == offsetof(rd_host, answered) + 8);
    assert_true(RD_HAS(&host_api, send_done) && host_api.send_done);
    assert_int_equal(sizeof(rd_outbound), offsetof(rd_outbound, done) + 8);
    assert_int_equal(sizeof(rd_event), offsetof(rd_event, caller) + 8);
    assert_int_equal(sizeof(rd_ops), offsetof(rd_ops, intercept) + 8);
    assert_int_equal(RD_KIND_INBOUND, 4);
    assert_string_equal(kind_name(RD_KIND_INBOUND), "inbound");
    /* The loader's view of inbound descriptors. */
    char tmp[256];
    rd_plugin d = {.abi_major = RD_ABI_MAJOR,
                   .abi_minor = RD_ABI_MINOR,
                   .size = sizeof d,
                   .option_size = sizeof(rd_option),
                   .kind = RD_KIND_INBOUND,
                   .name = "x",
                   .ops = &in_ops};
    assert_string_equal(plugin_check_desc(&d, RD_KIND_INBOUND, tmp, sizeof tmp),
                        "ops.create is missing");
    rd_ops ok = in_ops;
    ok.create = x_create;
    d.ops = &ok;
    assert_null(plugin_check_desc(&d, RD_KIND_INBOUND, tmp, sizeof tmp));
    assert_non_null(strstr(plugin_check_desc(&d, RD_KIND_TRANSPORT, tmp, sizeof tmp),
                           "is an inbound plugin, not a transport"));
    ok.size = (uint32_t)offsetof(rd_ops, intercept); /* a 1.2 table: intercept unseen */
    assert_string_equal(plugin_check_desc(&d, RD_KIND_INBOUND, tmp, sizeof tmp),
                        "inbound without ops.intercept");
    ok.size = sizeof ok;
    ok.intercept = NULL;
    assert_string_equal(plugin_check_desc(&d, RD_KIND_INBOUND, tmp, sizeof tmp),
                        "inbound without ops.intercept");
    d.kind = (rd_kind)5;
    assert_string_equal(plugin_check_desc(&d, 0, tmp, sizeof tmp), "unknown plugin kind");
}

/* The stall rule's view of a worker: one waiting for a mutex is told
 * apart from one blocked in a call, a condition or a timer. */
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER, cmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ccv = PTHREAD_COND_INITIALIZER;
static bool go;
static atomic_int tids[4];

static void *in_lock(void *arg) {
    (void)arg;
    tids[0] = (int)gettid();
    pthread_mutex_lock(&held);
    pthread_mutex_unlock(&held);
    return NULL;
}

static void *in_cond(void *arg) {
    tids[(intptr_t)arg] = (int)gettid();
    pthread_mutex_lock(&cmu);
    while (!go) {
        if ((intptr_t)arg == 1) {
            pthread_cond_wait(&ccv, &cmu);
        } else {
            struct timespec dl = deadline_in(CLOCK_REALTIME, 10000000);
            pthread_cond_timedwait(&ccv, &cmu, &dl);
        }
    }
    pthread_mutex_unlock(&cmu);
    return NULL;
}

static void *in_poll(void *arg) {
    (void)arg;
    tids[3] = (int)gettid();
    poll(NULL, 0, 1000);
    return NULL;
}

/* The state of thread i once it shows want, or the last one seen within
 * a second (a thread on its way to the wait may show another first). */
static thread_state settled(int i, thread_state want) {
    thread_state st = THREAD_RUNNING;
    for (int k = 0; k < 200 && (!tids[i] || (st = thread_state_of(tids[i])) != want); k++)
        usleep(5000);
    return st;
}

static void thread_states(void **state) {
    (void)state;
    if (access("/proc/self/syscall", R_OK) != 0) skip(); /* procfs without it: all asleep */
    assert_int_equal(thread_state_of((int)gettid()), THREAD_RUNNING);
    assert_int_equal(thread_state_of(0), THREAD_ASLEEP); /* procfs cannot tell */
    pthread_mutex_lock(&held);
    pthread_t th[4];
    pthread_create(&th[0], NULL, in_lock, NULL);
    pthread_create(&th[1], NULL, in_cond, (void *)(intptr_t)1);
    pthread_create(&th[2], NULL, in_cond, (void *)(intptr_t)2);
    pthread_create(&th[3], NULL, in_poll, NULL);
    thread_state lock = settled(0, THREAD_LOCK_WAIT), cond = settled(1, THREAD_ASLEEP),
                 timed = settled(2, THREAD_ASLEEP), pl = settled(3, THREAD_ASLEEP);
    pthread_mutex_unlock(&held);
    pthread_mutex_lock(&cmu);
    go = true;
    pthread_cond_broadcast(&ccv);
    pthread_mutex_unlock(&cmu);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(lock, THREAD_LOCK_WAIT);
    assert_int_equal(cond, THREAD_ASLEEP);
    assert_int_equal(timed, THREAD_ASLEEP);
    assert_int_equal(pl, THREAD_ASLEEP);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(deliver_in_chat_order),
        cmocka_unit_test(deliver_refused),
        cmocka_unit_test(deliver_waiter_gone),
        cmocka_unit_test(intercept_takes),
        cmocka_unit_test(held_until_inbound_started),
        cmocka_unit_test(held_dropped_after_failed_start),
        cmocka_unit_test(answered_names_task_and_caller), /* update ids above the others */
        cmocka_unit_test(pending_send_holds_chat),
        cmocka_unit_test(ordered_send_frees_chat),
        cmocka_unit_test(nowait_sends),
        cmocka_unit_test(abi_layout),
        cmocka_unit_test(thread_states),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
