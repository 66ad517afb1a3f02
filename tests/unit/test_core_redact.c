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

#include <openssl/evp.h>

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

/* leak must be gone from the redacted text, and something masked. */
static void assert_masked(const char *text, const char *leak) {
    const char *r = red(text);
    if (strstr(r, leak)) fail_msg("\"%s\" leaked in \"%s\"", leak, r);
    if (!strstr(r, "***")) fail_msg("nothing masked in \"%s\"", r);
}

/* A bot token in a URL, percent-encoded the ways clients do it. */
static void url_encoded(void **state) {
    (void)state;
    secret_add("424242:AAHxyz-Enc_oded~tok");
    assert_string_equal(red("GET /bot424242%3AAAHxyz-Enc_oded~tok/getMe"), "GET /bot***/getMe");
    assert_string_equal(red("GET /bot424242%3aAAHxyz-Enc_oded~tok/getMe"), "GET /bot***/getMe");
    /* Everything encoded, upper and lower hex mixed, and encoded twice. */
    assert_string_equal(red("t=%34%32%34%32%34%32%3a%41%41%48xyz%2DEnc%5Foded%7etok&x=1"),
                        "t=***&x=1");
    assert_string_equal(red("u=424242%253AAAHxyz-Enc_oded~tok;"), "u=***;");
    /* JSON-escaped, as a server echoes it inside a JSON string. */
    assert_string_equal(red("{\"url\":\"\\/bot424242\\u003aAAHxyz-Enc_oded~tok\\/x\"}"),
                        "{\"url\":\"\\/bot***\\/x\"}");
    /* A near miss stays as it is. */
    assert_string_equal(red("424242%3AAAHxyz-Enc_oded~to!"), "424242%3AAAHxyz-Enc_oded~to!");
}

static void plus_and_percent_for_space(void **state) {
    (void)state;
    secret_add("correct horse battery staple");
    assert_string_equal(red("pw=correct+horse+battery+staple&a=b"), "pw=***&a=b");
    assert_string_equal(red("pw=correct%20horse+battery%20staple"), "pw=***");
    assert_string_equal(red("a+b c"), "a+b c");
}

/* The half after the colon travels alone (Telegram errors, logs of
 * libraries that split the token). */
static void secret_half(void **state) {
    (void)state;
    secret_add("777000:AAE_half-of-the-tok3n");
    assert_string_equal(red("invalid token AAE_half-of-the-tok3n."), "invalid token ***.");
    assert_string_equal(red("invalid token AAE_half-of-the-tok3n%21"), "invalid token ***%21");
    /* The bot id before the colon is public: not masked alone. */
    assert_string_equal(red("bot 777000 says hi"), "bot 777000 says hi");
    /* A short tail is not masked alone, or common words would vanish. */
    secret_add("user:pw12");
    assert_string_equal(red("pw12 and user:pw12"), "pw12 and ***");
}

static void b64(const char *in, char *out) {
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)strlen(in));
}

/* Basic auth: base64 of "user:password", whether the secret is the pair,
 * the password alone (any user name, any alignment) or its URL alphabet. */
static void basic_auth_base64(void **state) {
    (void)state;
    char enc[256], line[512];
    secret_add("alice:Op3n-S3same-9");
    b64("alice:Op3n-S3same-9", enc);
    snprintf(line, sizeof line, "Authorization: Basic %s\r\nHost: x", enc);
    assert_string_equal(red(line), "Authorization: Basic ***\r\nHost: x");

    secret_add("pa55w0rd-only-Secret");
    const char *users[] = {"bob", "carol", "dave1", "e", "ab", NULL};
    for (int i = 0; users[i]; i++) {
        char pair[128];
        snprintf(pair, sizeof pair, "%s:pa55w0rd-only-Secret", users[i]);
        b64(pair, enc);
        snprintf(line, sizeof line, "auth [Basic %s] refused", enc);
        assert_string_equal(red(line), "auth [Basic ***] refused");
        /* Base64url, as in tokens and URLs. */
        for (char *c = enc; *c; c++)
            *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
        snprintf(line, sizeof line, "?a=%s&b", enc);
        assert_masked(line, enc);
    }
    /* base64 that does not contain a secret is left alone. */
    b64("bob:not-a-secret-at-all", enc);
    snprintf(line, sizeof line, "Basic %s", enc);
    assert_string_equal(red(line), line);
}

/* A header list secret (OTLP headers): each value and each credential
 * after its scheme are masked on their own. */
static void header_values(void **state) {
    (void)state;
    secret_add("authorization=Bearer hdr-T0ken-abcdef123,x-api-key=K3y-0987654321");
    assert_string_equal(red("401: Bearer hdr-T0ken-abcdef123 expired"), "401: *** expired");
    assert_string_equal(red("token hdr-T0ken-abcdef123"), "token ***");
    assert_string_equal(red("key K3y-0987654321!"), "key ***!");
    assert_string_equal(red("authorization: Bearer x"), "authorization: Bearer x");
}

/* An [inbound.NAME] callers list: NAME=TOKEN items, blanks after commas;
 * each token is masked alone (a log line never shows the whole list). */
static void caller_tokens(void **state) {
    (void)state;
    secret_add("planner=pl4nner-T0ken-1, auditor = aud1tor-T0ken-2");
    assert_string_equal(red("Bearer pl4nner-T0ken-1 refused"), "Bearer *** refused");
    assert_string_equal(red("X-API-Key: aud1tor-T0ken-2"), "X-API-Key: ***");
    assert_string_equal(red("caller planner asked"), "caller planner asked");
}

/* A secret written percent-encoded (OTLP headers are decoded before they
 * are sent) is masked decoded as well. */
static void encoded_in_manifest(void **state) {
    (void)state;
    secret_add("authorization=Bearer%20enc0ded-hdr-Tok3n");
    assert_string_equal(red("got Bearer enc0ded-hdr-Tok3n back"), "got *** back");
    assert_string_equal(red("got enc0ded-hdr-Tok3n back"), "got *** back");
}

/* Hostile text around secrets with '%' and '\' stays cheap and exact. */
static void ambiguous_spellings(void **state) {
    (void)state;
    secret_add("pct%41%%\\x-secret");
    assert_string_equal(red("a pct%41%%\\x-secret b"), "a *** b");
    assert_string_equal(red("a pct%2541%25%25%5Cx-secret b"), "a *** b");
    char *big = malloc(200001);
    for (size_t i = 0; i < 200000; i++)
        big[i] = "%25\\"[i % 4];
    big[200000] = 0;
    char *d = redact_dup(big);
    assert_string_equal(d, big);
    free(d);
    free(big);
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
        cmocka_unit_test(url_encoded),
        cmocka_unit_test(plus_and_percent_for_space),
        cmocka_unit_test(secret_half),
        cmocka_unit_test(basic_auth_base64),
        cmocka_unit_test(header_values),
        cmocka_unit_test(encoded_in_manifest),
        cmocka_unit_test(caller_tokens),
        cmocka_unit_test(ambiguous_spellings),
        cmocka_unit_test(log_truncation_keeps_secret),
        cmocka_unit_test(error_truncation_keeps_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
