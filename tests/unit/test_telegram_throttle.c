/* Unit tests: outbound pacing (per chat, per group, global) and the map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "telegram_throttle.h"

static void test_per_chat(void **state) {
    (void)state;
    tg_throttle_cfg c = {.chat_interval_ms = 1000, .group_per_minute = 0, .global_per_s = 0};
    tg_throttle *t = tg_throttle_new(&c);
    assert_int_equal(tg_throttle_chat(t, 1, 0), 0);
    assert_int_equal(tg_throttle_chat(t, 1, 0), 1000);
    assert_int_equal(tg_throttle_chat(t, 1, 10), 2000);
    /* Another chat is not held up by chat 1's queue. */
    assert_int_equal(tg_throttle_chat(t, 2, 0), 0);
    /* Time passing frees the slot. */
    assert_int_equal(tg_throttle_chat(t, 1, 5000), 5000);
    assert_int_equal(tg_throttle_chat_peek(t, 1, 5100), 6000);
    assert_int_equal(tg_throttle_chat_peek(t, 1, 5100), 6000); /* peek does not reserve */
    tg_throttle_free(t);
}

static void test_group_window(void **state) {
    (void)state;
    tg_throttle_cfg c = {.chat_interval_ms = 0, .group_per_minute = 20, .global_per_s = 0};
    tg_throttle *t = tg_throttle_new(&c);
    for (int i = 0; i < 20; i++)
        assert_int_equal(tg_throttle_chat(t, -100, 100), 100);
    /* The 21st waits until the first leaves the 60 s window. */
    assert_int_equal(tg_throttle_chat(t, -100, 200), 60100);
    /* Private chats have no per-minute cap. */
    for (int i = 0; i < 30; i++)
        assert_int_equal(tg_throttle_chat(t, 7, 100), 100);
    tg_throttle_free(t);

    tg_throttle_cfg d = {.chat_interval_ms = 1000, .group_per_minute = 20, .global_per_s = 0};
    t = tg_throttle_new(&d);
    int64_t last = 0;
    for (int i = 0; i < 20; i++)
        last = tg_throttle_chat(t, -5, 0);
    assert_int_equal(last, 19000);
    /* In any 60 s window at most 20. */
    assert_int_equal(tg_throttle_chat(t, -5, 0), 60000);
    assert_int_equal(tg_throttle_chat(t, -5, 0), 61000);
    tg_throttle_free(t);
}

static void test_global_bucket(void **state) {
    (void)state;
    tg_throttle_cfg c = {.chat_interval_ms = 0, .group_per_minute = 0, .global_per_s = 30};
    tg_throttle *t = tg_throttle_new(&c);
    for (int i = 0; i < 30; i++)
        assert_int_equal(tg_throttle_global(t, 0), 0);
    /* Then one every 1/30 s. */
    int64_t a = tg_throttle_global(t, 0);
    int64_t b = tg_throttle_global(t, 0);
    assert_true(a >= 33 && a <= 35);
    assert_true(b - a >= 32 && b - a <= 35);
    int64_t last = 0;
    for (int i = 0; i < 28; i++)
        last = tg_throttle_global(t, 0);
    /* 60 sends from a standing start take about one second. */
    assert_true(last >= 990 && last <= 1010);
    /* After a quiet second the bucket is full again. */
    assert_int_equal(tg_throttle_global(t, 5000), 5000);
    tg_throttle_free(t);

    tg_throttle_cfg off = {0};
    t = tg_throttle_new(&off);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(tg_throttle_global(t, 7), 7);
        assert_int_equal(tg_throttle_chat(t, -1, 7), 7);
    }
    tg_throttle_free(t);
}

static void test_hold(void **state) {
    (void)state;
    tg_throttle_cfg off = {0};
    tg_throttle *t = tg_throttle_new(&off);
    tg_throttle_hold(t, 42, 2000);
    assert_int_equal(tg_throttle_chat(t, 42, 0), 2000);
    assert_int_equal(tg_throttle_chat(t, 43, 0), 0);
    tg_throttle_hold(t, 42, 1000); /* an earlier hold does not shorten it */
    assert_int_equal(tg_throttle_chat_peek(t, 42, 0), 2000);
    tg_throttle_free(t);
}

static void test_gc(void **state) {
    (void)state;
    tg_throttle_cfg c = {.chat_interval_ms = 1000, .group_per_minute = 20, .global_per_s = 0};
    tg_throttle *t = tg_throttle_new(&c);
    for (int64_t i = 1; i <= 5000; i++)
        tg_throttle_chat(t, i % 2 ? i : -i, 0);
    assert_true(tg_throttle_chats(t) <= 5000);
    tg_throttle_gc(t, 1000000);
    assert_int_equal(tg_throttle_chats(t), 0);
    /* Still correct after collection. */
    assert_int_equal(tg_throttle_chat(t, 3, 1000000), 1000000);
    assert_int_equal(tg_throttle_chat(t, 3, 1000000), 1001000);
    tg_throttle_free(t);
}

static int drop_even(void *arg, int64_t key, void *val) {
    (void)arg, (void)val;
    return key % 2 == 0;
}

static void test_map(void **state) {
    (void)state;
    tg_map *m = tg_map_new();
    for (intptr_t i = 1; i <= 10000; i++)
        assert_int_equal(tg_map_put(m, (int64_t)i * 7919 - 5000, (void *)i), 0);
    assert_int_equal(tg_map_count(m), 10000);
    for (intptr_t i = 1; i <= 10000; i++)
        assert_ptr_equal(tg_map_get(m, (int64_t)i * 7919 - 5000), (void *)i);
    assert_null(tg_map_get(m, 3));
    assert_ptr_equal(tg_map_del(m, 7919 - 5000), (void *)1);
    assert_null(tg_map_del(m, 7919 - 5000));
    assert_int_equal(tg_map_count(m), 9999);
    tg_map_put(m, 2 * 7919 - 5000, (void *)99);
    assert_ptr_equal(tg_map_get(m, 2 * 7919 - 5000), (void *)99);
    tg_map_sweep(m, drop_even, NULL);
    assert_int_equal(tg_map_count(m), 4999);             /* odd keys, minus the one deleted */
    assert_null(tg_map_get(m, 2 * 7919 - 5000 + 0 * 1)); /* 10838 is even */
    tg_map_put(m, INT64_MIN, (void *)5);
    assert_ptr_equal(tg_map_get(m, INT64_MIN), (void *)5);
    tg_map_free(m, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_chat),
        cmocka_unit_test(test_group_window),
        cmocka_unit_test(test_global_bucket),
        cmocka_unit_test(test_hold),
        cmocka_unit_test(test_gc),
        cmocka_unit_test(test_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
