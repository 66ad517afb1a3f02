/*
 * High availability: two or three routerd processes share one real
 * PostgreSQL (started by tests/support/pg.sh) and poll one bot on the fake
 * Bot API, which counts any long poll that arrives while another client
 * still waits in one. Exactly one replica polls; a kill -9 of the leader
 * hands over within lease_s + 2 s; a SIGTERM hands over in under a second
 * with no duplicate; a PostgreSQL restart mid-burst loses nothing and both
 * replicas come back by themselves. Webhook mode, where every replica
 * takes updates, is in test_ha_webhook.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_telegram.h"
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "515151:AAhaSecret-part_y"
#define CHATS 20
#define PER_CHAT 30
#define TOTAL (CHATS * PER_CHAT)
#define LEASE_S 2
#define QUEUE 64

/* One fixture per replica; the first also runs the fake Bot API. */
static rt_fix *reps[3];
static ftg *F;
static int two_personas;
static char pg_env[1024];

static void pg_cmd(const char *what) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s '%s' >/dev/null", getenv("ROUTERD_TEST_PG_SH"), what,
             getenv("ROUTERD_TEST_PG_DIR"));
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state) {
    (void)state;
    /* Every test starts from an empty database. */
    if (rt_pg_reset(pg_env, sizeof pg_env)) return -1;
    two_personas = 0;
    for (int i = 0; i < 3; i++)
        if (!(reps[i] = rt_fix_new(i ? NULL : TOKEN))) return -1;
    F = reps[0]->tg;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 2; i >= 0; i--) {
        rt_fix_free(reps[i]);
        reps[i] = NULL;
    }
    return 0;
}

static const char *env[] = {"TG_TOKEN=" TOKEN, pg_env, NULL};

static void start_rep(int i) {
    rt_fix *r = reps[i];
    if (!r->manifest)
        rt_fix_manifest(r,
                        "store = postgresql\nstore_url = ${PG_URL}\nlease_s = %d\n"
                        "queue_depth = %d\nrate_limit_per_minute = 0\ndrain_timeout_s = 20\n"
                        "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                        "throttle = off\ntimeout = 5\ntyping = false\nretry_base_ms = 50\n"
                        "retry_max_ms = 500\n"
                        "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\nlatency_ms = 5\n"
                        "[sink.prom]\nplugin = prometheus\nprocess_metrics = false\n"
                        "[persona.p]\nbackend = mock\nchats = *\n%s",
                        LEASE_S, QUEUE, ftg_base(F),
                        two_personas ? "selectable = true\n[backend.bee]\nplugin = mock\n"
                                       "prefix = \"bee: \"\n[persona.pb]\nbackend = bee\n"
                                       "selectable = true\n"
                                     : "");
    assert_non_null(rt_fix_start(r, env, 0));
}

/* 1 active, 0 standby (both ready), -1 not ready or not answering. */
static int role(int i) {
    if (!reps[i]->p) return -1;
    char *body = NULL;
    long st = rt_http("GET", rt_fix_url(reps[i], "/healthz"), NULL, NULL, &body);
    int r = -1;
    if (st == 200 && body && strstr(body, "\"role\":\"active\"")) r = 1;
    if (st == 200 && body && strstr(body, "\"role\":\"standby\"")) r = 0;
    free(body);
    return r;
}

/* routerd_leader{transport="tg"} as the prometheus sink shows it. */
static int leader_gauge(int i) {
    char *body = NULL;
    int v = -1;
    if (rt_http("GET", rt_fix_url(reps[i], "/metrics"), NULL, NULL, &body) == 200 && body) {
        char *p = strstr(body, "routerd_leader{transport=\"tg\"} ");
        if (p) v = atoi(p + strlen("routerd_leader{transport=\"tg\"} "));
    }
    free(body);
    return v;
}

/* Waits until, among the running replicas, one is active and the others
 * stand by, all ready; returns the active one or -1. */
static int wait_one_active(int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    do {
        int active = -1, n_active = 0, n_other = 0, n_run = 0;
        for (int i = 0; i < 3; i++) {
            if (!reps[i]->p) continue;
            n_run++;
            int r = role(i);
            if (r == 1) active = i, n_active++;
            if (r == 0) n_other++;
        }
        if (n_active == 1 && n_active + n_other == n_run) return active;
        rt_sleep_ms(100);
    } while (rt_now_ms() < end);
    return -1;
}

