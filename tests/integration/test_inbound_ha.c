/*
 * The inbound A2A server on a shared PostgreSQL store (tests/support/pg.sh
 * starts one): two replicas of the real binary, each with its own A2A
 * listener, one fake Bot API. A question asked on the standby is delivered
 * once; an answer taken by the leader shows on a stream held by the other
 * replica; a messageId retried on the other replica finds the same task;
 * the leader killed with questions pending, the standby takes over and the
 * answers complete them, each question sent once. Exits 77 (skipped)
 * without the PostgreSQL server binaries or node and its npm packages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "fake_telegram.h"
#include "harness.h"
#include "test_inbound_util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TG_TOKEN "737373:AAinboundHaSecret-x_q"
#define PLANNER "planner-T0ken-ha-55aa11"
#define LEASE_S 2
#define ALICE 7710501
#define BOB 7710502

static rt_fix *reps[2];
static ftg *F;
static int inports[2];
static char pg_env[1024];
static const char *env[] = {"TG_TOKEN=" TG_TOKEN, "PLANNER_TOKEN=" PLANNER, pg_env, NULL};

static rt_proc *stream_cli; /* a client still running, if any */
static int leader(int i);

static void dump_all(void) {
    for (int i = 0; i < 2; i++)
        if (reps[i] && reps[i]->p)
            fprintf(stderr, "replica %d (leader: %d) stderr:\n%s\n", i, leader(i),
                    rt_stderr(reps[i]->p));
    if (stream_cli)
        fprintf(stderr, "client stdout:\n%s\nclient stderr:\n%s\n", rt_stdout(stream_cli),
                rt_stderr(stream_cli));
}

static int setup(void **state) {
    (void)state;
    if (rt_pg_reset(pg_env, sizeof pg_env)) return -1; /* an empty database */
    for (int i = 0; i < 2; i++) {
        if (!(reps[i] = rt_fix_new(i ? NULL : TG_TOKEN))) return -1;
        inports[i] = rt_free_port();
    }
    F = ie_tg = reps[0]->tg;
    ie_on_fail = dump_all;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 1; i >= 0; i--) {
        rt_fix_free(reps[i]);
        reps[i] = NULL;
    }
    ie_routerd = NULL;
    ie_on_fail = NULL;
    stream_cli = NULL;
    return 0;
}

/* The client talks to replica i from now on. */
static void use(int i) {
    snprintf(ie_base, sizeof ie_base, "http://127.0.0.1:%d", inports[i]);
    ie_routerd = reps[i]->p;
}

static void start_rep(int i) {
    rt_fix *r = reps[i];
    if (!r->manifest)
        rt_fix_manifest(r,
                        "store = postgresql\nstore_url = ${PG_URL}\nlease_s = %d\n"
                        "rate_limit_per_minute = 0\ndrain_timeout_s = 5\n"
                        "[transport.main]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                        "throttle = off\ntimeout = 1\ntyping = false\n"
                        "[backend.echo]\nplugin = mock\nprefix = \"echo: \"\n"
                        "[persona.p]\nbackend = echo\nchats = *\n"
                        "[sink.prom]\nplugin = prometheus\nprocess_metrics = false\n"
                        "[inbound.people]\nplugin = a2a\nlisten = 127.0.0.1:%d\n"
                        "humans = alice=main:%d, bob=main:%d\n"
                        "callers = planner=${PLANNER_TOKEN}\nallow = planner:*\n",
                        LEASE_S, ftg_base(F), inports[i], ALICE, BOB);
    assert_non_null(rt_fix_start(r, env, 0));
    assert_true(rt_wait_http(rt_fix_url(r, "/healthz"), 200, 20000));
    use(i);
    char url[128];
    snprintf(url, sizeof url, "%s/.well-known/agent-card.json", ie_base);
    assert_true(rt_wait_http(url, 200, 10000));
}

/* routerd_leader{transport="main"} of replica i: 1, 0, or -1 unknown. */
static int leader(int i) {
    char *body = NULL;
    int v = -1;
    if (rt_http("GET", rt_fix_url(reps[i], "/metrics"), NULL, NULL, &body) == 200 && body) {
        const char *k = "routerd_leader{transport=\"main\"} ";
        char *p = strstr(body, k);
        if (p) v = atoi(p + strlen(k));
    }
    free(body);
    return v;
}

