/* Metrics registry: families, series, histograms, export view, and
 * lock-free updates from several threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const L_BT[] = {"backend", "transport", NULL};

static void same_family_on_reregister(void **state) {
    (void)state;
    rd_metric *a = metric_family(RD_METRIC_COUNTER, "rt_requests_total", "requests", L_BT, NULL, 0);
    assert_non_null(a);
    const char *const same[] = {"backend", "transport", NULL};
    rd_metric *b =
        metric_family(RD_METRIC_COUNTER, "rt_requests_total", "other help", same, NULL, 0);
    assert_ptr_equal(a, b);
    rd_metric *other = metric_family(RD_METRIC_COUNTER, "rt_other_total", "x", L_BT, NULL, 0);
    assert_non_null(other);
    assert_ptr_not_equal(a, other);
}

static void shape_mismatch_is_null(void **state) {
    (void)state;
    rd_metric *a = metric_family(RD_METRIC_GAUGE, "rt_shape", "g", L_BT, NULL, 0);
    assert_non_null(a);
    assert_null(metric_family(RD_METRIC_COUNTER, "rt_shape", "g", L_BT, NULL, 0));
    const char *const swapped[] = {"transport", "backend", NULL};
    assert_null(metric_family(RD_METRIC_GAUGE, "rt_shape", "g", swapped, NULL, 0));
    const char *const fewer[] = {"backend", NULL};
    assert_null(metric_family(RD_METRIC_GAUGE, "rt_shape", "g", fewer, NULL, 0));
    assert_null(metric_family(RD_METRIC_GAUGE, "rt_shape", "g", NULL, NULL, 0));
    /* The original is still there and usable. */
    assert_ptr_equal(metric_family(RD_METRIC_GAUGE, "rt_shape", "g", L_BT, NULL, 0), a);
    /* A NULL family yields NULL series, and NULL series are ignored. */
    assert_null(metric_series(NULL, L_BT));
    series_add(NULL, 1);
    series_set(NULL, 1);
    series_observe(NULL, 1);
    assert_true(isnan(series_value(NULL)));
    assert_int_equal(series_count(NULL), 0);
}

static void series_by_label_values(void **state) {
    (void)state;
    rd_metric *m = metric_family(RD_METRIC_COUNTER, "rt_series_total", "s", L_BT, NULL, 0);
    rd_series *a = metric_series(m, (const char *const[]){"mock", "console"});
    rd_series *b = metric_series(m, (const char *const[]){"mock", "telegram"});
    rd_series *a2 = metric_series(m, (const char *const[]){"mock", "console"});
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_equal(a, a2);
    assert_ptr_not_equal(a, b);
    assert_true(series_value(a) == 0);
    series_add(a, 1);
    series_add(a, 2.5);
    series_add(b, 7);
    assert_true(series_value(a) == 3.5);
    assert_true(series_value(b) == 7);
    /* A NULL label value means "". */
    rd_series *e = metric_series(m, (const char *const[]){NULL, "console"});
    rd_series *e2 = metric_series(m, (const char *const[]){"", "console"});
    assert_ptr_equal(e, e2);

    rd_metric *g = metric_family(RD_METRIC_GAUGE, "rt_gauge", "g", NULL, NULL, 0);
    rd_series *gs = metric_series(g, NULL);
    series_set(gs, 42);
    series_set(gs, -3.25);
    assert_true(series_value(gs) == -3.25);
    series_add(gs, 1.25);
    assert_true(series_value(gs) == -2);
}

typedef struct {
    const char *family;
    const char *label0;
    int calls;
    rd_metric_view mv;
    double value;
    size_t nbuckets;
    double le[32];
    uint64_t cum[33];
    uint64_t count;
    double sum;
} probe;

static void visit(void *arg, const rd_metric_view *mv, const rd_series_view *sv) {
    probe *p = arg;
    if (strcmp(mv->name, p->family)) return;
    if (p->label0 && (mv->nlabels == 0 || strcmp(sv->label_values[0], p->label0))) return;
    p->calls++;
    p->mv = *mv;
    p->value = sv->value;
    p->nbuckets = sv->nbuckets;
    for (size_t i = 0; i < sv->nbuckets && i < 32; i++)
        p->le[i] = sv->bucket_le[i];
    for (size_t i = 0; sv->bucket_counts && i <= sv->nbuckets && i < 33; i++)
        p->cum[i] = sv->bucket_counts[i];
    p->count = sv->count;
    p->sum = sv->sum;
}

static void histogram_buckets(void **state) {
    (void)state;
    double le[] = {1, 2, 5};
    const char *const lab[] = {"backend", NULL};
    rd_metric *h = metric_family(RD_METRIC_HISTOGRAM, "rt_latency_seconds", "latency", lab, le, 3);
    assert_non_null(h);
    le[0] = 99; /* the registry keeps its own copy of the bounds */
    rd_series *s = metric_series(h, (const char *const[]){"mock"});
    const double obs[] = {0.5, 1, 1.5, 3, 10, 100};
    for (size_t i = 0; i < 6; i++)
        series_observe(s, obs[i]);
    assert_int_equal(series_count(s), 6);

    probe p = {.family = "rt_latency_seconds", .label0 = "mock"};
    metrics_visit(visit, &p);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.mv.type, RD_METRIC_HISTOGRAM);
    assert_string_equal(p.mv.help, "latency");
    assert_int_equal(p.mv.nlabels, 1);
    assert_string_equal(p.mv.label_names[0], "backend");
    assert_int_equal(p.nbuckets, 3);
    assert_true(p.le[0] == 1 && p.le[1] == 2 && p.le[2] == 5);
    /* Cumulative; an observation equal to a bound is inside it (le). */
    assert_int_equal(p.cum[0], 2);
    assert_int_equal(p.cum[1], 3);
    assert_int_equal(p.cum[2], 4);
    assert_int_equal(p.cum[3], 6); /* +Inf */
    assert_int_equal(p.count, 6);
    assert_int_equal(p.cum[3], p.count);
    assert_true(p.sum == 116.0);
}

