/* Unit tests: Prometheus exposition renderer (escaping, histograms, one
 * TYPE per family), /proc parsing and StatsD lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <routerd/plugin.h>

#include "prom_format.h"
#include "prom_process.h"
#include "statsd.h"

static char *render(prom_doc *d) {
    size_t len = 0;
    char *t = prom_doc_render(d, &len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    prom_doc_free(d);
    return t;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_doubles(void **state) {
    (void)state;
    const struct {
        double v;
        const char *want;
    } cases[] = {{0, "0"},
                 {1, "1"},
                 {0.005, "0.005"},
                 {-2.5, "-2.5"},
                 {1e6, "1000000"},
                 {0.1, "0.1"},
                 {1.0 / 3, "0.3333333333333333"},
                 {1e-9, "1e-09"},
                 {123456789012.0, "123456789012"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sbuf b = {0};
        prom_put_double(&b, cases[i].v);
        assert_string_equal(b.p, cases[i].want);
        assert_true(strtod(b.p, NULL) == cases[i].v);
        sbuf_free(&b);
    }
    sbuf b = {0};
    prom_put_double(&b, 1.0 / 0.0);
    sbuf_putc(&b, ' ');
    prom_put_double(&b, -1.0 / 0.0);
    sbuf_putc(&b, ' ');
    prom_put_double(&b, 0.0 / 0.0);
    assert_string_equal(b.p, "+Inf -Inf NaN");
    sbuf_free(&b);
}

static void test_escaping(void **state) {
    (void)state;
    sbuf b = {0};
    prom_put_label_value(&b, "a\\b\"c\nd");
    assert_string_equal(b.p, "a\\\\b\\\"c\\nd");
    sbuf_reset(&b);
    /* HELP escapes backslash and line feed but not quotes. */
    prom_put_help(&b, "say \"hi\"\\\nnext");
    assert_string_equal(b.p, "say \"hi\"\\\\\\nnext");
    sbuf_reset(&b);
    /* Invalid UTF-8 in a label value becomes U+FFFD; valid stays. */
    prom_put_label_value(&b, "caf\xc3\xa9 \xff\xfe x\xe2\x82");
    assert_string_equal(b.p, "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd x\xef\xbf\xbd\xef\xbf\xbd");
    sbuf_reset(&b);
    prom_put_help(&b, "bad \xba\xba help");
    assert_string_equal(b.p, "bad \xef\xbf\xbd\xef\xbf\xbd help");
    sbuf_reset(&b);
    prom_put_name(&b, "routerd:a-b.c", true);
    sbuf_putc(&b, ' ');
    prom_put_name(&b, "9x:y", false);
    assert_string_equal(b.p, "routerd:a_b_c _x_y");
    sbuf_free(&b);
}

static void test_counter_and_labels(void **state) {
    (void)state;
    prom_doc *d = prom_doc_new();
    const char *const names[] = {"transport", "reason", NULL};
    rd_metric_view m = {.size = sizeof m,
                        .name = "routerd_messages_rejected_total",
                        .help = "Messages not forwarded.\nSecond line \\ here.",
                        .type = RD_METRIC_COUNTER,
                        .label_names = names,
                        .nlabels = 2};
    const char *v1[] = {"main", "allow\"list"};
    const char *v2[] = {"main", "line\nbreak"};
    rd_series_view s1 = {.size = sizeof s1, .label_values = v1, .value = 3};
    rd_series_view s2 = {.size = sizeof s2, .label_values = v2, .value = 0.5};
    prom_doc_add(d, &m, &s1);
    prom_doc_add(d, &m, &s2);
    char *t = render(d);
    assert_string_equal(
        t, "# HELP routerd_messages_rejected_total Messages not forwarded.\\nSecond line \\\\ "
           "here.\n"
           "# TYPE routerd_messages_rejected_total counter\n"
           "routerd_messages_rejected_total{transport=\"main\",reason=\"allow\\\"list\"} 3\n"
           "routerd_messages_rejected_total{transport=\"main\",reason=\"line\\nbreak\"} 0.5\n");
    free(t);
}

