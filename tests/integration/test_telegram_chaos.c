/*
 * Chaos for the real routerd with the telegram transport: long-poll and
 * webhook bursts salted with update ids anywhere in (and beyond) the 64-bit
 * range, a 429 longer than the send budget with a restart during the wait,
 * and a group upgraded to a supergroup mid-conversation while the allowlist,
 * the persona map and a /persona choice name only the old group. After each:
 * every accepted message answered exactly once, the process alive and
 * /healthz 200.
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

#define TOKEN "737373:AAchaosSecret-part_q"
#define HOOK "chaosHook-42_x"
#define OLD_GROUP -500
#define NEW_GROUP -1005005005005LL

static rt_fix *fx;
static ftg *F;
static const char *const env[] = {"TG_TOKEN=" TOKEN, "TG_HOOK=" HOOK, NULL};

static const char *const extreme[] = {"9223372036854775807",
                                      "9007199254740992",
                                      "-1",
                                      "18446744073709551616",
                                      "1e300",
                                      "-9223372036854775808",
                                      "4.5"};
#define NEXTREME (sizeof extreme / sizeof extreme[0])

static rt_fix_spec fix = {.fx = &fx, .tg_token = TOKEN, .tg = &F};

static void manifest(const char *transport_extra) {
    rt_fix_manifest(
        fx,
        "rate_limit_per_minute = 0\ndrain_timeout_s = 10\n"
        "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
        "throttle = off\ntyping = false\nretry_base_ms = 100\nretry_max_ms = 1000\n"
        "timeout = 1\nsend_retry_budget_s = 1\ngroup_mode = all\n"
        "allowlist = 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 77, %d\n%s"
        "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\n"
        "[backend.alt]\nplugin = mock\nprefix = \"alt: \"\n"
        "[persona.p]\nbackend = mock\nchats = *\nselectable = true\n"
        "[persona.alt]\nbackend = alt\nselectable = true\ndescription = the other one\n",
        ftg_base(F), OLD_GROUP, transport_extra);
}

static rt_proc *start_ready(void) {
    rt_proc *p = rt_fix_start(fx, env, 20000);
    assert_non_null(p);
    return p;
}

static void assert_ready(rt_proc *p) {
    assert_true(rt_wait_http(rt_fix_url(fx, "/healthz"), 200, 10000));
    assert_true(rt_wait_http(rt_fix_url(fx, "/livez"), 200, 10000));
    assert_int_equal(rt_wait(p, 0), -1); /* still running */
}

/* Delivered replies with exactly this text (and the chat of the last). */
static int replies(const char *text, int64_t *chat, long long *t_ms) {
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!r[i].text || strcmp(r[i].text, text)) continue;
        k++;
        if (chat) *chat = r[i].chat_id;
        if (t_ms) *t_ms = r[i].t_ms;
    }
    ftg_recs_free(r, n);
    return k;
}

static int wait_reply(const char *text, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    int k;
    while (!(k = replies(text, NULL, NULL)) && rt_now_ms() < end)
        rt_sleep_ms(20);
    return k;
}

#define BURST 200

static void check_burst(const char *prefix) {
    char want[64];
    snprintf(want, sizeof want, "echo: %s%d", prefix, BURST - 1);
    assert_int_equal(wait_reply(want, 60000), 1);
    rt_sleep_ms(1000);
    for (int i = 0; i < BURST; i++) {
        snprintf(want, sizeof want, "echo: %s%d", prefix, i);
        if (replies(want, NULL, NULL) != 1)
            fail_msg("%s answered %d times", want, replies(want, NULL, NULL));
    }
}

