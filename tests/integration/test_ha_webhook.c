/*
 * Webhook scale-out on a shared PostgreSQL store (started by
 * tests/support/pg.sh): three routerd replicas all take webhooks, fed round
 * robin like a load balancer would. Every update is answered exactly once
 * and each chat's replies keep the order of its messages, though the
 * replicas share the chats; duplicates posted to other replicas are
 * recognised. A kill -9 of one replica mid-burst loses nothing: its chat
 * claims expire and the others carry on. A SIGTERM hands its chats over
 * with no duplicate.
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

#define TOKEN "626262:AAhaSecret-hook_z"
#define HOOK "hook-secret-scale"
#define NREP 3
#define CHATS 6
#define PER_CHAT 20
#define TOTAL (CHATS * PER_CHAT)
#define LEASE_S 2
#define QUEUE 64

/* One fixture per replica; the first also runs the fake Bot API. */
static rt_fix *reps[NREP];
static ftg *F;
static char pg_env[1024];

static int setup(void **state) {
    (void)state;
    if (rt_pg_reset(pg_env, sizeof pg_env)) return -1;
    for (int i = 0; i < NREP; i++)
        if (!(reps[i] = rt_fix_new(i ? NULL : TOKEN))) return -1;
    F = reps[0]->tg;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = NREP - 1; i >= 0; i--) {
        rt_fix_free(reps[i]);
        reps[i] = NULL;
    }
    return 0;
}

static const char *env[] = {"TG_TOKEN=" TOKEN, "TG_HOOK=" HOOK, pg_env, NULL};

static void start_rep(int i) {
    rt_fix *r = reps[i];
    /* latency_ms spreads the work: several chats are in flight at once. */
    rt_fix_manifest(r,
                    "store = postgresql\nstore_url = ${PG_URL}\nlease_s = %d\n"
                    "queue_depth = %d\nrate_limit_per_minute = 0\ndrain_timeout_s = 20\n"
                    "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                    "mode = webhook\nsecret_token = ${TG_HOOK}\n"
                    "webhook_url = https://bot.example.invalid/hook\n"
                    "throttle = off\ntimeout = 5\ntyping = false\nretry_base_ms = 50\n"
                    "retry_max_ms = 500\n"
                    "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\nlatency_ms = 100\n"
                    "[sink.prom]\nplugin = prometheus\nprocess_metrics = false\n"
                    "[persona.p]\nbackend = mock\nchats = *\n",
                    LEASE_S, QUEUE, ftg_base(F));
    assert_non_null(rt_fix_start(r, env, 20000));
}

static long post_hook(int i, const char *body) {
    if (!reps[i]->p) return -1;
    const char *url = rt_fix_url(reps[i], "/telegram/tg");
    const char *const h[] = {"Content-Type: application/json",
                             "X-Telegram-Bot-Api-Secret-Token: " HOOK, NULL};
    char *resp = NULL;
    long st = rt_http("POST", url, body, h, &resp);
    free(resp);
    return st;
}

static int served[NREP]; /* 200 answers per replica */

/* A load balancer: round robin from `first`, the next replica when one
 * fails. 1 once a replica answered 200. */
static int deliver(const char *body, int first) {
    for (int tries = 0; tries < 100; tries++) {
        int i = (first + tries) % NREP;
        if (post_hook(i, body) == 200) {
            served[i]++;
            return 1;
        }
        if (tries % NREP == NREP - 1) rt_sleep_ms(50);
    }
    return 0;
}

typedef ftg_tally tally;

static void count_replies(tally *t) {
    ftg_tally_echoes(F, 5000, CHATS, PER_CHAT, t);
}

static int wait_answered(int n, int timeout_ms) {
    return ftg_wait_echoes(F, 5000, CHATS, PER_CHAT, n, timeout_ms);
}

static char *updates[CHATS][PER_CHAT];

static void build_updates(void) {
    for (int k = 0; k < PER_CHAT; k++)
        for (int c = 0; c < CHATS; c++) {
            char text[64];
            snprintf(text, sizeof text, "c%d-m%d", c, k);
            ftg_msg m = {.chat_id = 5000 + c, .text = text};
            updates[c][k] = ftg_build_update(F, &m, NULL);
            assert_non_null(updates[c][k]);
        }
}

static void free_updates(void) {
    for (int c = 0; c < CHATS; c++)
        for (int k = 0; k < PER_CHAT; k++) {
            free(updates[c][k]);
            updates[c][k] = NULL;
        }
}

static void stop_all(void) {
    for (int i = 0; i < NREP; i++)
        if (reps[i]->p) rt_signal(reps[i]->p, SIGTERM);
    for (int i = 0; i < NREP; i++)
        if (reps[i]->p) {
            assert_int_equal(rt_wait(reps[i]->p, 30000), 0);
            assert_null(strstr(rt_stderr(reps[i]->p), "AAhaSecret"));
        }
}

