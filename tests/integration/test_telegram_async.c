/*
 * Replies from the telegram transport's event loop (plugin ABI 1.4,
 * send_async) through the real routerd against the fake Bot API and the
 * mock backend: with every sendMessage held 300 ms, 200 chats are
 * answered on a few threads where blocking sends park a worker each; with
 * max_unrecorded_replies = 2 the replies wait for their mark slots on the
 * loop, not on workers; a SIGTERM while sends are held waits for them;
 * typing indicators go out at once however slow sendChatAction is.
 * Every message is answered once, in per-chat order.
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

#define TOKEN "515151:AAasyncSecret-part_y"
#define CHATS 200
#define PER_CHAT 2
#define TOTAL (CHATS * PER_CHAT)

static rt_fix *fx;
static ftg *F;

static rt_fix_spec fix = {.fx = &fx, .tg_token = TOKEN, .tg = &F};
static const char *const env[] = {"TG_TOKEN=" TOKEN, NULL};

static const char *drain_s = "20";

static void manifest_with(const char *typing, const char *transport_extra, const char *mock_extra) {
    rt_fix_manifest(fx,
                    "queue_depth = 512\nrate_limit_per_minute = 0\ndrain_timeout_s = %s\n"
                    "workers = 256\n"
                    "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                    "throttle = off\ntimeout = 5\ntyping = %s\nretry_base_ms = 50\n"
                    "retry_max_ms = 500\n%s"
                    "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\n%s"
                    "[persona.p]\nbackend = mock\nchats = *\n",
                    drain_s, ftg_base(F), typing, transport_extra, mock_extra);
}

static void manifest(const char *transport_extra) {
    manifest_with("false", transport_extra, "");
}

static void inject(int chats, int per_chat) {
    for (int k = 0; k < per_chat; k++)
        for (int c = 0; c < chats; c++) {
            char text[64];
            snprintf(text, sizeof text, "c%d-m%d", c, k);
            ftg_add_text(F, 1000 + c, text);
        }
}

/* Runs routerd until every message is answered; the most threads seen. */
static int run_all(int chats, int per_chat) {
    rt_proc *p = rt_fix_start(fx, env, 0);
    assert_non_null(p);
    int peak = 0, total = chats * per_chat;
    long long t0 = rt_now_ms();
    while (ftg_wait_echoes(F, 1000, chats, per_chat, total, 20) < total &&
           rt_now_ms() - t0 < 60000) {
        int n = rt_threads(rt_pid(p));
        if (n > peak) peak = n;
    }
    rt_sleep_ms(300); /* anything extra would show up now */
    assert_int_equal(rt_fix_stop(fx, 30000), 0);
    ftg_tally t;
    ftg_tally_echoes(F, 1000, chats, per_chat, &t);
    fprintf(stderr, "%d replies in %lld ms, at most %d threads\n", t.answered, rt_now_ms() - t0,
            peak);
    assert_int_equal(t.answered, total);
    assert_int_equal(t.duplicates, 0);
    assert_int_equal(t.foreign, 0);
    assert_true(t.order_ok);
    assert_int_equal(ftg_unconfirmed(F), 0);
    return peak;
}

static void test_slow_api_few_threads(void **state) {
    (void)state;
    manifest("");
    inject(CHATS, PER_CHAT);
    ftg_fail(F, "sendMessage", FTG_FAULT_SLOW, 300, 100000);
    int peak = run_all(CHATS, PER_CHAT);
    /* The core's threads, the plugin's and the admin server's: not one
     * per reply in flight. */
    assert_true(peak <= 40);
}

/* The same with the sends on the workers: the test above can fail. */
static void test_blocking_sends_park_workers(void **state) {
    (void)state;
    manifest("send_async = false\n");
    inject(CHATS, PER_CHAT);
    ftg_fail(F, "sendMessage", FTG_FAULT_SLOW, 300, 100000);
    int peak = run_all(CHATS, PER_CHAT);
    assert_true(peak > 60);
}

/* Two unrecorded replies at most: the others wait for the intake's
 * writes on the loop; none is lost or sent twice. */
static void test_mark_slots_wait_on_loop(void **state) {
    (void)state;
    manifest("max_unrecorded_replies = 2\n");
    inject(CHATS, PER_CHAT);
    ftg_fail(F, "sendMessage", FTG_FAULT_SLOW, 30, 100000);
    int peak = run_all(CHATS, PER_CHAT);
    assert_true(peak <= 40);
}

