/* Token bucket: capacity, refill, one notice per exhaustion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"

/* Any non-zero start: monotonic clocks never read 0 in practice. */
#define T0 1000000

static void capacity_then_notice_once(void **state) {
    (void)state;
    bucket b = {0};
    for (int i = 0; i < 5; i++)
        assert_int_equal(bucket_take(&b, 5, T0), 1);
    assert_int_equal(bucket_take(&b, 5, T0), 0); /* first refusal: send the notice */
    for (int i = 0; i < 20; i++)
        assert_int_equal(bucket_take(&b, 5, T0 + i), -1); /* silent afterwards */
}

static void refill_over_time(void **state) {
    (void)state;
    bucket b = {0};
    for (int i = 0; i < 5; i++)
        assert_int_equal(bucket_take(&b, 5, T0), 1);
    assert_int_equal(bucket_take(&b, 5, T0), 0);
    /* 5 per minute: one token every 12 s. Half a token is not enough. */
    assert_int_equal(bucket_take(&b, 5, T0 + 6000), -1);
    assert_int_equal(bucket_take(&b, 5, T0 + 11999), -1);
    assert_int_equal(bucket_take(&b, 5, T0 + 12000), 1);
    /* Exhausted again: a new episode gets its own notice. */
    assert_int_equal(bucket_take(&b, 5, T0 + 12000), 0);
    assert_int_equal(bucket_take(&b, 5, T0 + 12001), -1);
    /* Two more tokens 24 s later. */
    assert_int_equal(bucket_take(&b, 5, T0 + 36000), 1);
    assert_int_equal(bucket_take(&b, 5, T0 + 36000), 1);
    assert_int_equal(bucket_take(&b, 5, T0 + 36000), 0);
}

static void fractional_refills_accumulate(void **state) {
    (void)state;
    bucket b = {0};
    assert_int_equal(bucket_take(&b, 1, T0), 1);
    assert_int_equal(bucket_take(&b, 1, T0), 0);
    /* Polled every second, the fractions add up to one token at 60 s. */
    for (int s = 1; s < 60; s++)
        assert_int_equal(bucket_take(&b, 1, T0 + s * 1000), -1);
    assert_int_equal(bucket_take(&b, 1, T0 + 60000), 1);
}

static void refill_is_capped(void **state) {
    (void)state;
    bucket b = {0};
    assert_int_equal(bucket_take(&b, 3, T0), 1);
    /* An hour idle gives back the capacity, not 180 tokens. */
    int64_t t = T0 + 3600 * 1000;
    for (int i = 0; i < 3; i++)
        assert_int_equal(bucket_take(&b, 3, t), 1);
    assert_int_equal(bucket_take(&b, 3, t), 0);
}

static void disabled_always_allows(void **state) {
    (void)state;
    bucket b = {0};
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(bucket_take(&b, 0, T0), 1);
        assert_int_equal(bucket_take(&b, -1, T0), 1);
    }
    assert_true(bucket_full(&b, 0, T0));
    assert_true(bucket_full(&b, -5, T0));
}

static void full_tracks_tokens(void **state) {
    (void)state;
    bucket b = {0};
    assert_true(bucket_full(&b, 5, T0)); /* never used */
    assert_int_equal(bucket_take(&b, 5, T0), 1);
    assert_false(bucket_full(&b, 5, T0));
    assert_false(bucket_full(&b, 5, T0 + 11999));
    assert_true(bucket_full(&b, 5, T0 + 12000));
    /* bucket_full does not consume or refill. */
    assert_int_equal(bucket_take(&b, 5, T0 + 1), 1);
    assert_false(bucket_full(&b, 5, T0 + 12000));
    assert_true(bucket_full(&b, 5, T0 + 24001));
}

static void high_rate(void **state) {
    (void)state;
    bucket b = {0};
    int allowed = 0;
    /* 6000 per minute = 100 per second; one take per ms for 10 s. */
    for (int ms = 0; ms < 10000; ms++)
        allowed += bucket_take(&b, 6000, T0 + ms) == 1;
    /* The initial burst of 6000 plus about 10 s of refill (1000). */
    assert_in_range(allowed, 6990, 7000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(capacity_then_notice_once),
        cmocka_unit_test(refill_over_time),
        cmocka_unit_test(fractional_refills_accumulate),
        cmocka_unit_test(refill_is_capped),
        cmocka_unit_test(disabled_always_allows),
        cmocka_unit_test(full_tracks_tokens),
        cmocka_unit_test(high_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