/* routerd_telegram_chat_claims of replica i (-1 unknown). */
static int claims(int i) {
    char *body = NULL;
    int v = -1;
    if (rt_http("GET", rt_fix_url(reps[i], "/metrics"), NULL, NULL, &body) == 200 && body) {
        /* The sample line, not the # HELP / # TYPE lines. */
        char *p = strstr(body, "\nrouterd_telegram_chat_claims");
        char *eol = p ? strchr(p + 1, '\n') : NULL;
        if (p && eol) {
            *eol = 0;
            char *sp = strrchr(p, ' ');
            if (sp) v = atoi(sp + 1);
        }
    }
    free(body);
    return v;
}

static void three_replicas_round_robin(void **state) {
    (void)state;
    memset(served, 0, sizeof served);
    int worked[NREP] = {0};
    for (int i = 0; i < NREP; i++)
        start_rep(i);
    build_updates();
    int n = 0;
    for (int k = 0; k < PER_CHAT; k++) {
        for (int c = 0; c < CHATS; c++) {
            assert_int_equal(deliver(updates[c][k], n++ % NREP), 1);
            /* A redelivery to another replica: recognised, not answered twice. */
            if ((k + c) % 7 == 0) assert_int_equal(deliver(updates[c][k], n % NREP), 1);
        }
        for (int i = 0; i < NREP; i++)
            if (claims(i) > 0) worked[i] = 1;
    }
    /* Not only intake: the chats were worked on by more than one replica. */
    assert_true(worked[0] + worked[1] + worked[2] >= 2);
    for (int i = 0; i < NREP; i++)
        assert_true(served[i] >= TOTAL / NREP);
    assert_int_equal(wait_answered(TOTAL, 60000), TOTAL);
    rt_sleep_ms(1000);
    stop_all();
    tally t;
    count_replies(&t);
    assert_int_equal(t.answered, TOTAL);
    assert_int_equal(t.duplicates, 0);
    assert_int_equal(t.foreign, 0);
    assert_true(t.order_ok);
    /* The webhook stays set for the others when a replica stops. */
    char wurl[256], wsec[64];
    ftg_webhook_info(F, wurl, sizeof wurl, wsec, sizeof wsec);
    assert_string_equal(wurl, "https://bot.example.invalid/hook");
    free_updates();
}

static void kill9_one_of_three(void **state) {
    (void)state;
    memset(served, 0, sizeof served);
    for (int i = 0; i < NREP; i++)
        start_rep(i);
    build_updates();
    int n = 0, victim = 1, killed = 0;
    for (int k = 0; k < PER_CHAT; k++) {
        /* From mid-burst on, as soon as the victim works on chats: the
         * claims it dies with must expire for the others to carry on. */
        if (k >= PER_CHAT / 2 && !killed && claims(victim) >= 1) {
            rt_signal(reps[victim]->p, SIGKILL);
            rt_wait(reps[victim]->p, 10000);
            rt_free(reps[victim]->p);
            reps[victim]->p = NULL;
            killed = 1;
        }
        for (int c = 0; c < CHATS; c++)
            assert_int_equal(deliver(updates[c][k], n++ % NREP), 1);
    }
    assert_true(killed);
    long long t0 = rt_now_ms();
    /* The dead replica's claims expire after lease_s; the others go on. */
    assert_int_equal(wait_answered(TOTAL, 60000), TOTAL);
    fprintf(stderr, "kill -9: everything answered %lld ms after the last post\n", rt_now_ms() - t0);
    rt_sleep_ms(1000);
    stop_all();
    tally t;
    count_replies(&t);
    fprintf(stderr, "kill -9: %d replies sent twice\n", t.duplicates);
    assert_int_equal(t.answered, TOTAL);
    /* At most what the dead replica had in flight. */
    assert_true(t.duplicates <= QUEUE);
    assert_int_equal(t.foreign, 0);
    assert_true(t.order_ok);
    free_updates();
}

/* A rolling update: SIGTERM of a replica holding chats hands them over at
 * once (claims released at stop), with no reply sent twice. */
static void sigterm_one_of_three(void **state) {
    (void)state;
    memset(served, 0, sizeof served);
    for (int i = 0; i < NREP; i++)
        start_rep(i);
    build_updates();
    int n = 0, victim = 2, stopped = 0;
    for (int k = 0; k < PER_CHAT; k++) {
        if (k >= PER_CHAT / 2 && !stopped && claims(victim) >= 1) {
            rt_signal(reps[victim]->p, SIGTERM);
            assert_int_equal(rt_wait(reps[victim]->p, 30000), 0);
            rt_free(reps[victim]->p);
            reps[victim]->p = NULL;
            stopped = 1;
        }
        for (int c = 0; c < CHATS; c++)
            assert_int_equal(deliver(updates[c][k], n++ % NREP), 1);
    }
    assert_true(stopped);
    assert_int_equal(wait_answered(TOTAL, 60000), TOTAL);
    rt_sleep_ms(1000);
    stop_all();
    tally t;
    count_replies(&t);
    assert_int_equal(t.answered, TOTAL);
    assert_int_equal(t.duplicates, 0);
    assert_int_equal(t.foreign, 0);
    assert_true(t.order_ok);
    free_updates();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(three_replicas_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(kill9_one_of_three, setup, teardown),
        cmocka_unit_test_setup_teardown(sigterm_one_of_three, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
