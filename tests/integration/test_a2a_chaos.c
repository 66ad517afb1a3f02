/*
 * Exactly-once under stops and crashes: the real routerd with the telegram
 * transport (fake Bot API) and the a2a backend (fake agent). Long tasks are
 * in flight when the router is stopped (SIGTERM with a drain shorter than
 * the tasks) or killed (kill -9); after a restart the journal re-delivers
 * their updates. Every message must be answered (exactly once after
 * SIGTERM; after kill -9 a reply in delivery at the kill may repeat, and a
 * send cut by the kill gets the failure notice) and no message's work may
 * run twice (after SIGTERM each ran exactly once): tasks are resumed,
 * answers repeated from the record, nothing is sent to the agent twice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_a2a.h"
#include "fake_telegram.h"
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "515151:AAchaosSecret-part_y"
#define CHATS 6
#define PER_CHAT 2
#define TOTAL (CHATS * PER_CHAT)
#define WORK_MS 2500

static char *dir;
static ftg *F;
static fa2a *A;

static int setup(void **state) {
    (void)state;
    dir = rt_tmpdir();
    F = ftg_start(TOKEN);
    return dir && F ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    ftg_stop(F);
    fa2a_stop(A);
    A = NULL;
    rt_rmtree(dir);
    free(dir);
    return 0;
}

static const char *const env[] = {"TG_TOKEN=" TOKEN, NULL};

static char *manifest(int port, const char *extra) {
    char text[4096];
    snprintf(text, sizeof text,
             "[router]\nenv = test\nadmin_listen = 127.0.0.1:%d\nstate_dir = %s/state\n"
             "rate_limit_per_minute = 0\ndrain_timeout_s = 1\n"
             "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
             "throttle = off\ntimeout = 2\ntyping = false\nretry_base_ms = 50\n"
             "retry_max_ms = 500\n"
             "[backend.agent]\nplugin = a2a\nurl = %s\nconnect_timeout_s = 2\n"
             "poll_interval_ms = 50\npoll_max_interval_ms = 200\nretry_base_ms = 20\n%s\n"
             "[persona.p]\nbackend = agent\nchats = *\n",
             port, dir, ftg_base(F), fa2a_url(A), extra ? extra : "");
    return rt_write_file(dir, "routerd.ini", text);
}

static void inject(void) {
    for (int k = 0; k < PER_CHAT; k++)
        for (int c = 0; c < CHATS; c++) {
            char text[64];
            snprintf(text, sizeof text, "task %d c%d-m%d", WORK_MS, c, k);
            ftg_add_text(F, 2000 + c, text);
        }
}

#define NOTICE "Sorry, I could not get an answer right now. Please try again in a moment."

typedef struct {
    int seen[CHATS][PER_CHAT];
    int answered, duplicates, foreign;
    int notices; /* the failure notice: a send cut by kill -9, never re-sent */
} tally;

static void count_replies(tally *t) {
    memset(t, 0, sizeof *t);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    for (size_t i = 0; i < n; i++) {
        int c, k, ms;
        if (r[i].text && !strcmp(r[i].text, NOTICE) && r[i].chat_id >= 2000 &&
            r[i].chat_id < 2000 + CHATS) {
            t->notices++;
            continue;
        }
        if (!r[i].text || sscanf(r[i].text, "done: task %d c%d-m%d", &ms, &c, &k) != 3 || c < 0 ||
            c >= CHATS || k < 0 || k >= PER_CHAT || r[i].chat_id != 2000 + c) {
            fprintf(stderr, "unexpected reply to %lld: %s\n", (long long)r[i].chat_id,
                    r[i].text ? r[i].text : "(none)");
            t->foreign++;
            continue;
        }
        if (t->seen[c][k]++)
            t->duplicates++;
        else
            t->answered++;
    }
    ftg_recs_free(r, n);
}

static int wait_answered(int n, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    tally t;
    for (;;) {
        count_replies(&t);
        if (t.answered + t.notices >= n || rt_now_ms() >= end) return t.answered + t.notices;
        rt_sleep_ms(50);
    }
}

static int sends(void) {
    return fa2a_count(A, "SendMessage") + fa2a_count(A, "SendStreamingMessage") +
           fa2a_count(A, "message/send") + fa2a_count(A, "message/stream");
}

/* How often the agent received each message. */
static void sends_per_message(int n[CHATS][PER_CHAT]) {
    memset(n, 0, sizeof(int) * CHATS * PER_CHAT);
    int total = fa2a_count(A, NULL);
    for (int i = 0; i < total; i++) {
        fa_req q;
        int c, k, ms;
        if (fa2a_req(A, i, &q) ||
            (strcmp(q.method, "SendMessage") && strcmp(q.method, "SendStreamingMessage") &&
             strcmp(q.method, "message/send") && strcmp(q.method, "message/stream")))
            continue;
        if (sscanf(q.text, "task %d c%d-m%d", &ms, &c, &k) == 3 && c >= 0 && c < CHATS && k >= 0 &&
            k < PER_CHAT)
            n[c][k]++;
    }
}

/* Runs one round: start, wait for `busy` sends to be in flight, stop with
 * sig, restart, wait for every answer, stop cleanly, check. */
