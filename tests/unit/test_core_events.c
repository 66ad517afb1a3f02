/* Event fan-out to sinks (events.c): every event reaches the sink once and
 * in order, a flush comes after what was queued before it, a stop delivers
 * what is queued, and a trickle of events is delivered in batches (the
 * dispatcher wakes about once per batch pause, not once per event). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "router.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t seen, last_id, flushed_after;
static bool in_order;
static pid_t sink_tid;

static void on_event(void *self, const rd_event *ev) {
    (void)self;
    pthread_mutex_lock(&mu);
    if (ev->type == RD_EV_RECEIVED) {
        if (ev->update_id != last_id + 1) in_order = false;
        last_id = ev->update_id;
        seen++;
    }
    sink_tid = (pid_t)syscall(SYS_gettid);
    pthread_mutex_unlock(&mu);
}

static rd_status on_flush(void *self, rd_error *err) {
    (void)self, (void)err;
    pthread_mutex_lock(&mu);
    flushed_after = seen;
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

static const rd_ops ops = {.size = sizeof ops, .event = on_event, .flush = on_flush};
static const rd_plugin desc = {.kind = RD_KIND_SINK, .name = "t"};
static rd_ctx ctx = {
    .kind = RD_KIND_SINK, .name = "sink.t", .inst = "t", .desc = &desc, .ops = &ops};
static rd_ctx *ctxs[] = {&ctx};

static int setup(void **state) {
    (void)state;
    R.ctx = ctxs;
    R.nctx = 1;
    seen = last_id = 0;
    flushed_after = -1;
    in_order = true;
    sinks_start();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    sinks_stop();
    R.ctx = NULL;
    R.nctx = 0;
    return 0;
}

static void emit(int64_t id) {
    rd_event ev = {.size = sizeof ev,
                   .type = RD_EV_RECEIVED,
                   .level = RD_LOG_DEBUG,
                   .source = "core",
                   .status = "received",
                   .update_id = id};
    emit_event(&ev);
}

static int64_t seen_now(void) {
    pthread_mutex_lock(&mu);
    int64_t n = seen;
    pthread_mutex_unlock(&mu);
    return n;
}

static void all_delivered_in_order_and_stop_drains(void **state) {
    (void)state;
    for (int64_t i = 1; i <= 3000; i++) {
        emit(i);
        if (i % 500 == 0) usleep(2000); /* some pauses between bursts */
    }
    sinks_stop(); /* delivers what is still queued */
    assert_int_equal(seen, 3000);
    assert_true(in_order);
    sinks_start(); /* for teardown */
}

static void flush_follows_queued_events(void **state) {
    (void)state;
    for (int64_t i = 1; i <= 20; i++)
        emit(i);
    int64_t t0 = mono_ms();
    sinks_flush(5000);
    /* The flush waited for the events before it, not for a timeout. */
    assert_true(mono_ms() - t0 < 4000);
    pthread_mutex_lock(&mu);
    assert_int_equal(flushed_after, 20);
    pthread_mutex_unlock(&mu);
    emit(21);
    sinks_flush(5000);
    assert_int_equal(seen_now(), 21);
}

static long task_vcsw(pid_t tid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1) break;
    fclose(f);
    return v;
}

/* One event per millisecond: the dispatcher sleeps between batches instead
 * of waking for each event. Bounded by elapsed time, so a slow machine
 * (longer sleeps) does not fail it. */
static void trickle_is_batched(void **state) {
    (void)state;
    emit(1);
    sinks_flush(5000);
    pid_t tid = sink_tid;
    long before = task_vcsw(tid);
    assert_true(before >= 0);
    int64_t t0 = mono_ms();
    enum { N = 300 };
    for (int64_t i = 2; i <= N + 1; i++) {
        emit(i);
        usleep(1000);
    }
    int64_t ms = mono_ms() - t0;
    long woke = task_vcsw(tid) - before;
    sinks_flush(5000);
    assert_int_equal(seen_now(), N + 1);
    assert_true(in_order);
    print_message("%d events in %lld ms: %ld dispatcher wake-ups\n", N, (long long)ms, woke);
    /* About one wake-up per 10 ms pause, plus one when a pause finds the
     * queue empty and the dispatcher parks; room for lock contention. */
    assert_true(woke <= 3 * ms / 10 + 10);
    assert_true(woke < N);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(all_delivered_in_order_and_stop_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(flush_follows_queued_events, setup, teardown),
        cmocka_unit_test_setup_teardown(trickle_is_batched, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
