/* Prometheus text exposition format 0.0.4 renderer. */
#include "prom_format.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct family {
    char *name, *help;
    rd_metric_type type;
    sbuf body; /* the sample lines of every series so far */
} family;

struct prom_doc {
    family *f;
    size_t n, cap;
    size_t last; /* index of the family used last: visits come grouped */
    bool failed;
};

prom_doc *prom_doc_new(void) {
    return calloc(1, sizeof(prom_doc));
}

void prom_doc_free(prom_doc *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) {
        free(d->f[i].name);
        free(d->f[i].help);
        sbuf_free(&d->f[i].body);
    }
    free(d->f);
    free(d);
}

void prom_put_double(sbuf *b, double v) {
    if (isnan(v)) {
        sbuf_puts(b, "NaN");
        return;
    }
    if (isinf(v)) {
        sbuf_puts(b, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    sbuf_puts(b, tmp);
}

/* Escapes backslash, line feed and (in label values) the double quote;
 * invalid UTF-8 becomes U+FFFD, which Prometheus requires of both. */
static void put_escaped(sbuf *b, const char *text, bool quote) {
    const unsigned char *p = (const unsigned char *)(text ? text : "");
    size_t n = strlen((const char *)p);
    while (n) {
        if (*p >= 0x80) {
            size_t k = utf8_seq(p, n);
            if (k) {
                sbuf_putn(b, (const char *)p, k);
            } else {
                sbuf_puts(b, "\xEF\xBF\xBD");
                k = 1;
            }
            p += k;
            n -= k;
            continue;
        }
        if (*p == '\\')
            sbuf_puts(b, "\\\\");
        else if (*p == '\n')
            sbuf_puts(b, "\\n");
        else if (quote && *p == '"')
            sbuf_puts(b, "\\\"");
        else
            sbuf_putc(b, (char)*p);
        p++;
        n--;
    }
}

void prom_put_help(sbuf *b, const char *help) {
    put_escaped(b, help, false);
}

void prom_put_label_value(sbuf *b, const char *v) {
    put_escaped(b, v, true);
}

void prom_put_name(sbuf *b, const char *name, bool metric) {
    const char *p = name && *name ? name : "_";
    for (size_t i = 0; p[i]; i++) {
        char c = p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (metric && c == ':') || (i > 0 && c >= '0' && c <= '9');
        sbuf_putc(b, ok ? c : '_');
    }
}

static family *family_get(prom_doc *d, const char *name, const char *help, rd_metric_type type) {
    if (d->n && d->last < d->n && !strcmp(d->f[d->last].name, name)) {
        family *f = &d->f[d->last];
        return f->type == type ? f : NULL;
    }
    for (size_t i = 0; i < d->n; i++) {
        if (!strcmp(d->f[i].name, name)) {
            d->last = i;
            return d->f[i].type == type ? &d->f[i] : NULL;
        }
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 32;
        family *nf = realloc(d->f, cap * sizeof *nf);
        if (!nf) {
            d->failed = true;
            return NULL;
        }
        d->f = nf;
        d->cap = cap;
    }
    family *f = &d->f[d->n];
    *f = (family){.name = strdup(name), .help = strdup(help ? help : ""), .type = type};
    if (!f->name || !f->help) {
        free(f->name);
        free(f->help);
        d->failed = true;
        return NULL;
    }
    d->last = d->n++;
    return f;
}

/* {a="x",b="y"[,le="0.5"]}; nothing at all when there are no labels. */
static void put_labels(sbuf *b, const rd_metric_view *m, const rd_series_view *s, const char *le) {
    size_t n = s->label_values ? m->nlabels : 0;
    if (!n && !le) return;
    sbuf_putc(b, '{');
    for (size_t i = 0; i < n; i++) {
        if (i) sbuf_putc(b, ',');
        prom_put_name(b, m->label_names[i], false);
        sbuf_puts(b, "=\"");
        prom_put_label_value(b, s->label_values[i]);
        sbuf_putc(b, '"');
    }
    if (le) {
        if (n) sbuf_putc(b, ',');
        sbuf_puts(b, "le=\"");
        sbuf_puts(b, le);
        sbuf_putc(b, '"');
    }
    sbuf_putc(b, '}');
}

static void put_sample(sbuf *b, const char *name, const char *suffix, const rd_metric_view *m,
                       const rd_series_view *s, const char *le) {
    prom_put_name(b, name, true);
    sbuf_puts(b, suffix);
    put_labels(b, m, s, le);
    sbuf_putc(b, ' ');
}

void prom_doc_add(void *doc, const rd_metric_view *m, const rd_series_view *s) {
    prom_doc *d = doc;
    if (!d || !m || !s || !m->name) return;
    family *f = family_get(d, m->name, m->help, m->type);
    if (!f) return;
    sbuf *b = &f->body;
    if (m->type == RD_METRIC_HISTOGRAM) {
        sbuf le = {0};
        for (size_t i = 0; i < s->nbuckets && s->bucket_le && s->bucket_counts; i++) {
            sbuf_reset(&le);
            prom_put_double(&le, s->bucket_le[i]);
            put_sample(b, m->name, "_bucket", m, s, le.p ? le.p : "0");
            sbuf_printf(b, "%llu\n", (unsigned long long)s->bucket_counts[i]);
        }
        sbuf_free(&le);
        /* +Inf always equals _count, as the format requires. */
        put_sample(b, m->name, "_bucket", m, s, "+Inf");
        sbuf_printf(b, "%llu\n", (unsigned long long)s->count);
        put_sample(b, m->name, "_sum", m, s, NULL);
        prom_put_double(b, s->sum);
        sbuf_putc(b, '\n');
        put_sample(b, m->name, "_count", m, s, NULL);
        sbuf_printf(b, "%llu\n", (unsigned long long)s->count);
    } else {
        put_sample(b, m->name, "", m, s, NULL);
        prom_put_double(b, s->value);
        sbuf_putc(b, '\n');
    }
}

void prom_doc_add_simple(prom_doc *d, rd_metric_type type, const char *name, const char *help,
                         double value) {
    rd_metric_view mv = {.size = sizeof mv, .name = name, .help = help, .type = type};
    rd_series_view sv = {.size = sizeof sv, .value = value};
    prom_doc_add(d, &mv, &sv);
}

static const char *type_name(rd_metric_type t) {
    switch (t) {
    case RD_METRIC_COUNTER:
        return "counter";
    case RD_METRIC_GAUGE:
        return "gauge";
    case RD_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

char *prom_doc_render(prom_doc *d, size_t *len) {
    if (!d || d->failed) return NULL;
    sbuf out = {0};
    for (size_t i = 0; i < d->n; i++) {
        family *f = &d->f[i];
        if (f->body.failed) {
            sbuf_free(&out);
            return NULL;
        }
        sbuf_puts(&out, "# HELP ");
        prom_put_name(&out, f->name, true);
        sbuf_putc(&out, ' ');
        prom_put_help(&out, f->help);
        sbuf_puts(&out, "\n# TYPE ");
        prom_put_name(&out, f->name, true);
        sbuf_printf(&out, " %s\n", type_name(f->type));
        if (f->body.len) sbuf_putn(&out, f->body.p, f->body.len);
    }
    return sbuf_take(&out, len);
}
