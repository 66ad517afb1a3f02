/*
 * The real routerd with the telegram transport against a misbehaving fake
 * Bot API server: 429 with retry_after, 5xx, dropped connections,
 * malformed and truncated JSON, 409 conflicts, a 10,000-character reply,
 * a bad token at start, and a SIGTERM that must not wait out a long poll.
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

#define TOKEN "515151:AAfaultSecret-part_y"
#define SECRET "AAfaultSecret-part_y"

static rt_fix *fx;
static ftg *F;
static const char *const env[] = {"TG_TOKEN=" TOKEN, NULL};

static rt_fix_spec fix = {.fx = &fx, .tg_token = TOKEN, .tg = &F};

static void manifest(const char *extra) {
    rt_fix_manifest(fx,
                    "rate_limit_per_minute = 0\ndrain_timeout_s = 10\n"
                    "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                    "throttle = off\ntyping = false\nretry_base_ms = 100\nretry_max_ms = 1000\n%s"
                    "[backend.mock]\nplugin = mock\nprefix = \"echo: \"\n"
                    "[persona.p]\nbackend = mock\nchats = *\n",
                    ftg_base(F), extra ? extra : "");
}

/* Waits for a delivered reply with exactly this text; returns how many. */
static int wait_reply(const char *text, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    for (;;) {
        ftg_rec *r;
        size_t n = ftg_records(F, "sendMessage", 1, &r);
        int k = 0;
        for (size_t i = 0; i < n; i++)
            k += r[i].text && !strcmp(r[i].text, text);
        ftg_recs_free(r, n);
        if (k || rt_now_ms() >= end) return k;
        rt_sleep_ms(20);
    }
}

static rt_proc *start_ready(void) {
    rt_proc *p = rt_fix_start(fx, env, 15000);
    assert_non_null(p);
    return p;
}

