/* Handled-watermark: ordering, duplicates, gaps, removal, ring wraparound
 * and a large randomized run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"

#include <stdlib.h>

static watermark w;

static int setup(void **state) {
    (void)state;
    wm_init(&w);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    wm_free(&w);
    return 0;
}

static void fresh(void **state) {
    (void)state;
    assert_int_equal(wm_get(&w), -1);
    assert_int_equal(wm_pending(&w), 0);
    assert_false(wm_done(&w, 1)); /* unknown id */
    wm_remove(&w, 1);             /* harmless */
    assert_int_equal(wm_get(&w), -1);
}

static void in_order(void **state) {
    (void)state;
    for (int64_t id = 1; id <= 5; id++)
        assert_int_equal(wm_add(&w, id), 0);
    assert_int_equal(wm_pending(&w), 5);
    for (int64_t id = 1; id <= 5; id++) {
        assert_true(wm_done(&w, id));
        assert_int_equal(wm_get(&w), id);
        assert_int_equal(wm_pending(&w), 5 - (size_t)id);
    }
}

static void out_of_order(void **state) {
    (void)state;
    for (int64_t id = 1; id <= 5; id++)
        wm_add(&w, id);
    assert_false(wm_done(&w, 3));
    assert_int_equal(wm_get(&w), -1);
    assert_false(wm_done(&w, 2));
    assert_int_equal(wm_get(&w), -1);
    assert_true(wm_done(&w, 1)); /* 1, 2, 3 all handled now */
    assert_int_equal(wm_get(&w), 3);
    assert_int_equal(wm_pending(&w), 2);
    assert_false(wm_done(&w, 5));
    assert_int_equal(wm_get(&w), 3);
    assert_true(wm_done(&w, 4));
    assert_int_equal(wm_get(&w), 5);
    assert_int_equal(wm_pending(&w), 0);
}

static void first_id_zero(void **state) {
    (void)state;
    assert_int_equal(wm_add(&w, 0), 0);
    assert_true(wm_done(&w, 0));
    assert_int_equal(wm_get(&w), 0);
    assert_int_equal(wm_add(&w, 0), 1);
}

static void duplicates(void **state) {
    (void)state;
    assert_int_equal(wm_add(&w, 1), 0);
    assert_int_equal(wm_add(&w, 1), 1); /* pending */
    assert_int_equal(wm_add(&w, 2), 0);
    assert_false(wm_done(&w, 2));
    assert_int_equal(wm_add(&w, 2), 1); /* handled but held by 1 */
    assert_true(wm_done(&w, 1));
    assert_int_equal(wm_add(&w, 1), 1); /* handled, below the watermark */
    assert_int_equal(wm_add(&w, 2), 1);
    assert_int_equal(wm_pending(&w), 0);
    /* Finishing twice changes nothing. */
    assert_false(wm_done(&w, 2));
    assert_int_equal(wm_get(&w), 2);
    assert_int_equal(wm_add(&w, 3), 0);
    assert_false(wm_done(&w, 4));
    assert_int_equal(wm_pending(&w), 1);
}

static void gaps(void **state) {
    (void)state;
    /* Telegram update ids are increasing but not contiguous. */
    wm_add(&w, 100);
    wm_add(&w, 205);
    wm_add(&w, 1000000);
    assert_false(wm_done(&w, 205));
    assert_true(wm_done(&w, 100));
    assert_int_equal(wm_get(&w), 205);
    assert_true(wm_done(&w, 1000000));
    assert_int_equal(wm_get(&w), 1000000);
    /* An id inside an earlier gap is at or below the watermark: duplicate. */
    assert_int_equal(wm_add(&w, 150), 1);
}

static void insertion_out_of_order(void **state) {
    (void)state;
    assert_int_equal(wm_add(&w, 5), 0);
    assert_int_equal(wm_add(&w, 3), 0);
    assert_int_equal(wm_add(&w, 4), 0);
    assert_int_equal(wm_add(&w, 1), 0);
    assert_int_equal(wm_add(&w, 3), 1);
    assert_int_equal(wm_pending(&w), 4);
    assert_false(wm_done(&w, 3));
    assert_false(wm_done(&w, 5));
    assert_true(wm_done(&w, 1));
    assert_int_equal(wm_get(&w), 3); /* 1 and 3 done; 4 is pending */
    assert_true(wm_done(&w, 4));
    assert_int_equal(wm_get(&w), 5);
}

