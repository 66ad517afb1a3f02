/*
 * In-process tests of max_unrecorded_replies against the fake Bot API
 * server: however slow or broken the state store, replies sent while their
 * answered mark (r/<seq>) is not yet stored never exceed the key; senders
 * over it wait for the next write and go on when it commits; stop ends a
 * wait while the store is down; quiesce does not (the intake still writes).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_telegram.h"
#include "fake_host.h"

#define TOKEN "123456:AAtestSecretPart-xyz"
#define SECRET "AAtestSecretPart-xyz"
#define GAUGE "routerd_telegram_unrecorded_replies"
#define WAITS "routerd_telegram_reply_record_waits_total"
#define MAX_REPLIES 64

static ftg *F;

static int setup(void **state) {
    (void)state;
    F = th_fake_api(TOKEN, "5");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    th_fake_api_stop(F, NULL, SECRET);
    F = NULL;
    return 0;
}

/* n updates from chats 500.., submitted; their (chat, message) in m. */
static void *launch_with_updates(const char *max, size_t n, th_msg **m) {
    th_cfg("max_unrecorded_replies", max);
    void *self = th_launch_ok();
    for (size_t i = 0; i < n; i++)
        ftg_add_text(F, 500 + (int64_t)i, "question");
    assert_int_equal(th_wait_submitted(n, 5000), n);
    assert_int_equal(th_msgs(m, 0), n);
    return self;
}

/* One reply per thread, as the router's workers send them. */
typedef struct sender {
    pthread_t th;
    void *self;
    int64_t chat, reply_to;
    rd_status st;
    rd_error err;
    atomic_int done;
} sender;

static void *send_one(void *arg) {
    sender *s = arg;
    rd_outbound out = {.size = sizeof out,
                       .chat_id = s->chat,
                       .reply_to = s->reply_to,
                       .text = "answer",
                       .text_len = 6,
                       .correlation_id = "cid"};
    s->st = th_ops()->send(s->self, &out, &s->err);
    atomic_store(&s->done, 1);
    return NULL;
}

static void start_senders(sender *s, size_t n, void *self, const th_msg *m) {
    for (size_t i = 0; i < n; i++) {
        s[i] = (sender){.self = self, .chat = m[i].chat_id, .reply_to = m[i].message_id};
        atomic_init(&s[i].done, 0);
        assert_int_equal(pthread_create(&s[i].th, NULL, send_one, &s[i]), 0);
    }
}

static size_t senders_done(sender *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += (size_t)atomic_load(&s[i].done);
    return k;
}

static void join_senders(sender *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        pthread_join(s[i].th, NULL);
}

/* Watches, all along, replies that reached Telegram against marks the
 * store holds (nothing is acknowledged, so the watermark covers none).
 * Sent is read first: a mark stored in between only lowers the result. */
typedef struct sampler {
    pthread_t th;
    atomic_int stop;
    long max_gap;
    double max_gauge;
    size_t samples;
} sampler;

static void *sample(void *arg) {
    sampler *p = arg;
    while (!atomic_load(&p->stop)) {
        long sent = (long)ftg_count(F, "sendMessage", 0);
        long stored = (long)th_kv_count("r/");
        double g = th_metric(GAUGE, NULL, NULL);
        if (sent - stored > p->max_gap) p->max_gap = sent - stored;
        if (g > p->max_gauge) p->max_gauge = g;
        p->samples++;
        th_sleep_ms(1);
    }
    return NULL;
}

static void sampler_start(sampler *p) {
    memset(p, 0, sizeof *p);
    atomic_init(&p->stop, 0);
    assert_int_equal(pthread_create(&p->th, NULL, sample, p), 0);
}

static void sampler_stop(sampler *p) {
    atomic_store(&p->stop, 1);
    pthread_join(p->th, NULL);
}

static int wait_for(size_t (*what)(void), size_t want, int timeout_ms) {
    long long end = th_now_ms() + timeout_ms;
    while (what() < want && th_now_ms() < end)
        th_sleep_ms(5);
    return what() >= want;
}

static size_t sent_now(void) {
    return ftg_count(F, "sendMessage", 0);
}

static size_t marks_now(void) {
    return th_kv_count("r/");
}

static size_t waits_now(void) {
    return (size_t)th_metric(WAITS, NULL, NULL);
}

/* The store refuses every write: exactly max replies go out, the others
 * wait (counted once each); when the store is back they all go out and
 * the gauge returns to 0. */