/* SIGTERM while 20 replies are held by the Bot API: the drain waits for
 * them, so all go out once and every update is confirmed. */
static void test_drain_waits_for_sends(void **state) {
    (void)state;
    manifest("");
    ftg_fail(F, "sendMessage", FTG_FAULT_SLOW, 1500, 100000);
    rt_proc *p = rt_fix_start(fx, env, 10000);
    assert_non_null(p);
    inject(20, 1);
    rt_sleep_ms(400); /* fetched, answered by the mock, held in sendMessage */
    assert_int_equal(ftg_count(F, "sendMessage", 0), 0);
    long long t1 = rt_now_ms();
    assert_int_equal(rt_fix_stop(fx, 30000), 0);
    /* the stop waited for the held sends and cut none */
    fprintf(stderr, "stopped in %lld ms\n", rt_now_ms() - t1);
    assert_true(rt_now_ms() - t1 >= 700);
    assert_null(strstr(rt_stderr(p), "aborted"));
    ftg_tally t;
    ftg_tally_echoes(F, 1000, 20, 1, &t);
    assert_int_equal(t.answered, 20);
    assert_int_equal(t.duplicates, 0);
    assert_int_equal(ftg_unconfirmed(F), 0);
}

/* The drain runs out (1 s) while 20 replies are held 4 s: the stop cuts
 * them and keeps them in the outbox, routerd exits 75, and after a
 * restart every message is answered (the fake counts a held request it
 * answered after routerd left as delivered: those show as duplicates). */
static void test_hard_stop_while_sends_held(void **state) {
    (void)state;
    drain_s = "1";
    manifest("");
    drain_s = "20";
    ftg_fail(F, "sendMessage", FTG_FAULT_SLOW, 4000, 20);
    rt_proc *p = rt_fix_start(fx, env, 10000);
    assert_non_null(p);
    inject(20, 1);
    rt_sleep_ms(400);
    rt_signal(p, SIGTERM);
    assert_int_equal(rt_wait(p, 15000), 75);
    assert_non_null(rt_fix_start(fx, env, 10000));
    assert_int_equal(ftg_wait_echoes(F, 1000, 20, 1, 20, 30000), 20);
    rt_sleep_ms(300);
    assert_int_equal(rt_fix_stop(fx, 30000), 0);
    ftg_tally t;
    ftg_tally_echoes(F, 1000, 20, 1, &t);
    fprintf(stderr, "after the hard stop: %d answered, %d twice\n", t.answered, t.duplicates);
    assert_int_equal(t.answered, 20);
    assert_true(t.duplicates <= 20);
    assert_int_equal(ftg_unconfirmed(F), 0);
}

/* 30 chats wait 2 s on the agent while every sendChatAction takes 1 s:
 * each chat's typing indicator still goes out at once (one thread sending
 * them one after the other would reach two chats), before its reply. */
static void test_typing_not_held_by_slow_api(void **state) {
    (void)state;
    enum { N = 30 };
    manifest_with("true", "", "latency_ms = 2000\n");
    inject(N, 1);
    ftg_fail(F, "sendChatAction", FTG_FAULT_SLOW, 1000, 100000);
    run_all(N, 1);
    ftg_rec *acts, *replies;
    size_t na = ftg_records(F, "sendChatAction", 0, &acts);
    size_t nr = ftg_records(F, "sendMessage", 1, &replies);
    assert_int_equal(nr, N);
    int shown = 0;
    for (size_t i = 0; i < nr; i++) {
        long long first = -1;
        for (size_t k = 0; k < na; k++)
            if (acts[k].chat_id == replies[i].chat_id && (first < 0 || acts[k].t_ms < first))
                first = acts[k].t_ms;
        shown += first >= 0 && first < replies[i].t_ms;
    }
    ftg_recs_free(acts, na);
    ftg_recs_free(replies, nr);
    fprintf(stderr, "typing shown before the reply in %d of %d chats\n", shown, N);
    assert_int_equal(shown, N);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_slow_api_few_threads, &fix),
        RT_FIX_TEST(test_blocking_sends_park_workers, &fix),
        RT_FIX_TEST(test_mark_slots_wait_on_loop, &fix),
        RT_FIX_TEST(test_drain_waits_for_sends, &fix),
        RT_FIX_TEST(test_typing_not_held_by_slow_api, &fix),
        RT_FIX_TEST(test_hard_stop_while_sends_held, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
