/*
 * Replies from the telegram transport's event loop (plugin ABI 1.4,
 * send_async) through the real routerd against the fake Bot API and the
 * mock backend: with every sendMessage held 300 ms, 200 chats are
 * answered on a few threads where blocking sends park a worker each; with
 * max_unrecorded_replies = 2 the replies wait for their mark slots on the
 * loop, not on workers; a SIGTERM while sends are held waits for them.
 * Every message is answered once, in per-chat order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_telegram.h"
#include "harness.h"

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

static void manifest(const char *transport_extra) {
    rt_fix_manifest(fx,
                    "queue_depth = 512\nrate_limit_per_minute = 0\ndrain_timeout_s = 20\n"
                    "workers = 256\n"
                    "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                    "throttle = off\ntimeout = 5\ntyping = false\nretry_base_ms = 50\n"
                    "retry_max_ms = 500\n%s"
                    "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\n"
                    "[persona.p]\nbackend = mock\nchats = *\n",
                    ftg_base(F), transport_extra);
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
    long long t0 = rt_now_ms();
    while (ftg_count(F, "getUpdates", 0) < 3 && rt_now_ms() - t0 < 5000)
        rt_sleep_ms(10);
    rt_sleep_ms(500); /* answered by the mock, held in sendMessage */
    long long t1 = rt_now_ms();
    assert_int_equal(rt_fix_stop(fx, 30000), 0);
    /* the sends were still held: the stop waited for them, cut none */
    assert_true(rt_now_ms() - t1 >= 600);
    assert_null(strstr(rt_stderr(p), "aborted"));
    ftg_tally t;
    ftg_tally_echoes(F, 1000, 20, 1, &t);
    assert_int_equal(t.answered, 20);
    assert_int_equal(t.duplicates, 0);
    assert_int_equal(ftg_unconfirmed(F), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_slow_api_few_threads, &fix),
        RT_FIX_TEST(test_blocking_sends_park_workers, &fix),
        RT_FIX_TEST(test_mark_slots_wait_on_loop, &fix),
        RT_FIX_TEST(test_drain_waits_for_sends, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