static void test_store_down_holds_senders(void **state) {
    (void)state;
    enum { N = 16, MAX = 4 };
    th_msg *m;
    void *self = launch_with_updates("4", N, &m);
    sampler p;
    sampler_start(&p);
    th_kv_fail(1);
    sender s[N];
    start_senders(s, N, self, m);
    assert_true(wait_for(sent_now, MAX, 5000));
    assert_true(wait_for(waits_now, N - MAX, 5000));
    /* Long enough for several failed writes and their retries. */
    th_sleep_ms(400);
    assert_int_equal(sent_now(), MAX);
    assert_int_equal(senders_done(s, N), MAX);
    assert_int_equal((int)th_metric(GAUGE, NULL, NULL), MAX);
    assert_int_equal(waits_now(), N - MAX); /* each waiting reply counted once */
    assert_true(th_log_has("cannot record the handled watermark"));

    th_kv_fail(0);
    join_senders(s, N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(s[i].st, RD_OK);
    assert_int_equal(sent_now(), N);
    assert_true(wait_for(marks_now, N, 5000));
    long long end = th_now_ms() + 2000;
    while (th_metric(GAUGE, NULL, NULL) != 0 && th_now_ms() < end)
        th_sleep_ms(5);
    assert_int_equal((int)th_metric(GAUGE, NULL, NULL), 0);
    sampler_stop(&p);
    assert_true(p.samples > 10);
    assert_true(p.max_gap <= MAX);
    assert_true(p.max_gauge <= MAX);
    th_msgs_free(m, N);
    th_shutdown(self);
}

/* Every write takes 60 ms (a slow disk): marks taken by a write in
 * progress still count, so at no time are more than max replies sent
 * and unrecorded; senders wait and go on as writes land. */
static void test_slow_store_bounds_by_count(void **state) {
    (void)state;
    enum { N = MAX_REPLIES, MAX = 8 };
    th_msg *m;
    void *self = launch_with_updates("8", N, &m);
    sampler p;
    sampler_start(&p);
    /* All senders queue up first (the store refuses), then it turns slow. */
    th_kv_fail(1);
    sender s[N];
    start_senders(s, N, self, m);
    assert_true(wait_for(waits_now, N - MAX, 5000));
    assert_int_equal(sent_now(), MAX);
    rdpt_kv_delay(60);
    long long t0 = th_now_ms();
    th_kv_fail(0);
    join_senders(s, N);
    long long took = th_now_ms() - t0;
    for (size_t i = 0; i < N; i++)
        assert_int_equal(s[i].st, RD_OK);
    assert_int_equal(sent_now(), N);
    assert_true(wait_for(marks_now, N, 10000));
    sampler_stop(&p);
    rdpt_kv_delay(0);
    fprintf(stderr, "slow store: %d replies in %lld ms, largest gap %ld, %d waits\n", N, took,
            p.max_gap, (int)th_metric(WAITS, NULL, NULL));
    assert_true(p.max_gap <= MAX);
    assert_true(p.max_gauge <= MAX);
    assert_int_equal(waits_now(), N - MAX);
    /* The 56 waiting went 8 at a time: at least 7 writes of 60 ms. */
    assert_true(took >= (N - MAX) / MAX * 60);
    th_msgs_free(m, N);
    th_shutdown(self);
}

/* Replies that answer no journaled update (no quote, or a message the
 * transport did not submit) have no mark to wait for. */
static void test_untracked_replies_never_wait(void **state) {
    (void)state;
    th_msg *m;
    void *self = launch_with_updates("1", 1, &m);
    th_kv_fail(1);
    for (int i = 0; i < 5; i++) {
        rd_outbound out = {.size = sizeof out,
                           .chat_id = 77,
                           .reply_to = i == 0 ? 0 : 9000 + i,
                           .text = "notice",
                           .text_len = 6};
        rd_error err = {0};
        assert_int_equal(th_ops()->send(self, &out, &err), RD_OK);
    }
    assert_int_equal(sent_now(), 5);
    assert_int_equal((int)th_metric(GAUGE, NULL, NULL), 0);
    assert_int_equal((int)th_metric(WAITS, NULL, NULL), 0);
    th_kv_fail(0);
    th_msgs_free(m, 1);
    th_shutdown(self);
}

/* N senders with max_unrecorded_replies = 2 while the store refuses
 * writes: two replies go out, then quiesce; settle_ms later the other
 * senders still wait. */
static void *quiesced_with_waiters(sender *s, size_t n, th_msg **m, int settle_ms) {
    void *self = launch_with_updates("2", n, m);
    th_kv_fail(1);
    start_senders(s, n, self, *m);
    assert_true(wait_for(sent_now, 2, 5000));
    th_ops()->quiesce(self);
    th_sleep_ms(settle_ms);
    assert_int_equal(senders_done(s, n), 2);
    return self;
}

/* While draining (quiesce) the intake still writes: a sender waiting for
 * the store goes on as soon as it is back, without a stop. */
static void test_quiesce_keeps_recording(void **state) {
    (void)state;
    enum { N = 6, MAX = 2 };
    th_msg *m;
    sender s[N];
    void *self = quiesced_with_waiters(s, N, &m, 300);
    th_kv_fail(0);
    long long end = th_now_ms() + 5000;
    while (senders_done(s, N) < N && th_now_ms() < end)
        th_sleep_ms(5);
    assert_int_equal(senders_done(s, N), N);
    join_senders(s, N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(s[i].st, RD_OK);
    assert_int_equal(sent_now(), N);
    th_msgs_free(m, N);
    th_shutdown(self);
}

/* The store stays down: quiesce leaves the senders waiting (back-pressure),
 * stop ends the wait at once. Those replies are not sent: their updates
 * are not acknowledged and are answered after the restart. */
static void test_stop_ends_wait_store_down(void **state) {
    (void)state;
    enum { N = 6, MAX = 2 };
    th_msg *m;
    sender s[N];
    void *self = quiesced_with_waiters(s, N, &m, 200);
    long long t0 = th_now_ms();
    th_ops()->stop(self);
    join_senders(s, N);
    assert_true(th_now_ms() - t0 < 3000);
    size_t retry = 0;
    for (size_t i = 0; i < N; i++) {
        if (s[i].st == RD_OK) continue;
        assert_int_equal(s[i].st, RD_E_RETRY);
        assert_non_null(strstr(s[i].err.msg, "had not recorded earlier replies"));
        retry++;
    }
    assert_int_equal(retry, N - MAX);
    assert_int_equal(sent_now(), MAX);
    th_msgs_free(m, N);
    th_kv_fail(0);
    th_shutdown(self);
}

static void refused(const char *val, const char *want) {
    rd_status st;
    rd_error err = {0};
    th_cfg("max_unrecorded_replies", val);
    void *self = th_launch(&st, &err);
    if (self) th_shutdown(self);
    assert_null(self);
    assert_int_equal(st, RD_E_CONFIG);
    if (!strstr(err.msg, want)) fail_msg("%s: '%s' lacks '%s'", val, err.msg, want);
    char msg[256];
    assert_int_equal(rdpt_check(msg, sizeof msg), -1);
    if (!strstr(msg, want)) fail_msg("check %s: '%s' lacks '%s'", val, msg, want);
}

/* A router that does not wait for each reply (ABI 1.7, the transport
 * keeps each chat's order) hands over several replies per chat at once,
 * with few slots: a reply waiting behind its chat's earlier one must not
 * hold a slot that one needs, or both wait forever. Every reply ends, in
 * each chat's order. */
static void test_ordered_replies_share_slots(void **state) {
    (void)state;
    enum { CHATS = 8, PER = 6, N = CHATS * PER };
    th_cfg("max_unrecorded_replies", "2");
    void *self = th_launch_ok();
    for (int k = 0; k < PER; k++)
        for (int c = 0; c < CHATS; c++) {
            char text[16];
            snprintf(text, sizeof text, "q%d", k);
            ftg_add_text(F, 600 + c, text);
        }
    assert_int_equal(th_wait_submitted(N, 5000), N);
    th_msg *m;
    assert_int_equal(th_msgs(&m, 0), N);
    rd_send *sd[N];
    for (size_t i = 0; i < N; i++) {
        rd_outbound out = {.size = sizeof out,
                           .chat_id = m[i].chat_id,
                           .reply_to = m[i].message_id,
                           .text = m[i].text};
        rd_status st;
        rd_error e = {0};
        sd[i] = rdpt_send_start(self, &out, &st, &e);
        assert_int_equal(st, RD_PENDING);
        if (i % 7 == 0) th_sleep_ms(2); /* let marks be stored meanwhile */
    }
    /* all of them out (a wait for a slot that never frees would stop short) */
    assert_int_equal(ftg_wait_count(F, "sendMessage", N, 20000), N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(rdpt_send_wait(sd[i], NULL, NULL), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, N);
    int next[CHATS] = {0};
    for (size_t i = 0; i < n; i++) {
        int c = (int)(r[i].chat_id - 600);
        assert_true(c >= 0 && c < CHATS);
        char want[16];
        snprintf(want, sizeof want, "q%d", next[c]++);
        assert_string_equal(r[i].text, want);
    }
    ftg_recs_free(r, n);
    th_msgs_free(m, N);
    th_shutdown(self);
}

static void test_config(void **state) {
    (void)state;
    refused("0", "max_unrecorded_replies: 0 is out of range [1, 100000]");
    refused("-5", "max_unrecorded_replies: -5 is out of range [1, 100000]");
    refused("100001", "max_unrecorded_replies: 100001 is out of range [1, 100000]");
    refused("many", "max_unrecorded_replies: expected an integer");
    refused("2.5", "max_unrecorded_replies: expected an integer");
    const char *ok[] = {"1", "100000", NULL};
    for (size_t i = 0; ok[i]; i++) {
        th_cfg("max_unrecorded_replies", ok[i]);
        void *self = th_launch_ok();
        th_shutdown(self);
    }
    /* Unset: 1024. */
    th_cfg("max_unrecorded_replies", NULL);
    void *self = th_launch_ok();
    const rd_plugin *pl = th_plugin();
    const char *def = NULL;
    for (const rd_option *o = pl->options; o && o->key; o++)
        if (!strcmp(o->key, "max_unrecorded_replies")) def = o->def;
    assert_non_null(def);
    assert_string_equal(def, "1024");
    th_shutdown(self);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_down_holds_senders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_store_bounds_by_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_untracked_replies_never_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiesce_keeps_recording, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_ends_wait_store_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ordered_replies_share_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
