/* secret_add + redact: secrets never leak into logs and error texts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char out[512];

static const char *red(const char *src) {
    memset(out, 'Q', sizeof out);
    size_t n = redact(src, out, sizeof out);
    assert_int_equal(n, strlen(out));
    return out;
}

static void token_in_url(void **state) {
    (void)state;
    secret_add("123:ABC");
    assert_string_equal(red("GET https://api.telegram.org/bot123:ABC/getMe: timeout"),
                        "GET https://api.telegram.org/bot***/getMe: timeout");
    /* Every occurrence, also at the very start and end. */
    assert_string_equal(red("123:ABC and 123:ABC"), "*** and ***");
    assert_string_equal(red("123:AB is not the token"), "123:AB is not the token");
}

static void several_secrets(void **state) {
    (void)state;
    secret_add("sk-live-0000");
    secret_add("hunter22");
    assert_string_equal(red("key=sk-live-0000&pw=hunter22&again=hunter22"),
                        "key=***&pw=***&again=***");
    /* Registering twice changes nothing. */
    secret_add("hunter22");
    assert_string_equal(red("hunter22hunter22"), "******");
}

static void plain_text_untouched(void **state) {
    (void)state;
    assert_string_equal(red(""), "");
    assert_string_equal(red("nothing secret here"), "nothing secret here");
    char tmp[8];
    assert_int_equal(redact(NULL, tmp, sizeof tmp), 0);
    assert_string_equal(tmp, "");
}

static void short_values_not_registered(void **state) {
    (void)state;
    /* Masking "on" or "1" would shred every log line. */
    secret_add("abc");
    secret_add("1");
    secret_add("");
    secret_add(NULL);
    assert_string_equal(red("abc 1 on abcd"), "abc 1 on abcd");
    secret_add("wxyz"); /* four characters is enough */
    assert_string_equal(red("a wxyz b"), "a *** b");
}

static void truncation_stays_terminated(void **state) {
    (void)state;
    char small[6];
    memset(small, 'Q', sizeof small);
    size_t n = redact("0123456789", small, sizeof small);
    assert_int_equal(n, 5);
    assert_string_equal(small, "01234");
    /* A secret cut by the end of the buffer leaks none of its bytes. */
    secret_add("SECRETVALUE");
    memset(small, 'Q', sizeof small);
    n = redact("ab SECRETVALUE", small, sizeof small);
    assert_string_equal(small, "ab **");
    assert_int_equal(n, 5);
    memset(small, 'Q', sizeof small);
    n = redact("SECRETVALUE", small, 2);
    assert_string_equal(small, "*");
    assert_int_equal(small[2], 'Q'); /* nothing written past dstsz */
    n = redact("anything", small, 1);
    assert_int_equal(n, 0);
    assert_string_equal(small, "");
    small[0] = 'Q';
    assert_int_equal(redact("anything", small, 0), 0);
    assert_int_equal(small[0], 'Q');
}

static void dup_variant(void **state) {
    (void)state;
    secret_add("dup-secret-1");
    char *d = redact_dup("x=dup-secret-1;");
    assert_string_equal(d, "x=***;");
    free(d);
    d = redact_dup("");
    assert_string_equal(d, "");
    free(d);
}

/* One secret contained in another: the longer must win, whatever the
 * registration order, or its tail leaks. */
static void nested_secrets(void **state) {
    (void)state;
    secret_add("nest1234");
    secret_add("nest1234-longer-tail");
    assert_string_equal(red("t=nest1234-longer-tail."), "t=***.");
    assert_string_equal(red("t=nest1234."), "t=***.");
}

/* Two secrets overlapping (the end of one is the start of the other):
 * no byte of either may survive. */
static void chained_overlap(void **state) {
    (void)state;
    secret_add("left-half-OVER");
    secret_add("OVER-right-half");
    const char *r = red("[left-half-OVER-right-half]");
    if (strstr(r, "right") || strstr(r, "left")) fail_msg("secret bytes leaked: \"%s\"", r);
    size_t n = strlen(r);
    assert_true(n >= 5 && r[0] == '[' && r[n - 1] == ']');
    assert_int_equal(strspn(r + 1, "*"), n - 2);
}

/* Runs log_msg with stderr captured; returns what was written. */
static char *capture_log(const char *pad, const char *tail) {
    char path[] = "/tmp/rt-core-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    log_msg("core", RD_LOG_ERROR, "%s%s", pad, tail);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    static char buf[8192];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(path);
    return buf;
}

/* A secret cut in half by the log line limit must not show its first
 * half: truncation has to happen after redaction, not before. */
static void log_truncation_keeps_secret(void **state) {
    (void)state;
    secret_add("LOGTOKEN-0123456789abcdef");
    char *out = capture_log("x", " LOGTOKEN-0123456789abcdef!");
    assert_non_null(strstr(out, "[core] x ***!"));
    for (size_t padlen = 2030; padlen < 2050; padlen++) {
        char *pad = malloc(padlen + 1);
        memset(pad, '.', padlen);
        pad[padlen] = 0;
        out = capture_log(pad, "LOGTOKEN-0123456789abcdef");
        free(pad);
        if (strstr(out, "LOGTOK"))
            fail_msg("secret prefix leaked with %zu bytes before it", padlen);
    }
}

/* host->error(): plugin error texts (curl messages with URLs) are capped at
 * sizeof err->msg; the cut must not expose the start of a token. */
static void error_truncation_keeps_secret(void **state) {
    (void)state;
    secret_add("ERRTOKEN-0123456789abcdef");
    rd_error e;
    for (size_t padlen = 200; padlen < sizeof e.msg + 4; padlen++) {
        char *pad = malloc(padlen + 1);
        memset(pad, '.', padlen);
        pad[padlen] = 0;
        memset(&e, 0, sizeof e);
        host_api.error(&e, RD_E_RETRY, "transient", "%shttps://h/botERRTOKEN-0123456789abcdef/x",
                       pad);
        free(pad);
        assert_int_equal(e.code, RD_E_RETRY);
        assert_string_equal(e.klass, "transient");
        assert_true(strlen(e.msg) < sizeof e.msg);
        if (strstr(e.msg, "ERRTOK"))
            fail_msg("secret prefix leaked with %zu bytes before it", padlen);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(token_in_url),
        cmocka_unit_test(several_secrets),
        cmocka_unit_test(plain_text_untouched),
        cmocka_unit_test(short_values_not_registered),
        cmocka_unit_test(truncation_stays_terminated),
        cmocka_unit_test(dup_variant),
        cmocka_unit_test(nested_secrets),
        cmocka_unit_test(chained_overlap),
        cmocka_unit_test(log_truncation_keeps_secret),
        cmocka_unit_test(error_truncation_keeps_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
