/*
 * In-process tests of the telegram transport in webhook mode: secret
 * check, dedupe, back-pressure answers, late older updates, concurrent
 * deliveries, restart, setWebhook / deleteWebhook.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
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
#define HOOK_SECRET "hook-Secret_42"
#define PATH "/telegram/main"

static ftg *F;
static void *S;

static int setup(void **state) {
    (void)state;
    F = ftg_start(TOKEN);
    assert_non_null(F);
    th_reset();
    th_cfg("token", TOKEN);
    th_cfg("api_base", ftg_base(F));
    th_cfg("mode", "webhook");
    th_cfg("secret_token", HOOK_SECRET);
    th_cfg("webhook_url", "https://bot.example.invalid/tg");
    th_cfg("throttle", "off");
    th_cfg("typing", "false");
    th_cfg("retry_base_ms", "20");
    th_cfg("retry_max_ms", "200");
    S = NULL;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    th_shutdown(S);
    S = NULL;
    assert_false(th_leaked(SECRET));
    assert_false(th_leaked(HOOK_SECRET));
    ftg_stop(F);
    F = NULL;
    return 0;
}

static void launch(void) {
    rd_status st;
    rd_error err = {0};
    S = th_launch(&st, &err);
    if (!S) fprintf(stderr, "launch failed: %d %s\n", st, err.msg);
    assert_non_null(S);
    long long end = th_now_ms() + 3000;
    while (!th_ready() && th_now_ms() < end)
        th_sleep_ms(5);
    assert_true(th_ready());
}

static char *update(int64_t chat, const char *text, int64_t *id) {
    ftg_msg m = {.chat_id = chat, .text = text};
    return ftg_build_update(F, &m, id);
}

static void test_secret_and_setwebhook(void **state) {
    (void)state;
    launch();
    char url[256], sec[64];
    ftg_webhook_info(F, url, sizeof url, sec, sizeof sec);
    assert_string_equal(url, "https://bot.example.invalid/tg");
    assert_string_equal(sec, HOOK_SECRET);
    ftg_rec *r;
    size_t n = ftg_records(F, "setWebhook", 1, &r);
    assert_int_equal(n, 1);
    assert_non_null(strstr(r[0].body, "\"max_connections\":40"));
    assert_non_null(strstr(r[0].body, "\"drop_pending_updates\":false"));
    assert_non_null(strstr(
        r[0].body, "\"allowed_updates\":[\"message\",\"edited_message\",\"callback_query\"]"));
    ftg_recs_free(r, n);

    int64_t id;
    char *u = update(42, "hello hook", &id);
    assert_int_equal(th_http_post(PATH, "wrong-secret", u, NULL), 401);
    assert_int_equal(th_http_post(PATH, NULL, u, NULL), 401);
    assert_int_equal(th_http_post(PATH, HOOK_SECRET "x", u, NULL), 401);
    assert_int_equal(th_submitted(), 0);
    assert_int_equal(th_http_post(PATH, HOOK_SECRET, u, NULL), 200);
    assert_int_equal(th_submitted(), 1);
    /* Telegram re-sending the same update: answered, not routed again. */
    assert_int_equal(th_http_post(PATH, HOOK_SECRET, u, NULL), 200);
    assert_int_equal(th_submitted(), 1);
    free(u);
    th_msg *m;
    n = th_msgs(&m, 0);
    assert_int_equal(m[0].id, id);
    assert_string_equal(m[0].text, "hello hook");
    th_msgs_free(m, n);
    assert_int_equal(th_http_post(PATH, HOOK_SECRET, "not json", NULL), 400);
    assert_int_equal(th_http_post(PATH, HOOK_SECRET, "{\"message\":{}}", NULL), 400);
    /* The host answered the three 401s before the plugin saw a byte. */
    assert_int_equal(th_metric("routerd_telegram_webhook_requests_total", "401", NULL), 0);
    /* Long polling is not used in webhook mode. */
    assert_int_equal(ftg_count(F, "getUpdates", 0), 0);
}

