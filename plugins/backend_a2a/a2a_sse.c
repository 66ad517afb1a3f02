/* See a2a_sse.h. Line terminators are CRLF, LF or CR; a CR at the end of
 * one chunk and an LF at the start of the next are one terminator. */
#include "a2a_sse.h"

#include <stdlib.h>
#include <string.h>

void a2a_sse_init(a2a_sse *p, size_t max, a2a_sse_fn fn, void *arg) {
    memset(p, 0, sizeof *p);
    p->fn = fn;
    p->arg = arg;
    p->max = max ? max : 1 << 20;
}

void a2a_sse_free(a2a_sse *p) {
    free(p->line);
    free(p->data);
    p->line = p->data = NULL;
    p->llen = p->lcap = p->dlen = p->dcap = 0;
}

static int grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    char *b = realloc(*buf, n);
    if (!b) return -1;
    *buf = b;
    *cap = n;
    return 0;
}

static void reset_event(a2a_sse *p) {
    p->dlen = 0;
    p->have_data = 0;
    p->event[0] = 0;
}

static int dispatch(a2a_sse *p) {
    if (!p->have_data) {
        reset_event(p);
        return A2A_SSE_OK;
    }
    /* Data lines were each followed by '\n'; drop the last one. */
    if (p->dlen && p->data[p->dlen - 1] == '\n') p->dlen--;
    if (grow(&p->data, &p->dcap, p->dlen + 1)) return A2A_SSE_NOMEM;
    p->data[p->dlen] = 0;
    p->events++;
    int stop = p->fn ? p->fn(p->arg, p->event[0] ? p->event : "message", p->data, p->dlen) : 0;
    reset_event(p);
    if (stop) {
        p->stopped = 1;
        return A2A_SSE_STOPPED;
    }
    return A2A_SSE_OK;
}

/* One complete line (without terminator). */
static int line(a2a_sse *p, const char *s, size_t n) {
    if (n == 0) return dispatch(p);
    if (s[0] == ':') return A2A_SSE_OK; /* comment, e.g. a keep-alive */
    const char *colon = memchr(s, ':', n);
    size_t flen = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t vlen = (size_t)(s + n - v);
    if (vlen && v[0] == ' ') {
        v++;
        vlen--;
    }
    if (flen == 4 && !memcmp(s, "data", 4)) {
        if (p->dlen + vlen + 1 > p->max) return A2A_SSE_TOO_BIG;
        if (grow(&p->data, &p->dcap, p->dlen + vlen + 2)) return A2A_SSE_NOMEM;
        memcpy(p->data + p->dlen, v, vlen);
        p->dlen += vlen;
        p->data[p->dlen++] = '\n';
        p->have_data = 1;
    } else if (flen == 5 && !memcmp(s, "event", 5)) {
        size_t k = vlen < sizeof p->event - 1 ? vlen : sizeof p->event - 1;
        memcpy(p->event, v, k);
        p->event[k] = 0;
    }
    /* id, retry and unknown fields: nothing to do for a one-shot client. */
    return A2A_SSE_OK;
}

int a2a_sse_feed(a2a_sse *p, const char *buf, size_t n) {
    if (p->failed) return p->failed;
    if (p->stopped) return A2A_SSE_STOPPED;
    if (!n) return A2A_SSE_OK;
    size_t i = 0;
    if (!p->started) {
        /* A BOM may only appear at the very start; it can arrive split. */
        static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
        while (i < n && p->llen < 3 && (unsigned char)buf[i] == bom[p->llen]) {
            if (grow(&p->line, &p->lcap, p->llen + 1)) return p->failed = A2A_SSE_NOMEM;
            p->line[p->llen++] = buf[i++];
        }
        if (p->llen == 3) {
            p->llen = 0;
            p->started = 1;
        } else if (i < n || p->llen == 0) {
            p->started = 1; /* not a BOM: keep what was taken as line bytes */
        }
        if (!p->started) return A2A_SSE_OK;
    }
    if (p->after_cr && i < n && buf[i] == '\n') i++;
    p->after_cr = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && buf[j] != '\n' && buf[j] != '\r')
            j++;
        const char *s = buf + i;
        size_t len = j - i;
        if (j == n) {
            /* No terminator yet: keep the piece. */
            if (p->llen + len > p->max) return p->failed = A2A_SSE_TOO_BIG;
            if (grow(&p->line, &p->lcap, p->llen + len + 1)) return p->failed = A2A_SSE_NOMEM;
            memcpy(p->line + p->llen, s, len);
            p->llen += len;
            return A2A_SSE_OK;
        }
        int rc;
        /* Any line longer than max fails, wherever the reads split it. */
        if (p->llen + len > p->max) return p->failed = A2A_SSE_TOO_BIG;
        if (p->llen) {
            if (grow(&p->line, &p->lcap, p->llen + len + 1)) return p->failed = A2A_SSE_NOMEM;
            memcpy(p->line + p->llen, s, len);
            p->llen += len;
            rc = line(p, p->line, p->llen);
            p->llen = 0;
        } else {
            rc = line(p, s, len);
        }
        if (rc < 0) return p->failed = rc;
        if (rc == A2A_SSE_STOPPED) return rc;
        if (buf[j] == '\r') {
            if (j + 1 < n) {
                if (buf[j + 1] == '\n') j++;
            } else {
                p->after_cr = 1;
            }
        }
        i = j + 1;
    }
    return A2A_SSE_OK;
}

int a2a_sse_finish(a2a_sse *p) {
    if (p->failed) return p->failed;
    if (p->stopped) return A2A_SSE_STOPPED;
    if (p->llen) {
        int rc = line(p, p->line, p->llen);
        p->llen = 0;
        if (rc < 0) return p->failed = rc;
    }
    reset_event(p); /* an unterminated event is not dispatched */
    return A2A_SSE_OK;
}