static void test_faults_survived(void **state) {
    (void)state;
    /* format = plain: the parts must join to the exact reply bytes. */
    manifest("timeout = 1\nformat = plain\n");
    rt_proc *p = start_ready();

    /* 429 with retry_after = 2: waits at least 2 s, then delivers. */
    ftg_fail(F, "sendMessage", FTG_FAULT_429, 2, 1);
    ftg_add_text(F, 11, "a429");
    assert_int_equal(wait_reply("echo: a429", 10000), 1);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 0, &r);
    long long t429 = -1, tok = -1;
    for (size_t i = 0; i < n; i++) {
        if (r[i].status == 429) t429 = r[i].t_ms;
        if (r[i].status == 200 && r[i].text && !strcmp(r[i].text, "echo: a429")) tok = r[i].t_ms;
    }
    ftg_recs_free(r, n);
    assert_true(t429 >= 0 && tok >= 0);
    assert_true(tok - t429 >= 2000);

    /* 500s and dropped connections: retried, delivered once. */
    ftg_fail(F, "sendMessage", FTG_FAULT_500, 0, 2);
    ftg_fail(F, "sendMessage", FTG_FAULT_DROP, 0, 2);
    ftg_add_text(F, 12, "b5xx");
    assert_int_equal(wait_reply("echo: b5xx", 15000), 1);
    rt_sleep_ms(300);
    assert_int_equal(wait_reply("echo: b5xx", 0), 1);

    /* Malformed, truncated and cut getUpdates answers, a proxy's 502:
     * logged, no crash, the loop goes on. */
    size_t polls0 = ftg_count(F, "getUpdates", 0);
    ftg_fail(F, "getUpdates", FTG_FAULT_MALFORMED, 0, 1);
    ftg_fail(F, "getUpdates", FTG_FAULT_TRUNCATED, 0, 1);
    ftg_fail(F, "getUpdates", FTG_FAULT_CUT, 0, 1);
    ftg_fail(F, "getUpdates", FTG_FAULT_502_HTML, 0, 1);
    long long end = rt_now_ms() + 15000;
    while (ftg_count(F, "getUpdates", 0) < polls0 + 6 && rt_now_ms() < end)
        rt_sleep_ms(20);
    assert_true(ftg_count(F, "getUpdates", 0) >= polls0 + 6);
    ftg_add_text(F, 13, "cjson");
    assert_int_equal(wait_reply("echo: cjson", 10000), 1);
    assert_true(rt_wait_stderr(p, "not Bot API JSON", 1000));
    assert_true(rt_wait_stderr(p, "HTTP 502", 1000));

    /* 409: reported in words, retried, not fatal. */
    ftg_fail(F, "getUpdates", FTG_FAULT_409, 0, 2);
    end = rt_now_ms() + 10000;
    polls0 = ftg_count(F, "getUpdates", 0);
    while (ftg_count(F, "getUpdates", 0) < polls0 + 3 && rt_now_ms() < end)
        rt_sleep_ms(20);
    ftg_add_text(F, 14, "d409");
    assert_int_equal(wait_reply("echo: d409", 15000), 1);
    assert_true(rt_wait_stderr(p, "Another process is polling", 1000));

    /* A 10,000-character reply with emoji and CJK: several messages whose
     * concatenation is the original, each within the limit. */
    size_t cap = 64 * 1024, len = 0, chars = 0;
    char *text = malloc(cap);
    static const char *const unit[] = {"Emoji 😀🎉👨‍👩‍👧 and ",
                                       "中文字符和日本語のテキスト。", "plain words here ", "\n\n"};
    static const size_t unit_chars[] = {18, 14, 17, 2};
    for (size_t k = 0; chars < 10000; k++) {
        strcpy(text + len, unit[k % 4]);
        len += strlen(unit[k % 4]);
        chars += unit_chars[k % 4];
    }
    ftg_add_text(F, 15, text);
    long long t0 = rt_now_ms();
    size_t parts = 0, total = 0;
    char *joined = calloc(1, len + 64);
    while (rt_now_ms() - t0 < 10000) {
        n = ftg_records(F, "sendMessage", 1, &r);
        parts = 0;
        joined[0] = 0;
        for (size_t i = 0; i < n; i++) {
            if (r[i].chat_id != 15) continue;
            parts++;
            strcat(joined, r[i].text);
            assert_true(strlen(r[i].text) > 0);
        }
        ftg_recs_free(r, n);
        total = strlen(joined);
        if (total >= len + 6) break;
        rt_sleep_ms(50);
    }
    assert_true(parts >= 3);
    assert_int_equal(total, len + 6);
    assert_memory_equal(joined, "echo: ", 6);
    assert_memory_equal(joined + 6, text, len);
    free(joined);
    free(text);

    assert_int_equal(rt_fix_stop(fx, 20000), 0);
    assert_null(strstr(rt_stderr(p), SECRET));
}

static void test_bad_token_exits_78(void **state) {
    (void)state;
    manifest(NULL);
    static const char *const bad[] = {"TG_TOKEN=515151:WrongSecretValue", NULL};
    rt_proc *p = rt_fix_start(fx, bad, 0);
    assert_int_equal(rt_wait(p, 20000), 78);
    assert_non_null(strstr(rt_stderr(p), "401"));
    assert_null(strstr(rt_stderr(p), "WrongSecretValue"));
}

static void test_sigterm_cuts_long_poll(void **state) {
    (void)state;
    manifest("timeout = 30\n");
    start_ready();
    long long end = rt_now_ms() + 5000;
    while (ftg_polls_active(F) < 1 && rt_now_ms() < end)
        rt_sleep_ms(10);
    assert_int_equal(ftg_polls_active(F), 1);
    rt_sleep_ms(300);
    long long t0 = rt_now_ms();
    assert_int_equal(rt_fix_stop(fx, 10000), 0);
    /* Not 30 s: the poll is cancelled at once. */
    assert_true(rt_now_ms() - t0 < 2500);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_faults_survived, &fix),
        RT_FIX_TEST(test_bad_token_exits_78, &fix),
        RT_FIX_TEST(test_sigterm_cuts_long_poll, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
