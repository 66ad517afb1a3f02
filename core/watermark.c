/* Handled-watermark tracking: ids are mostly added in ascending order and
 * finished in any order; the ring keeps pending ids sorted so the
 * watermark advances by popping finished ids from the front. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

void wm_init(watermark *w) {
    memset(w, 0, sizeof *w);
    w->wm = -1;
    w->max_seen = -1;
}

void wm_free(watermark *w) {
    free(w->ids);
    free(w->done);
    w->ids = NULL;
    w->done = NULL;
}

#define AT(w, i) (((w)->head + (i)) % (w)->cap)

static void grow(watermark *w) {
    size_t cap = w->cap ? w->cap * 2 : 64;
    int64_t *ids = xmalloc(cap * sizeof *ids);
    unsigned char *done = xmalloc(cap);
    for (size_t i = 0; i < w->len; i++) {
        ids[i] = w->ids[AT(w, i)];
        done[i] = w->done[AT(w, i)];
    }
    free(w->ids);
    free(w->done);
    w->ids = ids;
    w->done = done;
    w->cap = cap;
    w->head = 0;
}

/* Index of the first pending entry with id >= x. */
static size_t lower_bound(const watermark *w, int64_t x) {
    size_t lo = 0, hi = w->len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->ids[AT(w, mid)] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int wm_add(watermark *w, int64_t id) {
    if (w->wm >= 0 && id <= w->wm) return 1;
    size_t pos = lower_bound(w, id);
    if (pos < w->len && w->ids[AT(w, pos)] == id) return 1;
    if (w->len == w->cap) grow(w);
    /* Shift the tail right by one; a no-op for the usual append. */
    for (size_t i = w->len; i > pos; i--) {
        w->ids[AT(w, i)] = w->ids[AT(w, i - 1)];
        w->done[AT(w, i)] = w->done[AT(w, i - 1)];
    }
    w->ids[AT(w, pos)] = id;
    w->done[AT(w, pos)] = 0;
    w->len++;
    if (id > w->max_seen) w->max_seen = id;
    return 0;
}

bool wm_done(watermark *w, int64_t id) {
    size_t pos = lower_bound(w, id);
    if (pos >= w->len || w->ids[AT(w, pos)] != id) return false;
    w->done[AT(w, pos)] = 1;
    bool moved = false;
    while (w->len && w->done[w->head]) {
        w->wm = w->ids[w->head];
        w->head = (w->head + 1) % w->cap;
        w->len--;
        moved = true;
    }
    return moved;
}

int64_t wm_get(const watermark *w) {
    return w->wm;
}

size_t wm_pending(const watermark *w) {
    return w->len;
}

void wm_remove(watermark *w, int64_t id) {
    size_t pos = lower_bound(w, id);
    if (pos >= w->len || w->ids[AT(w, pos)] != id) return;
    for (size_t i = pos; i + 1 < w->len; i++) {
        w->ids[AT(w, i)] = w->ids[AT(w, i + 1)];
        w->done[AT(w, i)] = w->done[AT(w, i + 1)];
    }
    w->len--;
}
