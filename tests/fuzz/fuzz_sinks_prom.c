/* Fuzz target: the Prometheus exposition renderer and the /proc parsers.
 * Input: NUL-separated fields (name, help, label name, label value, ...).
 * Invariants: every line is a comment or a sample of the metric, there is
 * one TYPE line, no label value breaks a line, and the text is valid
 * UTF-8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prom_format.h"
#include "prom_process.h"

static char *field(const uint8_t **p, const uint8_t *end) {
    const uint8_t *s = *p, *z = memchr(s, 0, (size_t)(end - s));
    size_t n = z ? (size_t)(z - s) : (size_t)(end - s);
    char *out = malloc(n + 1);
    memcpy(out, s, n);
    out[n] = 0;
    *p = z ? z + 1 : end;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* The /proc parsers take any text. */
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    proc_stats ps = {0};
    proc_parse_stat(text, 100, 4096, 1.7e9, &ps);
    proc_parse_btime(text);
    free(text);

    if (size < 1) return 0;
    const uint8_t *p = data + 1, *end = data + size;
    char *name = field(&p, end), *help = field(&p, end);
    char *ln[2] = {field(&p, end), field(&p, end)};
    char *lv[2] = {field(&p, end), field(&p, end)};
    const char *const names[] = {ln[0], ln[1], NULL};
    const char *vals[] = {lv[0], lv[1]};
    rd_metric_type type = (rd_metric_type)(1 + data[0] % 3);
    rd_metric_view m = {.size = sizeof m,
                        .name = *name ? name : "x",
                        .help = help,
                        .type = type,
                        .label_names = names,
                        .nlabels = (size_t)(data[0] >> 6) % 3};
    const double le[] = {0.1, 1, 10};
    const uint64_t cum[] = {1, 2, 3, 4};
    rd_series_view s = {.size = sizeof s,
                        .label_values = vals,
                        .value = (double)size / 3,
                        .bucket_le = le,
                        .bucket_counts = cum,
                        .nbuckets = 3,
                        .count = 4,
                        .sum = 1.5};
    prom_doc *d = prom_doc_new();
    prom_doc_add(d, &m, &s);
    prom_doc_add(d, &m, &s);
    size_t len;
    char *out = prom_doc_render(d, &len);
    if (!out) __builtin_trap();
    int types = 0;
    for (char *l = out; l < out + len;) {
        char *eol = memchr(l, '\n', (size_t)(out + len - l));
        if (!eol) __builtin_trap(); /* every line ends */
        if (!strncmp(l, "# TYPE ", 7))
            types++;
        else if (strncmp(l, "# HELP ", 7) && (*l == '#' || *l == ' ' || *l == '{'))
            __builtin_trap();
        /* A sample line: name chars up to '{' or ' '. */
        if (*l != '#')
            for (char *c = l; c < eol && *c != '{' && *c != ' '; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                      (*c >= '0' && *c <= '9') || *c == '_' || *c == ':'))
                    __builtin_trap();
        l = eol + 1;
    }
    if (types != 1) __builtin_trap();
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq((const unsigned char *)out + i, len - i);
        if (!k) __builtin_trap();
        i += k;
    }
    free(out);
    prom_doc_free(d);
    free(name), free(help), free(ln[0]), free(ln[1]), free(lv[0]), free(lv[1]);
    return 0;
}