static void histogram_default_buckets(void **state) {
    (void)state;
    rd_metric *h = metric_family(RD_METRIC_HISTOGRAM, "rt_default_seconds", "d", NULL, NULL, 0);
    rd_series *s = metric_series(h, NULL);
    series_observe(s, 0.001);
    series_observe(s, 1000);
    probe p = {.family = "rt_default_seconds"};
    metrics_visit(visit, &p);
    assert_int_equal(p.calls, 1);
    assert_true(p.nbuckets > 5);
    for (size_t i = 1; i < p.nbuckets; i++)
        assert_true(p.le[i] > p.le[i - 1]);
    assert_int_equal(p.cum[0], 1);
    assert_int_equal(p.cum[p.nbuckets - 1], 1);
    assert_int_equal(p.cum[p.nbuckets], 2);
    assert_int_equal(p.count, 2);
    /* Counters do not carry histogram fields. */
    metric_series(metric_family(RD_METRIC_COUNTER, "rt_plain_total", "p", NULL, NULL, 0), NULL);
    probe c = {.family = "rt_plain_total"};
    metrics_visit(visit, &c);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.nbuckets, 0);
    assert_int_equal(c.mv.type, RD_METRIC_COUNTER);
}

static void visit_order_and_values(void **state) {
    (void)state;
    rd_metric *m = metric_family(RD_METRIC_COUNTER, "rt_order_total", "o", L_BT, NULL, 0);
    series_add(metric_series(m, (const char *const[]){"b1", "t"}), 1);
    series_add(metric_series(m, (const char *const[]){"b2", "t"}), 2);
    series_add(metric_series(m, (const char *const[]){"b3", "t"}), 3);
    probe p = {.family = "rt_order_total"};
    metrics_visit(visit, &p);
    assert_int_equal(p.calls, 3);
    assert_true(p.value == 3); /* the last visited is the last created */
}

enum { THREADS = 4, ADDS = 100000 };

static rd_metric *conc_c, *conc_h;

static void *adder(void *arg) {
    (void)arg;
    /* Resolving the same series concurrently must give one series. */
    rd_series *s = metric_series(conc_c, (const char *const[]){"mock", "console"});
    rd_series *h = metric_series(conc_h, NULL);
    for (int i = 0; i < ADDS; i++) {
        series_add(s, 1);
        series_observe(h, (i % 4) * 0.5); /* 0, 0.5, 1, 1.5 */
    }
    return s;
}

static void concurrent_adds(void **state) {
    (void)state;
    conc_c = metric_family(RD_METRIC_COUNTER, "rt_conc_total", "c", L_BT, NULL, 0);
    const double le[] = {0.5, 1};
    conc_h = metric_family(RD_METRIC_HISTOGRAM, "rt_conc_seconds", "h", NULL, le, 2);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, adder, NULL), 0);
    void *ret[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], &ret[i]);
    for (int i = 1; i < THREADS; i++)
        assert_ptr_equal(ret[i], ret[0]);
    assert_true(series_value(ret[0]) == (double)THREADS * ADDS);
    rd_series *h = metric_series(conc_h, NULL);
    assert_int_equal(series_count(h), THREADS * ADDS);
    probe p = {.family = "rt_conc_seconds"};
    metrics_visit(visit, &p);
    const uint64_t quarter = THREADS * ADDS / 4;
    assert_int_equal(p.cum[0], 2 * quarter); /* 0 and 0.5 */
    assert_int_equal(p.cum[1], 3 * quarter);
    assert_int_equal(p.cum[2], 4 * quarter);
    assert_true(p.sum == (0 + 0.5 + 1 + 1.5) * quarter);
}

static int free_all(void **state) {
    (void)state;
    metrics_free_all();
    return 0;
}

/* A label value taken from a peer's text never exposes a secret, in any
 * spelling, and the masked values share one series. */
static void secret_label_values_masked(void **state) {
    (void)state;
    secret_add("55501:AAlabel-Secret-Half");
    rd_metric *m = metric_family(RD_METRIC_COUNTER, "t_label_secret_total", "h",
                                 (const char *const[]){"why", NULL}, NULL, 0);
    rd_series *a = metric_series(m, (const char *const[]){"bad 55501%3AAAlabel-Secret-Half"});
    rd_series *b = metric_series(m, (const char *const[]){"bad AAlabel-Secret-Half"});
    assert_ptr_equal(a, b);
    series_add(a, 2);
    probe p = {.family = "t_label_secret_total", .label0 = "bad ***"};
    metrics_visit(visit, &p);
    assert_int_equal(p.calls, 1);
    assert_true(p.value == 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_family_on_reregister), cmocka_unit_test(shape_mismatch_is_null),
        cmocka_unit_test(series_by_label_values),    cmocka_unit_test(histogram_buckets),
        cmocka_unit_test(histogram_default_buckets), cmocka_unit_test(visit_order_and_values),
        cmocka_unit_test(concurrent_adds),           cmocka_unit_test(secret_label_values_masked),
    };
    return cmocka_run_group_tests(tests, NULL, free_all);
}