static void test_backpressure(void **state) {
    (void)state;
    launch();
    th_set_full(1);
    int64_t a_id, b_id;
    char *a = update(1, "first", &a_id);
    char *b = update(2, "second", &b_id);
    int ra = 0;
    /* Journaled but not yet accepted by the core: Telegram must retry. */
    int st = th_http_post(PATH, HOOK_SECRET, a, &ra);
    assert_true(st == 429 || st == 503);
    assert_true(ra >= 1);
    st = th_http_post(PATH, HOOK_SECRET, b, &ra);
    assert_true(st == 429 || st == 503);
    assert_int_equal(th_submitted(), 0);
    th_set_full(0);
    /* The journaled one goes in by itself. */
    assert_int_equal(th_wait_submitted(1, 2000), 1);
    /* Telegram's retries: each update processed exactly once. */
    assert_int_equal(th_http_post(PATH, HOOK_SECRET, a, NULL), 200);
    assert_int_equal(th_http_post(PATH, HOOK_SECRET, b, NULL), 200);
    assert_int_equal(th_http_post(PATH, HOOK_SECRET, b, NULL), 200);
    assert_int_equal(th_submitted(), 2);
    th_msg *m;
    size_t n = th_msgs(&m, 0);
    assert_string_equal(m[0].text, "first");
    assert_string_equal(m[1].text, "second");
    th_msgs_free(m, n);
    free(a);
    free(b);
}

static void test_late_older_update(void **state) {
    (void)state;
    launch();
    int64_t old_id, new_id;
    char *older = update(5, "older", &old_id);
    char *newer = update(5, "newer", &new_id);
    assert_int_equal(th_http_post(PATH, HOOK_SECRET, newer, NULL), 200);
    assert_int_equal(th_http_post(PATH, HOOK_SECRET, older, NULL), 200);
    th_msg *m;
    size_t n = th_msgs(&m, 0);
    assert_int_equal(n, 2);
    /* Processed, not dropped, in arrival order with ids still rising. */
    assert_int_equal(m[0].id, new_id);
    assert_string_equal(m[1].text, "older");
    assert_int_equal(m[1].id, new_id + 1);
    th_msgs_free(m, n);
    assert_int_equal(th_violations(), 0);
    free(older);
    free(newer);
}

typedef struct poster {
    char **bodies;
    int n;
    int bad;
} poster;

static void *post_all(void *arg) {
    poster *p = arg;
    for (int i = 0; i < p->n; i++) {
        int st, tries = 0;
        /* Like Telegram: retry until 200. */
        while ((st = th_http_post(PATH, HOOK_SECRET, p->bodies[i], NULL)) != 200 && tries++ < 200)
            th_sleep_ms(5);
        if (st != 200) p->bad++;
    }
    return NULL;
}

static void test_concurrent(void **state) {
    (void)state;
    launch();
    th_echo_start(S, "echo: ");
    enum { T = 8, N = 40 };
    poster p[T];
    pthread_t th[T];
    for (int t = 0; t < T; t++) {
        p[t].n = N;
        p[t].bad = 0;
        p[t].bodies = calloc(N, sizeof *p[t].bodies);
        for (int i = 0; i < N; i++) {
            char text[32];
            snprintf(text, sizeof text, "t%d-%d", t, i);
            p[t].bodies[i] = update(100 + t, text, NULL);
        }
    }
    for (int t = 0; t < T; t++)
        pthread_create(&th[t], NULL, post_all, &p[t]);
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(th_submitted(), T * N);
    assert_int_equal(th_violations(), 0);
    assert_int_equal(ftg_wait_count(F, "sendMessage", T * N, 10000), T * N);
    /* Per chat, in the order posted. */
    th_msg *m;
    size_t n = th_msgs(&m, 0);
    int next[T] = {0};
    for (size_t i = 0; i < n; i++) {
        int t, k;
        assert_int_equal(sscanf(m[i].text, "t%d-%d", &t, &k), 2);
        assert_int_equal(k, next[t]);
        next[t]++;
    }
    th_msgs_free(m, n);
    for (int t = 0; t < T; t++) {
        assert_int_equal(p[t].bad, 0);
        for (int i = 0; i < N; i++)
            free(p[t].bodies[i]);
        free(p[t].bodies);
    }
    long long end = th_now_ms() + 3000;
    while (th_kv_count("j/") && th_now_ms() < end)
        th_sleep_ms(10);
    assert_int_equal(th_kv_count("j/"), 0);
}