static int wait_leader(int i, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    while (rt_now_ms() < end) {
        if (leader(i) == 1) return 1;
        rt_sleep_ms(100);
    }
    return 0;
}

static void test_failover(void **state) {
    (void)state;
    start_rep(0);
    assert_true(wait_leader(0, 10000));
    start_rep(1);
    assert_int_equal(leader(1), 0);

    /* Asked on the standby; its stream there sees the answer the leader
     * takes. */
    use(1);
    rt_proc *s = stream_cli =
        cli_start(PLANNER, (const char *const[]){"stream", "--skill", "alice", "--text",
                                                 "Across replicas?", NULL});
    int64_t q3 = question(ALICE, qtext("planner", "Across replicas?"), 15000, NULL);
    assert_true(rt_wait_stdout(s, "\"input-required\"", 10000));
    ftg_add_reply(F, ALICE, q3, "seen on both");
    stream_cli = NULL;
    cJSON *l = cli_done(s, 0);
    assert_string_equal(evs(l, "final", -1, "task.state"), "completed");
    assert_string_equal(evs(l, "final", -1, "task.answer"), "seen on both");
    cJSON_Delete(l);

    /* Two questions pending: one asked on each replica; a retry of the
     * first on the other replica finds the same task. */
    const char *const qa[] = {"ask",  "--no-poll", "--skill",        "alice", "--message-id",
                              "ha-1", "--text",    "Fail over now?", NULL};
    l = cli(PLANNER, qa, 0);
    char ida[96], idb[96];
    snprintf(ida, sizeof ida, "%s", evs(l, "final", -1, "task.id"));
    assert_string_equal(evs(l, "final", -1, "task.state"), "input-required");
    cJSON_Delete(l);
    use(0);
    l = cli(PLANNER,
            (const char *const[]){"ask", "--no-poll", "--dialect", "0.3", "--skill", "bob",
                                  "--text", "Hold the release?", NULL},
            0);
    snprintf(idb, sizeof idb, "%s", evs(l, "final", -1, "task.id"));
    cJSON_Delete(l);
    l = cli(PLANNER, qa, 0);
    assert_string_equal(evs(l, "final", -1, "task.id"), ida);
    cJSON_Delete(l);
    int64_t q1 = question(ALICE, qtext("planner", "Fail over now?"), 10000, NULL);
    question(BOB, qtext("planner", "Hold the release?"), 10000, NULL);

    /* The leader dies; the standby takes the bot over. */
    rt_signal(reps[0]->p, SIGKILL);
    assert_int_equal(rt_wait(reps[0]->p, 10000), 128 + SIGKILL);
    assert_true(wait_leader(1, (LEASE_S + 8) * 1000));
    use(1);
    ftg_add_reply(F, ALICE, q1, "yes, fail over");
    ftg_add_text(F, BOB, "hold it");
    l = cli(PLANNER, (const char *const[]){"wait", "--task", ida, NULL}, 0);
    assert_string_equal(evs(l, "final", -1, "task.answer"), "yes, fail over");
    cJSON_Delete(l);
    l = cli(PLANNER, (const char *const[]){"wait", "--dialect", "0.3", "--task", idb, NULL}, 0);
    assert_string_equal(evs(l, "final", -1, "task.answer"), "hold it");
    cJSON_Delete(l);

    /* Each question reached its chat once; no answer went to the persona. */
    assert_int_equal(sent_count(ALICE, qtext("planner", "Across replicas?")), 1);
    assert_int_equal(sent_count(ALICE, qtext("planner", "Fail over now?")), 1);
    assert_int_equal(sent_count(BOB, qtext("planner", "Hold the release?")), 1);
    assert_int_equal(sent_prefix(ALICE, "echo: "), 0);
    assert_int_equal(sent_prefix(BOB, "echo: "), 0);
}

int main(void) {
    if (!getenv("ROUTERD_TEST_PG_URL")) {
        fprintf(stderr, "SKIP: run through tests/support/pg.sh\n");
        return 77;
    }
    int rc = ie_setup_node();
    if (rc) return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_failover, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