static void test_histogram(void **state) {
    (void)state;
    prom_doc *d = prom_doc_new();
    const double le[] = {0.005, 0.5, 10};
    const uint64_t cum[] = {1, 4, 6, 7};
    const char *const names[] = {"backend", NULL};
    const char *vals[] = {"helper"};
    rd_metric_view m = {.size = sizeof m,
                        .name = "routerd_backend_latency_seconds",
                        .help = "Backend time.",
                        .type = RD_METRIC_HISTOGRAM,
                        .label_names = names,
                        .nlabels = 1};
    rd_series_view s = {.size = sizeof s,
                        .label_values = vals,
                        .bucket_le = le,
                        .bucket_counts = cum,
                        .nbuckets = 3,
                        .count = 7,
                        .sum = 21.25};
    prom_doc_add(d, &m, &s);
    /* Without labels too. */
    rd_metric_view m2 = {.size = sizeof m2,
                         .name = "routerd_round_trip_seconds",
                         .help = "RT.",
                         .type = RD_METRIC_HISTOGRAM};
    rd_series_view s2 = {.size = sizeof s2,
                         .bucket_le = le,
                         .bucket_counts = cum,
                         .nbuckets = 3,
                         .count = 7,
                         .sum = 2};
    prom_doc_add(d, &m2, &s2);
    char *t = render(d);
    assert_string_equal(
        t, "# HELP routerd_backend_latency_seconds Backend time.\n"
           "# TYPE routerd_backend_latency_seconds histogram\n"
           "routerd_backend_latency_seconds_bucket{backend=\"helper\",le=\"0.005\"} 1\n"
           "routerd_backend_latency_seconds_bucket{backend=\"helper\",le=\"0.5\"} 4\n"
           "routerd_backend_latency_seconds_bucket{backend=\"helper\",le=\"10\"} 6\n"
           "routerd_backend_latency_seconds_bucket{backend=\"helper\",le=\"+Inf\"} 7\n"
           "routerd_backend_latency_seconds_sum{backend=\"helper\"} 21.25\n"
           "routerd_backend_latency_seconds_count{backend=\"helper\"} 7\n"
           "# HELP routerd_round_trip_seconds RT.\n"
           "# TYPE routerd_round_trip_seconds histogram\n"
           "routerd_round_trip_seconds_bucket{le=\"0.005\"} 1\n"
           "routerd_round_trip_seconds_bucket{le=\"0.5\"} 4\n"
           "routerd_round_trip_seconds_bucket{le=\"10\"} 6\n"
           "routerd_round_trip_seconds_bucket{le=\"+Inf\"} 7\n"
           "routerd_round_trip_seconds_sum 2\n"
           "routerd_round_trip_seconds_count 7\n");
    free(t);
}

/* Series of one family visited apart still give one HELP/TYPE block;
 * a family name reused with another type is refused. */
static void test_one_type_per_family(void **state) {
    (void)state;
    prom_doc *d = prom_doc_new();
    const char *const names[] = {"k", NULL};
    const char *a[] = {"a"}, *b[] = {"b"};
    rd_metric_view x = {.size = sizeof x,
                        .name = "x_total",
                        .help = "X.",
                        .type = RD_METRIC_COUNTER,
                        .label_names = names,
                        .nlabels = 1};
    rd_series_view sa = {.size = sizeof sa, .label_values = a, .value = 1};
    rd_series_view sb = {.size = sizeof sb, .label_values = b, .value = 2};
    prom_doc_add(d, &x, &sa);
    prom_doc_add_simple(d, RD_METRIC_GAUGE, "y", "Y.", 5);
    prom_doc_add(d, &x, &sb);
    prom_doc_add_simple(d, RD_METRIC_GAUGE, "x_total", "clash", 9);
    char *t = render(d);
    assert_int_equal(count(t, "# TYPE x_total counter\n"), 1);
    assert_int_equal(count(t, "# TYPE"), 2);
    assert_non_null(strstr(t, "x_total{k=\"a\"} 1\nx_total{k=\"b\"} 2\n# HELP y Y.\n"));
    assert_null(strstr(t, "clash"));
    assert_null(strstr(t, " 9\n"));
    free(t);
}

static void test_empty_doc(void **state) {
    (void)state;
    char *t = render(prom_doc_new());
    assert_string_equal(t, "");
    free(t);
}

