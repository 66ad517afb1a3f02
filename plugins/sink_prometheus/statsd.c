/* StatsD line formatting with per-series memory for counter deltas. */
#include "statsd.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct prev {
    struct prev *next;
    char *key;
    double a, b; /* counter value, or histogram count and sum */
} prev;

#define NSLOTS 256

struct statsd_fmt {
    char *prefix;
    bool tags;
    prev *slots[NSLOTS];
    sbuf out, key;
};

statsd_fmt *statsd_fmt_new(const char *prefix, bool tags) {
    statsd_fmt *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->prefix = strdup(prefix ? prefix : "");
    s->tags = tags;
    if (!s->prefix) {
        free(s);
        return NULL;
    }
    return s;
}

void statsd_fmt_free(statsd_fmt *s) {
    if (!s) return;
    for (size_t i = 0; i < NSLOTS; i++) {
        prev *p = s->slots[i];
        while (p) {
            prev *n = p->next;
            free(p->key);
            free(p);
            p = n;
        }
    }
    sbuf_free(&s->out);
    sbuf_free(&s->key);
    free(s->prefix);
    free(s);
}

void statsd_begin(statsd_fmt *s) {
    sbuf_reset(&s->out);
}

const char *statsd_text(statsd_fmt *s, size_t *len) {
    *len = s->out.failed ? 0 : s->out.len;
    return s->out.p ? s->out.p : "";
}

static uint64_t fnv(const char *k) {
    uint64_t h = 1469598103934665603ULL;
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ULL;
    return h;
}

/* The remembered values of a series, created zeroed on first sight. */
static prev *remember(statsd_fmt *s, const char *key) {
    prev **pp = &s->slots[fnv(key) % NSLOTS];
    for (prev *p = *pp; p; p = p->next)
        if (!strcmp(p->key, key)) return p;
    prev *p = calloc(1, sizeof *p);
    if (!p || !(p->key = strdup(key))) {
        free(p);
        return NULL;
    }
    p->next = *pp;
    *pp = p;
    return p;
}

/* StatsD has no escaping: characters with a meaning in the line become _. */
static void put_clean(sbuf *b, const char *v) {
    for (const char *p = v ? v : ""; *p; p++) {
        char c = *p;
        sbuf_putc(b, (c == ':' || c == '|' || c == '#' || c == ',' || c == '@' || c == '\n' ||
                      c == '\r' || c == ' ')
                         ? '_'
                         : c);
    }
}

static void put_num(sbuf *b, double v) {
    char tmp[40];
    if (!isfinite(v)) v = 0;
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    sbuf_puts(b, tmp);
}

static void line(statsd_fmt *s, const rd_metric_view *m, const rd_series_view *v,
                 const char *suffix, double value, const char *type) {
    sbuf *b = &s->out;
    sbuf_puts(b, s->prefix);
    put_clean(b, m->name);
    sbuf_puts(b, suffix);
    size_t n = v->label_values ? m->nlabels : 0;
    if (!s->tags)
        for (size_t i = 0; i < n; i++) {
            sbuf_putc(b, '.');
            put_clean(b, v->label_values[i]);
        }
    sbuf_putc(b, ':');
    put_num(b, value);
    sbuf_putc(b, '|');
    sbuf_puts(b, type);
    if (s->tags && n) {
        sbuf_puts(b, "|#");
        for (size_t i = 0; i < n; i++) {
            if (i) sbuf_putc(b, ',');
            put_clean(b, m->label_names[i]);
            sbuf_putc(b, ':');
            put_clean(b, v->label_values[i]);
        }
    }
    sbuf_putc(b, '\n');
}

void statsd_visit(void *arg, const rd_metric_view *m, const rd_series_view *v) {
    statsd_fmt *s = arg;
    if (!s || !m || !v || !m->name) return;
    if (m->type == RD_METRIC_GAUGE) {
        line(s, m, v, "", v->value, "g");
        return;
    }
    /* Key: name and label values, separated by a byte no label holds. */
    sbuf_reset(&s->key);
    sbuf_puts(&s->key, m->name);
    for (size_t i = 0; v->label_values && i < m->nlabels; i++) {
        sbuf_putc(&s->key, '\x1f');
        sbuf_puts(&s->key, v->label_values[i] ? v->label_values[i] : "");
    }
    prev *p = s->key.failed ? NULL : remember(s, s->key.p);
    if (!p) return;
    if (m->type == RD_METRIC_COUNTER) {
        double d = v->value - p->a;
        if (d < 0) d = v->value; /* reset: the registry restarted from zero */
        p->a = v->value;
        if (d != 0) line(s, m, v, "", d, "c");
    } else {
        double dc = (double)v->count - p->a, ds = v->sum - p->b;
        if (dc < 0) dc = (double)v->count, ds = v->sum;
        p->a = (double)v->count;
        p->b = v->sum;
        if (dc != 0) {
            line(s, m, v, "_count", dc, "c");
            line(s, m, v, "_sum", ds, "c");
        }
    }
}

void statsd_packets(const char *text, size_t len, size_t max,
                    void (*send)(void *arg, const char *data, size_t len), void *arg) {
    size_t start = 0, end = 0; /* the packet is text[start, end) */
    while (end < len) {
        const char *nl = memchr(text + end, '\n', len - end);
        size_t next = nl ? (size_t)(nl - text) + 1 : len;
        if (next - start > max && end > start) {
            send(arg, text + start, end - start - 1); /* without the last '\n' */
            start = end;
        }
        end = next;
    }
    if (end > start) {
        size_t n = end - start;
        if (text[end - 1] == '\n') n--;
        if (n) send(arg, text + start, n);
    }
}