static void test_chaos_longpoll(void **state) {
    (void)state;
    manifest("");
    rt_proc *p = start_ready();

    /* 1. A burst over ten chats, salted with hostile update ids. */
    char text[64], payload[256];
    for (int i = 0; i < BURST; i++) {
        if (i % 25 == 0) {
            snprintf(payload, sizeof payload,
                     "\"message\":{\"message_id\":1,\"from\":{\"id\":11,\"is_bot\":false,"
                     "\"first_name\":\"X\"},\"chat\":{\"id\":11,\"type\":\"private\"},\"date\":1,"
                     "\"text\":\"hostile %d\"}",
                     i);
            ftg_add_with_id(F, extreme[(size_t)(i / 25) % NEXTREME], payload);
        }
        snprintf(text, sizeof text, "b%d", i);
        ftg_add_text(F, 11 + i % 10, text);
    }
    check_burst("b");
    assert_int_equal(wait_reply("echo: hostile 0", 0), 0);
    assert_ready(p);

    /* 2. A 429 longer than the send budget, and a restart during the
     * wait: delivered once, after the wait. */
    ftg_flood(F, 77, 8000);
    ftg_add_text(F, 77, "flooded");
    long long end = rt_now_ms() + 10000;
    while (ftg_count(F, "sendMessage", 0) == ftg_count(F, "sendMessage", 1) && rt_now_ms() < end)
        rt_sleep_ms(20); /* the first refusal */
    ftg_add_text(F, 12, "meanwhile");
    assert_int_equal(wait_reply("echo: meanwhile", 6000), 1);
    assert_int_equal(rt_fix_stop(fx, 20000), 0);
    assert_int_equal(replies("echo: flooded", NULL, NULL), 0);
    p = start_ready();
    assert_int_equal(wait_reply("echo: flooded", 25000), 1);
    long long t = 0;
    replies("echo: flooded", NULL, &t);
    assert_true(t >= ftg_flood_end(F));
    assert_ready(p);

    /* 3. The group is upgraded mid-conversation. The allowlist and the
     * /persona choice name only the old group. */
    ftg_msg g = {.chat_id = OLD_GROUP, .chat_type = "group", .user_id = 90, .text = "g1"};
    ftg_add_message(F, &g);
    assert_int_equal(wait_reply("echo: g1", 10000), 1);
    g.text = "/persona alt";
    ftg_add_message(F, &g);
    assert_int_equal(wait_reply("Persona switched to alt.", 10000), 1);
    snprintf(payload, sizeof payload,
             "\"message\":{\"message_id\":50,\"from\":{\"id\":90,\"is_bot\":false,"
             "\"first_name\":\"X\"},\"chat\":{\"id\":%d,\"type\":\"group\"},\"date\":1,"
             "\"migrate_to_chat_id\":%lld}",
             OLD_GROUP, (long long)NEW_GROUP);
    ftg_add_raw(F, payload);
    snprintf(payload, sizeof payload,
             "\"message\":{\"message_id\":1,\"from\":{\"id\":90,\"is_bot\":false,"
             "\"first_name\":\"X\"},\"chat\":{\"id\":%lld,\"type\":\"supergroup\"},\"date\":1,"
             "\"migrate_from_chat_id\":%d}",
             (long long)NEW_GROUP, OLD_GROUP);
    ftg_add_raw(F, payload);
    ftg_msg sg = {.chat_id = NEW_GROUP, .user_id = 90, .text = "g2"};
    ftg_add_message(F, &sg);
    assert_int_equal(wait_reply("alt: g2", 10000), 1);
    int64_t chat = 0;
    replies("alt: g2", &chat, NULL);
    assert_true(chat == NEW_GROUP);
    sg.text = "g3";
    ftg_add_message(F, &sg);
    assert_int_equal(wait_reply("alt: g3", 10000), 1);
    replies("alt: g3", &chat, NULL);
    assert_true(chat == NEW_GROUP);
    assert_non_null(strstr(rt_stderr(p), "was upgraded to supergroup"));
    assert_ready(p);

    assert_int_equal(rt_fix_stop(fx, 20000), 0);
    assert_null(strstr(rt_stderr(p), "AAchaosSecret"));
}

static long post(const char *url, const char *body) {
    const char *const h[] = {"Content-Type: application/json",
                             "X-Telegram-Bot-Api-Secret-Token: " HOOK, NULL};
    char *resp = NULL;
    long st = rt_http("POST", url, body, h, &resp);
    free(resp);
    return st;
}

static void test_chaos_webhook(void **state) {
    (void)state;
    manifest("mode = webhook\nsecret_token = ${TG_HOOK}\n");
    rt_proc *p = start_ready();
    char hook[128];
    snprintf(hook, sizeof hook, "%s", rt_fix_url(fx, "/telegram/tg"));

    char text[64], body[512];
    char *again[8] = {0};
    for (int i = 0; i < BURST; i++) {
        if (i % 25 == 0) {
            snprintf(body, sizeof body,
                     "{\"update_id\":%s,\"message\":{\"message_id\":1,\"from\":{\"id\":11,"
                     "\"is_bot\":false,\"first_name\":\"X\"},\"chat\":{\"id\":11,\"type\":"
                     "\"private\"},\"date\":1,\"text\":\"hostile %d\"}}",
                     extreme[(size_t)(i / 25) % NEXTREME], i);
            assert_int_equal(post(hook, body), 200);
        }
        snprintf(text, sizeof text, "w%d", i);
        ftg_msg msg = {.chat_id = 11 + i % 10, .text = text};
        char *u = ftg_build_update(F, &msg, NULL);
        long st;
        long long end = rt_now_ms() + 20000;
        /* Telegram retries until it gets a 200. */
        while ((st = post(hook, u)) != 200 && rt_now_ms() < end)
            rt_sleep_ms(50);
        assert_int_equal(st, 200);
        if (i % 25 == 7)
            again[i / 25] = u; /* delivered twice below, as Telegram may */
        else
            free(u);
    }
    for (int k = 0; k < 8; k++) {
        if (!again[k]) continue;
        assert_int_equal(post(hook, again[k]), 200);
        free(again[k]);
    }
    check_burst("w");
    assert_int_equal(wait_reply("echo: hostile 0", 0), 0);
    assert_ready(p);

    assert_int_equal(rt_fix_stop(fx, 20000), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_chaos_longpoll, &fix),
        RT_FIX_TEST(test_chaos_webhook, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