static void test_proc_stat(void **state) {
    (void)state;
    /* comm with spaces and parentheses; utime 250, stime 50 ticks;
     * starttime 1000 ticks; vsize 4096000; rss 300 pages. */
    const char *stat = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 "
                       "1000 4096000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 "
                       "0 0 0 0 0 0 0 0 0 0\n";
    proc_stats ps = {0};
    assert_int_equal(proc_parse_stat(stat, 100, 4096, 1700000000, &ps), 0);
    assert_true(ps.have_stat);
    assert_true(ps.cpu_seconds == 3.0);
    assert_true(ps.start_time_seconds == 1700000010.0);
    assert_true(ps.virtual_bytes == 4096000);
    assert_true(ps.resident_bytes == 300 * 4096);
    proc_stats bad = {0};
    assert_int_equal(proc_parse_stat("garbage", 100, 4096, 0, &bad), -1);
    assert_int_equal(proc_parse_stat("1 (x) S 1 2", 100, 4096, 0, &bad), -1);
    assert_false(bad.have_stat);
    assert_true(proc_parse_btime("cpu 1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n") ==
                1700000000);
    assert_true(proc_parse_btime("cpu 1\n") < 0);

    /* The live process: plausible figures. */
    proc_stats me;
    proc_read_self(&me);
    assert_true(me.have_stat);
    assert_true(me.resident_bytes > 0);
    assert_true(me.have_fds && me.open_fds >= 3);
    assert_true(me.start_time_seconds > 1.5e9);
    prom_doc *d = prom_doc_new();
    proc_add_metrics(d, &me);
    char *t = render(d);
    assert_non_null(strstr(t, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(t, "# TYPE process_resident_memory_bytes gauge\n"));
    assert_non_null(strstr(t, "\nprocess_open_fds "));
    assert_non_null(strstr(t, "\nprocess_start_time_seconds "));
    assert_non_null(strstr(t, "\nprocess_virtual_memory_bytes "));
    free(t);
}

typedef struct {
    char pkts[8][2048];
    int n;
} sink;

static void collect(void *arg, const char *data, size_t len) {
    sink *s = arg;
    assert_true(s->n < 8);
    memcpy(s->pkts[s->n], data, len);
    s->pkts[s->n][len] = 0;
    s->n++;
}

static void test_statsd(void **state) {
    (void)state;
    statsd_fmt *f = statsd_fmt_new("rd.", true);
    const char *const names[] = {"persona", NULL};
    const char *v[] = {"he|lp:er"};
    rd_metric_view c = {.size = sizeof c,
                        .name = "hits_total",
                        .type = RD_METRIC_COUNTER,
                        .label_names = names,
                        .nlabels = 1};
    rd_metric_view g = {.size = sizeof g, .name = "depth", .type = RD_METRIC_GAUGE};
    const double le[] = {1};
    const uint64_t cum[] = {2, 3};
    rd_metric_view h = {.size = sizeof h, .name = "rt_seconds", .type = RD_METRIC_HISTOGRAM};
    rd_series_view cs = {.size = sizeof cs, .label_values = v, .value = 5};
    rd_series_view gs = {.size = sizeof gs, .value = 2.5};
    rd_series_view hs = {.size = sizeof hs,
                         .bucket_le = le,
                         .bucket_counts = cum,
                         .nbuckets = 1,
                         .count = 3,
                         .sum = 1.5};
    size_t len;
    statsd_begin(f);
    statsd_visit(f, &c, &cs);
    statsd_visit(f, &g, &gs);
    statsd_visit(f, &h, &hs);
    assert_string_equal(statsd_text(f, &len), "rd.hits_total:5|c|#persona:he_lp_er\n"
                                              "rd.depth:2.5|g\n"
                                              "rd.rt_seconds_count:3|c\n"
                                              "rd.rt_seconds_sum:1.5|c\n");
    /* Second push: deltas only; unchanged counters say nothing. */
    cs.value = 7;
    statsd_begin(f);
    statsd_visit(f, &c, &cs);
    statsd_visit(f, &g, &gs);
    statsd_visit(f, &h, &hs);
    assert_string_equal(statsd_text(f, &len), "rd.hits_total:2|c|#persona:he_lp_er\n"
                                              "rd.depth:2.5|g\n");
    statsd_fmt_free(f);

    f = statsd_fmt_new("", false);
    statsd_begin(f);
    statsd_visit(f, &c, &cs);
    assert_string_equal(statsd_text(f, &len), "hits_total.he_lp_er:7|c\n");
    statsd_fmt_free(f);

    /* Packets split at line ends and stay under the limit. */
    const char *text = "aaaa:1|c\nbbbb:2|c\ncccc:3|c\n";
    sink s = {0};
    statsd_packets(text, strlen(text), 18, collect, &s);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.pkts[0], "aaaa:1|c\nbbbb:2|c");
    assert_string_equal(s.pkts[1], "cccc:3|c");
    sink one = {0};
    statsd_packets(text, strlen(text), 1000, collect, &one);
    assert_int_equal(one.n, 1);
    assert_string_equal(one.pkts[0], "aaaa:1|c\nbbbb:2|c\ncccc:3|c");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubles),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_counter_and_labels),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_one_type_per_family),
        cmocka_unit_test(test_empty_doc),
        cmocka_unit_test(test_proc_stat),
        cmocka_unit_test(test_statsd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