static void inject_burst(void) {
    for (int k = 0; k < PER_CHAT; k++)
        for (int c = 0; c < CHATS; c++) {
            char text[64];
            snprintf(text, sizeof text, "c%d-m%d", c, k);
            ftg_add_text(F, 2000 + c, text);
        }
}

typedef ftg_tally tally;

static void count_replies(tally *t) {
    ftg_tally_echoes(F, 2000, CHATS, PER_CHAT, t);
}

static int wait_answered(int n, int timeout_ms) {
    return ftg_wait_echoes(F, 2000, CHATS, PER_CHAT, n, timeout_ms);
}

/* Monotonic time of the first long poll (timeout = 5, not the short
 * confirming call of a stopping leader) that arrived after `after`. */
static long long first_poll_after(long long after, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    do {
        ftg_rec *r;
        size_t n = ftg_records(F, "getUpdates", 0, &r);
        long long t = -1;
        for (size_t i = 0; i < n && t < 0; i++)
            if (r[i].t_ms > after && r[i].body && strstr(r[i].body, "\"timeout\":5")) t = r[i].t_ms;
        ftg_recs_free(r, n);
        if (t >= 0) return t;
        rt_sleep_ms(20);
    } while (rt_now_ms() < end);
    return -1;
}

static void stop_all(void) {
    for (int i = 0; i < 3; i++)
        if (reps[i]->p) rt_signal(reps[i]->p, SIGTERM);
    for (int i = 0; i < 3; i++)
        if (reps[i]->p) {
            assert_int_equal(rt_wait(reps[i]->p, 30000), 0);
            assert_null(strstr(rt_stderr(reps[i]->p), "AAhaSecret"));
        }
}

static void two_replicas_one_poller(void **state) {
    (void)state;
    start_rep(0);
    start_rep(1);
    int a = wait_one_active(20000);
    assert_true(a >= 0);
    int s = 1 - a;
    assert_int_equal(leader_gauge(a), 1);
    assert_int_equal(leader_gauge(s), 0);
    inject_burst();
    assert_int_equal(wait_answered(TOTAL, 60000), TOTAL);
    rt_sleep_ms(500);
    /* The standby never polled: still the same roles, no overlap. */
    assert_int_equal(role(a), 1);
    assert_int_equal(role(s), 0);
    stop_all();
    tally t;
    count_replies(&t);
    assert_int_equal(t.answered, TOTAL);
    assert_int_equal(t.duplicates, 0);
    assert_int_equal(t.foreign, 0);
    assert_true(t.order_ok);
    assert_int_equal(ftg_poll_overlaps(F), 0);
    assert_int_equal(ftg_unconfirmed(F), 0);
}

static void kill9_leader_of_three(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++)
        start_rep(i);
    int a = wait_one_active(20000);
    assert_true(a >= 0);
    inject_burst();
    assert_true(wait_answered(TOTAL / 3, 60000) >= TOTAL / 3);
    long long t_kill = rt_now_ms();
    rt_signal(reps[a]->p, SIGKILL);
    rt_wait(reps[a]->p, 10000);
    tally mid;
    count_replies(&mid);
    rt_free(reps[a]->p);
    reps[a]->p = NULL;
    long long t_poll = first_poll_after(t_kill, (LEASE_S + 10) * 1000);
    assert_true(t_poll >= 0);
    fprintf(stderr, "kill -9: %d answered before, a standby polled %lld ms after the kill\n",
            mid.answered, t_poll - t_kill);
    assert_true(t_poll - t_kill <= (LEASE_S + 2) * 1000);
    assert_int_equal(wait_answered(TOTAL, 60000), TOTAL);
    assert_true(wait_one_active(10000) >= 0);
    rt_sleep_ms(500);
    stop_all();
    tally t;
    count_replies(&t);
    fprintf(stderr, "kill -9: %d replies sent twice\n", t.duplicates);
    assert_int_equal(t.answered, TOTAL);
    /* Duplicates: at most what was queued or in flight at the kill. */
    assert_true(t.duplicates <= QUEUE + 100);
    assert_int_equal(t.foreign, 0);
    assert_true(t.order_ok);
    assert_int_equal(ftg_poll_overlaps(F), 0);
    assert_int_equal(ftg_unconfirmed(F), 0);
}