static void remove_pending(void **state) {
    (void)state;
    wm_add(&w, 1);
    wm_add(&w, 2);
    wm_add(&w, 3);
    /* 3 was refused (queue full); it will be submitted again. */
    wm_remove(&w, 3);
    assert_int_equal(wm_pending(&w), 2);
    assert_false(wm_done(&w, 3));
    assert_int_equal(wm_add(&w, 3), 0); /* the retry is not a duplicate */
    assert_int_equal(wm_pending(&w), 3);
    wm_remove(&w, 2);
    assert_true(wm_done(&w, 1));
    assert_int_equal(wm_get(&w), 1);
    assert_false(wm_done(&w, 2));
    wm_remove(&w, 42); /* unknown: no effect */
    assert_int_equal(wm_pending(&w), 1);
    assert_true(wm_done(&w, 3));
    assert_int_equal(wm_get(&w), 3);
}

/* Small steady window: head moves around the 64-slot ring many times. */
static void ring_wraparound(void **state) {
    (void)state;
    int64_t next = 1;
    for (int i = 0; i < 40; i++)
        assert_int_equal(wm_add(&w, next++), 0);
    size_t cap = w.cap;
    int64_t lo = 1;
    for (int round = 0; round < 1000; round++) {
        /* Finish the second oldest first, then the oldest: both pop. */
        assert_false(wm_done(&w, lo + 1));
        assert_true(wm_done(&w, lo));
        assert_int_equal(wm_get(&w), lo + 1);
        lo += 2;
        assert_int_equal(wm_add(&w, next++), 0);
        assert_int_equal(wm_add(&w, next++), 0);
        assert_int_equal(wm_pending(&w), 40);
    }
    assert_int_equal(w.cap, cap); /* the ring was reused, not grown */
    /* Out-of-order insertion and removal while wrapped. */
    assert_true(w.head != 0);
    int64_t hi = next - 1;
    wm_remove(&w, hi);
    wm_remove(&w, hi - 5);
    assert_int_equal(wm_add(&w, hi - 5), 0);
    assert_int_equal(wm_add(&w, hi), 0);
    /* Grow while wrapped: add enough to pass the capacity. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(wm_add(&w, next++), 0);
    assert_int_equal(wm_pending(&w), 140);
    for (int64_t id = next - 1; id >= lo; id--)
        assert_true(wm_done(&w, id) == (id == lo));
    assert_int_equal(wm_get(&w), next - 1);
    assert_int_equal(wm_pending(&w), 0);
}

static void large_random_completion(void **state) {
    (void)state;
    enum { N = 100000 };
    int64_t *order = malloc(N * sizeof *order);
    for (int64_t i = 0; i < N; i++) {
        order[i] = 1 + i * 3; /* with gaps */
        assert_int_equal(wm_add(&w, order[i]), 0);
    }
    assert_int_equal(wm_pending(&w), N);
    srand(12345);
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    /* Track the smallest unfinished id to know the expected watermark. */
    unsigned char *done = calloc(N, 1);
    size_t low = 0;
    int64_t last = -1;
    for (size_t i = 0; i < N; i++) {
        size_t k = (size_t)((order[i] - 1) / 3);
        done[k] = 1;
        bool moved = wm_done(&w, order[i]);
        while (low < N && done[low])
            low++;
        int64_t want = low == 0 ? -1 : 1 + (int64_t)(low - 1) * 3;
        assert_int_equal(wm_get(&w), want);
        assert_true(moved == (want != last));
        last = want;
    }
    assert_int_equal(wm_get(&w), 1 + (int64_t)(N - 1) * 3);
    assert_int_equal(wm_pending(&w), 0);
    free(done);
    free(order);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(fresh),
        T(in_order),
        T(out_of_order),
        T(first_id_zero),
        T(duplicates),
        T(gaps),
        T(insertion_out_of_order),
        T(remove_pending),
        T(ring_wraparound),
        T(large_random_completion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
