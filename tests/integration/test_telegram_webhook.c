/*
 * The real routerd with the telegram transport in webhook mode: setWebhook
 * at start, the secret header checked (401, nothing routed), replies to
 * accepted updates, 429/503 under back-pressure and a retried update
 * processed exactly once.
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

#define TOKEN "626262:AAhookSecret-part_z"
#define HOOK "hookSecret-123_abc"

static rt_fix *fx;
static ftg *F;
static const char *const env[] = {"TG_TOKEN=" TOKEN, "TG_HOOK=" HOOK, NULL};

static rt_fix_spec fix = {.fx = &fx, .tg_token = TOKEN, .tg = &F};

static int replies(const char *text) {
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += r[i].text && !strcmp(r[i].text, text);
    ftg_recs_free(r, n);
    return k;
}

static long post(const char *url, const char *secret, const char *body) {
    char hdr[128] = "";
    if (secret) snprintf(hdr, sizeof hdr, "X-Telegram-Bot-Api-Secret-Token: %s", secret);
    const char *const h[] = {"Content-Type: application/json", secret ? hdr : NULL, NULL};
    char *resp = NULL;
    long st = rt_http("POST", url, body, h, &resp);
    free(resp);
    return st;
}

static char *update(int64_t chat, const char *text) {
    ftg_msg m = {.chat_id = chat, .text = text};
    return ftg_build_update(F, &m, NULL);
}

static void test_webhook_end_to_end(void **state) {
    (void)state;
    /* One worker, one queue slot and a slow backend make back-pressure
     * easy to reach. */
    rt_fix_manifest(
        fx,
        "rate_limit_per_minute = 0\nqueue_depth = 1\nworkers = 1\ndrain_timeout_s = 10\n"
        "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
        "mode = webhook\nsecret_token = ${TG_HOOK}\n"
        "webhook_url = https://bot.example.invalid/hook\nthrottle = off\ntyping = false\n"
        "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\nlatency_ms = 700\n"
        "[persona.p]\nbackend = mock\nchats = *\n",
        ftg_base(F));
    rt_proc *p = rt_fix_start(fx, env, 15000);
    assert_non_null(p);
    const char *hook = rt_fix_url(fx, "/telegram/tg");
    char wurl[256], wsec[64];
    ftg_webhook_info(F, wurl, sizeof wurl, wsec, sizeof wsec);
    assert_string_equal(wurl, "https://bot.example.invalid/hook");
    assert_string_equal(wsec, HOOK);

    /* Wrong or missing secret: 401 and nothing routed. */
    char *u1 = update(21, "w1");
    assert_int_equal(post(hook, "not-the-secret", u1), 401);
    assert_int_equal(post(hook, NULL, u1), 401);
    rt_sleep_ms(1000);
    assert_int_equal(ftg_count(F, "sendMessage", 0), 0);

    assert_int_equal(post(hook, HOOK, u1), 200);
    long long end = rt_now_ms() + 5000;
    while (!replies("echo: w1") && rt_now_ms() < end)
        rt_sleep_ms(20);
    assert_int_equal(replies("echo: w1"), 1);

    /* One in flight, one queued, then the router is full. */
    char *u[4] = {update(22, "w2"), update(23, "w3"), update(24, "w4"), update(25, "w5")};
    assert_int_equal(post(hook, HOOK, u[0]), 200);
    rt_sleep_ms(100);
    assert_int_equal(post(hook, HOOK, u[1]), 200);
    long s4 = post(hook, HOOK, u[2]);
    long s5 = post(hook, HOOK, u[3]);
    assert_true(s4 == 429 || s4 == 503);
    assert_true(s5 == 429 || s5 == 503);
    /* Telegram retries until it gets a 200. */
    int done4 = 0, done5 = 0;
    end = rt_now_ms() + 15000;
    while ((!done4 || !done5) && rt_now_ms() < end) {
        rt_sleep_ms(200);
        if (!done4) done4 = post(hook, HOOK, u[2]) == 200;
        if (!done5) done5 = post(hook, HOOK, u[3]) == 200;
    }
    assert_true(done4 && done5);
    /* And once more, as Telegram may: still only one reply each. */
    assert_int_equal(post(hook, HOOK, u[2]), 200);
    end = rt_now_ms() + 10000;
    while (!(replies("echo: w5") && replies("echo: w4")) && rt_now_ms() < end)
        rt_sleep_ms(50);
    rt_sleep_ms(1000);
    assert_int_equal(replies("echo: w2"), 1);
    assert_int_equal(replies("echo: w3"), 1);
    assert_int_equal(replies("echo: w4"), 1);
    assert_int_equal(replies("echo: w5"), 1);
    assert_int_equal(ftg_count(F, "getUpdates", 0), 0);

    assert_int_equal(rt_fix_stop(fx, 20000), 0);
    assert_null(strstr(rt_stderr(p), HOOK));
    assert_null(strstr(rt_stderr(p), "AAhookSecret"));
    free(u1);
    for (int i = 0; i < 4; i++)
        free(u[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_webhook_end_to_end, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