static void sigterm_hands_over(void **state) {
    (void)state;
    start_rep(0);
    start_rep(1);
    int a = wait_one_active(20000);
    assert_true(a >= 0);
    int s = 1 - a;
    inject_burst();
    assert_true(wait_answered(TOTAL / 3, 60000) >= TOTAL / 3);
    rt_signal(reps[a]->p, SIGTERM);
    assert_int_equal(rt_wait(reps[a]->p, 30000), 0);
    long long t_exit = rt_now_ms();
    assert_non_null(strstr(rt_stderr(reps[a]->p), "released"));
    rt_free(reps[a]->p);
    reps[a]->p = NULL;
    long long t_poll = first_poll_after(t_exit - 1000, 10000);
    assert_true(t_poll >= 0);
    fprintf(stderr, "SIGTERM: the standby polled %lld ms after the leader exited\n",
            t_poll - t_exit);
    /* The lease is released before exit, so the standby may even poll
     * before the old leader's process is gone. */
    assert_true(t_poll - t_exit < 1000);
    assert_int_equal(wait_answered(TOTAL, 60000), TOTAL);
    assert_int_equal(role(s), 1);
    rt_sleep_ms(500);
    stop_all();
    tally t;
    count_replies(&t);
    assert_int_equal(t.answered, TOTAL);
    assert_int_equal(t.duplicates, 0);
    assert_int_equal(t.foreign, 0);
    assert_true(t.order_ok);
    assert_int_equal(ftg_poll_overlaps(F), 0);
    assert_int_equal(ftg_unconfirmed(F), 0);
}

static void postgres_restart_mid_burst(void **state) {
    (void)state;
    start_rep(0);
    start_rep(1);
    assert_true(wait_one_active(20000) >= 0);
    inject_burst();
    assert_true(wait_answered(TOTAL / 4, 60000) >= TOTAL / 4);
    pg_cmd("stop");
    /* Both report not ready while the store is gone. */
    long long end = rt_now_ms() + 10000;
    while ((role(0) >= 0 || role(1) >= 0) && rt_now_ms() < end)
        rt_sleep_ms(100);
    assert_int_equal(role(0), -1);
    assert_int_equal(role(1), -1);
    tally during;
    count_replies(&during);
    rt_sleep_ms(1500);
    pg_cmd("start");
    /* Back by themselves: one active, one standby, everything answered. */
    assert_true(wait_one_active(30000) >= 0);
    assert_int_equal(wait_answered(TOTAL, 90000), TOTAL);
    rt_sleep_ms(500);
    stop_all();
    tally t;
    count_replies(&t);
    fprintf(stderr, "PostgreSQL restart: %d answered during the outage, %d replies sent twice\n",
            during.answered, t.duplicates);
    assert_int_equal(t.answered, TOTAL);
    assert_true(t.duplicates <= QUEUE + 100);
    assert_int_equal(t.foreign, 0);
    assert_int_equal(ftg_poll_overlaps(F), 0);
    assert_int_equal(ftg_unconfirmed(F), 0);
}

static int replies_to(const char *text) {
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += r[i].text && !strcmp(r[i].text, text);
    ftg_recs_free(r, n);
    return k;
}

static void wait_reply(const char *text) {
    long long end = rt_now_ms() + 20000;
    while (replies_to(text) < 1 && rt_now_ms() < end)
        rt_sleep_ms(20);
    if (replies_to(text) != 1) fail_msg("no single reply \"%s\"", text);
}

/* A /persona choice made on the leader holds on the replica that takes
 * over, though that one started before the choice. */
static void persona_choice_follows_the_handover(void **state) {
    (void)state;
    two_personas = 1;
    start_rep(0);
    start_rep(1);
    int a = wait_one_active(20000);
    assert_true(a >= 0);
    ftg_add_text(F, 4000, "/persona pb");
    wait_reply("Persona switched to pb.");
    ftg_add_text(F, 4000, "x1");
    wait_reply("bee: x1");
    rt_signal(reps[a]->p, SIGTERM);
    assert_int_equal(rt_wait(reps[a]->p, 30000), 0);
    rt_free(reps[a]->p);
    reps[a]->p = NULL;
    assert_int_equal(wait_one_active(10000), 1 - a);
    ftg_add_text(F, 4000, "x2");
    wait_reply("bee: x2");
    assert_int_equal(replies_to("echo: x2"), 0);
    stop_all();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(two_replicas_one_poller, setup, teardown),
        cmocka_unit_test_setup_teardown(kill9_leader_of_three, setup, teardown),
        cmocka_unit_test_setup_teardown(sigterm_hands_over, setup, teardown),
        cmocka_unit_test_setup_teardown(postgres_restart_mid_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(persona_choice_follows_the_handover, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