static void test_restart_and_retry(void **state) {
    (void)state;
    launch();
    th_set_full(1);
    int64_t id;
    char *u = update(9, "kept", &id);
    int st = th_http_post(PATH, HOOK_SECRET, u, NULL);
    assert_true(st == 429 || st == 503);
    th_shutdown(S);
    S = NULL;
    /* A new process: the journaled update goes first... */
    th_new_run();
    launch();
    assert_int_equal(th_wait_submitted(1, 2000), 1);
    /* ...and Telegram's retry of it is a duplicate. */
    assert_int_equal(th_http_post(PATH, HOOK_SECRET, u, NULL), 200);
    th_sleep_ms(200);
    assert_int_equal(th_submitted(), 1);
    free(u);
}

static void test_delete_on_stop_and_config(void **state) {
    (void)state;
    th_cfg("delete_webhook_on_stop", "true");
    th_cfg("webhook_path", "/hooks/tg");
    launch();
    int64_t id;
    char *u = update(9, "custom path", &id);
    assert_int_equal(th_http_post("/hooks/tg", HOOK_SECRET, u, NULL), 200);
    free(u);
    th_shutdown(S);
    S = NULL;
    assert_int_equal(ftg_count(F, "deleteWebhook", 1), 1);
    char url[256];
    ftg_webhook_info(F, url, sizeof url, NULL, 0);
    assert_string_equal(url, "");

    /* Webhook mode without a secret is refused at start. */
    th_reset();
    th_cfg("token", TOKEN);
    th_cfg("api_base", ftg_base(F));
    th_cfg("mode", "webhook");
    rd_status st;
    rd_error err = {0};
    assert_null(th_launch(&st, &err));
    assert_int_equal(st, RD_E_CONFIG);
    assert_non_null(strstr(err.msg, "secret_token"));
    th_cfg("secret_token", "bad secret!");
    assert_null(th_launch(&st, &err));
    assert_int_equal(st, RD_E_CONFIG);
    /* Telegram refusing setWebhook (bad URL, ...) is a configuration error. */
    th_cfg("secret_token", HOOK_SECRET);
    th_cfg("webhook_url", "https://bot.example.invalid/tg");
    ftg_fail(F, "setWebhook", FTG_FAULT_403, 0, 1);
    memset(&err, 0, sizeof err);
    assert_null(th_launch(&st, &err));
    assert_int_equal(st, RD_E_CONFIG);
    assert_non_null(strstr(err.msg, "setWebhook"));
}

static void test_longpoll_removes_webhook(void **state) {
    (void)state;
    /* A webhook left behind makes getUpdates answer 409; longpoll mode
     * deletes it at start. */
    launch();
    th_shutdown(S);
    S = NULL;
    char url[256];
    ftg_webhook_info(F, url, sizeof url, NULL, 0);
    assert_string_not_equal(url, "");
    th_cfg("mode", "longpoll");
    th_new_run();
    launch();
    ftg_add_text(F, 3, "via polling");
    assert_int_equal(th_wait_submitted(1, 3000), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_secret_and_setwebhook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_older_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_and_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_on_stop_and_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_longpoll_removes_webhook, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
