/* Incremental text/event-stream parser: events may be split anywhere
 * across reads; LF, CRLF and CR end lines; ':' lines are comments;
 * several data: lines join with '\n'; a blank line dispatches. */
#include "a2a.h"

#include <stdlib.h>
#include <string.h>

void a2a_sse_init(a2a_sse *p, size_t max_event) {
    memset(p, 0, sizeof *p);
    p->max = max_event;
}

void a2a_sse_free(a2a_sse *p) {
    free(p->line);
    free(p->data);
    memset(p, 0, sizeof *p);
}

static int grow(char **b, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 256;
    while (nc < need)
        nc *= 2;
    char *n = realloc(*b, nc);
    if (!n) return -1;
    *b = n;
    *cap = nc;
    return 0;
}

static int line_done(a2a_sse *p, a2a_sse_fn fn, void *arg) {
    char *l = p->line;
    size_t n = p->llen;
    if (n == 0) {
        if (p->have_data) {
            if (grow(&p->data, &p->dcap, p->dlen + 1)) return -1;
            p->data[p->dlen] = 0;
            fn(arg, p->event[0] ? p->event : "message", p->data, p->dlen);
        }
        p->dlen = 0;
        p->have_data = 0;
        p->event[0] = 0;
        return 0;
    }
    if (l[0] == ':') return 0;
    size_t fl = 0;
    while (fl < n && l[fl] != ':')
        fl++;
    const char *v = l + fl;
    size_t vl = 0;
    if (fl < n) {
        v = l + fl + 1;
        vl = n - fl - 1;
        if (vl && *v == ' ') {
            v++;
            vl--;
        }
    }
    if (fl == 4 && !memcmp(l, "data", 4)) {
        size_t need = p->dlen + vl + 2;
        if (p->max && need > p->max + 2) return -1;
        if (grow(&p->data, &p->dcap, need)) return -1;
        if (p->have_data) p->data[p->dlen++] = '\n';
        memcpy(p->data + p->dlen, v, vl);
        p->dlen += vl;
        p->have_data = 1;
    } else if (fl == 5 && !memcmp(l, "event", 5)) {
        size_t c = vl < sizeof p->event - 1 ? vl : sizeof p->event - 1;
        memcpy(p->event, v, c);
        p->event[c] = 0;
    }
    /* id, retry and unknown fields are ignored. */
    return 0;
}

int a2a_sse_feed(a2a_sse *p, const char *buf, size_t n, a2a_sse_fn fn, void *arg) {
    if (p->overflow) return -1;
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (c == '\n' && p->last_cr) {
            p->last_cr = 0;
            continue;
        }
        p->last_cr = c == '\r';
        if (c == '\n' || c == '\r') {
            if (line_done(p, fn, arg)) {
                p->overflow = 1;
                return -1;
            }
            p->llen = 0;
            continue;
        }
        if (p->max && p->llen > p->max + 16) {
            p->overflow = 1;
            return -1;
        }
        if (grow(&p->line, &p->lcap, p->llen + 1)) {
            p->overflow = 1;
            return -1;
        }
        p->line[p->llen++] = c;
    }
    return 0;
}