static void round_trip(fa2a_opts o, const char *extra, int sig, int busy) {
    A = fa2a_start(&o);
    assert_non_null(A);
    int port = rt_free_port();
    char *m = manifest(port, extra);
    inject();
    rt_proc *p = rt_start(m, NULL, env);
    assert_non_null(p);
    long long end = rt_now_ms() + 20000;
    while (sends() < busy && rt_now_ms() < end)
        rt_sleep_ms(10);
    assert_true(sends() >= busy);
    rt_sleep_ms(200);
    rt_signal(p, sig);
    int rc = rt_wait(p, 20000);
    assert_true(rc >= 0);
    tally mid;
    count_replies(&mid);
    assert_true(mid.answered < TOTAL); /* stopped with work in flight */
    if (sig == SIGTERM && !strstr(rt_stderr(p), "drain timeout")) {
        fprintf(stderr, "%s\n", rt_stderr(p));
        fail_msg("the drain did not time out with tasks in flight");
    }
    char *first = strdup(rt_stderr(p)); /* shown when a check fails */
    rt_free(p);
    /* After the drain timeout no queued message starts: a backend call
     * begun then could only record a send that the exit cuts. */
    if (sig == SIGTERM && first &&
        (strstr(first, "before it started") || strstr(first, "before sending"))) {
        fprintf(stderr, "%s\n", first);
        fail_msg("a message was handed to the backend after the drain timeout");
    }

    p = rt_start(m, NULL, env);
    assert_non_null(p);
    int got = wait_answered(TOTAL, 60000);
    rt_sleep_ms(500); /* anything extra would show up now */
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 30000), 0);
    tally t;
    count_replies(&t);
    fprintf(stderr,
            "%s: %d answered before the restart, %d after, %d duplicates, %d notices, %d sends\n",
            sig == SIGTERM ? "SIGTERM" : "kill -9", mid.answered, got, t.duplicates, t.notices,
            sends());
    /* Per message: sent at most once; answered only if sent; a message
     * without an answer got the notice instead. After kill -9 a send cut
     * between its record and the agent taking it (recorded first, so that
     * it is never sent twice) has an unknown outcome: it is not sent again
     * and gets the failure notice. 1.0 finds with ListTasks every one that
     * reached the agent, so there only one that never did may get it; in
     * 0.3 it may have run (once). */
    int per[CHATS][PER_CHAT], twice = 0, answered_unsent = 0, lost = 0, reached = 0;
    sends_per_message(per);
    for (int c = 0; c < CHATS; c++)
        for (int k = 0; k < PER_CHAT; k++) {
            twice += per[c][k] > 1;
            reached += per[c][k] > 0;
            answered_unsent += t.seen[c][k] && !per[c][k];
            lost += !t.seen[c][k] && per[c][k] && o.speaks == FA_V10;
        }
    int ok = got == TOTAL && t.foreign == 0 && fa2a_executions(A, NULL) == 1 &&
             fa2a_executed_messages(A) == reached && twice == 0 && answered_unsent == 0 &&
             lost == 0 && t.answered + t.notices == TOTAL &&
             (sig != SIGTERM || (t.duplicates == 0 && t.notices == 0));
    if (!ok) fprintf(stderr, "first run:\n%s\nsecond run:\n%s\n", first ? first : "", rt_stderr(p));
    free(first);
    assert_int_equal(t.answered + t.notices, TOTAL);
    assert_int_equal(twice, 0);
    assert_int_equal(answered_unsent, 0);
    if (sig == SIGTERM) {
        assert_int_equal(t.answered, TOTAL);
        assert_int_equal(t.notices, 0);
    } else {
        assert_true(t.notices <= CHATS);
        assert_int_equal(lost, 0);
    }
    assert_int_equal(t.foreign, 0);
    /* A clean stop repeats nothing. After kill -9 a reply being delivered
     * at the kill may go out twice (the design's bound: what was in
     * flight); its agent work still ran once. */
    if (sig == SIGTERM)
        assert_int_equal(t.duplicates, 0);
    else
        assert_true(t.duplicates <= CHATS);
    /* each message that reached the agent ran once; all did after SIGTERM */
    assert_int_equal(fa2a_executions(A, NULL), 1);
    assert_int_equal(fa2a_executed_messages(A), reached);
    assert_int_equal(sends(), reached);
    if (sig == SIGTERM) assert_int_equal(reached, TOTAL);
    assert_true(strstr(rt_stderr(p), "resuming it instead of sending again") != NULL);
    assert_null(strstr(rt_stderr(p), "AAchaosSecret"));
    assert_int_equal(ftg_unconfirmed(F), 0);
    rt_free(p);
    free(m);
}

static void test_sigterm_poll_v10(void **state) {
    (void)state;
    round_trip((fa2a_opts){.speaks = FA_V10}, NULL, SIGTERM, CHATS);
}

static void test_sigterm_stream_v03(void **state) {
    (void)state;
    round_trip((fa2a_opts){.speaks = FA_V03, .streaming = 1}, "stream = true\n", SIGTERM, CHATS);
}

static void test_kill9_poll_v03(void **state) {
    (void)state;
    round_trip((fa2a_opts){.speaks = FA_V03}, NULL, SIGKILL, CHATS + 2);
}

static void test_kill9_stream_v10(void **state) {
    (void)state;
    round_trip((fa2a_opts){.speaks = FA_V10, .streaming = 1}, "stream = true\n", SIGKILL,
               CHATS + 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigterm_poll_v10, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_stream_v03, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_poll_v03, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_stream_v10, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
