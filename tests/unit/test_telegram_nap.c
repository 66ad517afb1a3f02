/* Unit tests: the intake thread's nap on back-pressure (tg_nap) ends at a
 * kick made after the caller read wake_gen, even one made before the nap
 * began, at a stop, or at its deadline; kicks with no nap cost nothing. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "telegram.h"

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static tg *new_tg(void) {
    tg *t = calloc(1, sizeof *t);
    pthread_mutex_init(&t->wake_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake_cv, &ca);
    pthread_condattr_destroy(&ca);
    return t;
}

static void free_tg(tg *t) {
    pthread_cond_destroy(&t->wake_cv);
    pthread_mutex_destroy(&t->wake_mu);
    free(t);
}

/* A kick between reading the count and napping is not lost. */
static void test_kick_before_nap(void **state) {
    (void)state;
    tg *t = new_tg();
    uint64_t since = atomic_load(&t->wake_gen);
    tg_kick(t);
    int64_t t0 = mono_ms();
    assert_int_equal(tg_nap(t, 10000, &t->quiescing, since), 0);
    assert_true(mono_ms() - t0 < 1000);
    free_tg(t);
}

typedef struct kicker {
    tg *t;
    int delay_ms, stop;
} kicker;

static void *kick_later(void *arg) {
    kicker *k = arg;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = k->delay_ms * 1000000L};
    nanosleep(&ts, NULL);
    if (k->stop) {
        atomic_store(&k->t->quiescing, 1);
        tg_wake(k->t);
    } else {
        tg_kick(k->t);
    }
    return NULL;
}

/* A kick from another thread ends a nap in progress. */
static void test_kick_during_nap(void **state) {
    (void)state;
    tg *t = new_tg();
    kicker k = {.t = t, .delay_ms = 50};
    pthread_t th;
    uint64_t since = atomic_load(&t->wake_gen);
    int64_t t0 = mono_ms();
    assert_int_equal(pthread_create(&th, NULL, kick_later, &k), 0);
    assert_int_equal(tg_nap(t, 10000, &t->quiescing, since), 0);
    int64_t took = mono_ms() - t0;
    pthread_join(th, NULL);
    assert_true(took >= 40);
    assert_true(took < 5000);
    assert_int_equal(atomic_load(&t->napping), 0);
    free_tg(t);
}

/* A stop ends it too, and the nap says so. */
static void test_stop_ends_nap(void **state) {
    (void)state;
    tg *t = new_tg();
    kicker k = {.t = t, .delay_ms = 50, .stop = 1};
    pthread_t th;
    uint64_t since = atomic_load(&t->wake_gen);
    int64_t t0 = mono_ms();
    assert_int_equal(pthread_create(&th, NULL, kick_later, &k), 0);
    assert_int_equal(tg_nap(t, 10000, &t->quiescing, since), 1);
    pthread_join(th, NULL);
    assert_true(mono_ms() - t0 < 5000);
    /* Already stopping: no nap at all. */
    assert_int_equal(tg_nap(t, 10000, &t->quiescing, atomic_load(&t->wake_gen)), 1);
    free_tg(t);
}

/* Without a kick a nap lasts its time; a wake-up that is not a kick (the
 * condition variable signalled for something else) does not end it. */
static void test_nap_lasts_without_kick(void **state) {
    (void)state;
    tg *t = new_tg();
    uint64_t since = atomic_load(&t->wake_gen);
    int64_t t0 = mono_ms();
    assert_int_equal(tg_nap(t, 60, &t->quiescing, since), 0);
    assert_true(mono_ms() - t0 >= 55);
    /* A kick made before `since` was read does not count. */
    tg_kick(t);
    since = atomic_load(&t->wake_gen);
    t0 = mono_ms();
    assert_int_equal(tg_nap(t, 60, &t->quiescing, since), 0);
    assert_true(mono_ms() - t0 >= 55);
    assert_int_equal(tg_nap(t, 0, &t->quiescing, since), 0);
    free_tg(t);
}

/* Kicks with nobody napping only count. */
static void test_kicks_without_nap(void **state) {
    (void)state;
    tg *t = new_tg();
    for (int i = 0; i < 100000; i++)
        tg_kick(t);
    assert_int_equal(atomic_load(&t->wake_gen), 100000);
    assert_int_equal(atomic_load(&t->napping), 0);
    free_tg(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kick_before_nap),   cmocka_unit_test(test_kick_during_nap),
        cmocka_unit_test(test_stop_ends_nap),     cmocka_unit_test(test_nap_lasts_without_kick),
        cmocka_unit_test(test_kicks_without_nap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
