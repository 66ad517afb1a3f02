/* The mock's injected failures and the router's failure counter agree
 * exactly, as read from /metrics: what staging alert tests rely on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double metric(const char *body, const char *series) {
    const char *p = strstr(body, series);
    if (!p) return -1;
    return strtod(p + strlen(series), NULL);
}

static void test_injected_equals_counted(void **state) {
    (void)state;
    rt_fix *fx = rt_fix_new(NULL);
    assert_non_null(fx);
    rt_fix_manifest(
        fx, "rate_limit_per_minute = 0\nfailure_notice = FAIL\n"
            "[transport.console]\nplugin = console\n"
            "[backend.mock]\nplugin = mock\nprefix = \"\"\nfail_transient = 0.2\nseed = 42\n"
            "[sink.metrics]\nplugin = prometheus\n"
            "[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_fix_start(fx, NULL, 0);
    char line[64];
    for (int i = 0; i < 500; i++) {
        snprintf(line, sizeof line, "@%d m%d\n", 1 + i % 9, i);
        rt_write(p, line);
    }
    assert_int_equal(rt_wait_stdout_lines(p, 500, 30000), 500);
    char *body = NULL;
    assert_int_equal(rt_http("GET", rt_fix_url(fx, "/metrics"), NULL, NULL, &body), 200);
    double counted = metric(
        body, "routerd_backend_failures_total{backend=\"mock\",classification=\"transient\"} ");
    double injected = metric(
        body,
        "routerd_mock_injected_failures_total{backend=\"mock\",classification=\"transient\"} ");
    int notices = rt_count(rt_stdout(p), "FAIL\n");
    if (counted != injected || counted != notices)
        fprintf(stderr, "counted %g injected %g notices %d\n%s\n", counted, injected, notices,
                body);
    assert_true(counted > 0);
    assert_true(counted == injected);
    assert_true(counted == notices);
    assert_true(notices > 60 && notices < 140); /* 20 % of 500 */
    free(body);
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    rt_fix_free(fx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_injected_equals_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
