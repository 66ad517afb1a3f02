/* Outbound pacing and the int64 map; see telegram_throttle.h. */
#include "telegram_throttle.h"
#include "hash_mix.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Map: chained hash, grows at load factor 1.                                */

typedef struct tg_map_ent {
    int64_t key;
    void *val;
    struct tg_map_ent *next;
} tg_map_ent;

struct tg_map {
    tg_map_ent **b;
    size_t nb, count;
};

static size_t hash64(int64_t k, size_t nb) {
    return (size_t)(hash_mix64((uint64_t)k) & (nb - 1));
}

tg_map *tg_map_new(void) {
    tg_map *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->nb = 64;
    m->b = calloc(m->nb, sizeof *m->b);
    if (!m->b) {
        free(m);
        return NULL;
    }
    return m;
}

void tg_map_free(tg_map *m, void (*free_val)(void *)) {
    if (!m) return;
    for (size_t i = 0; i < m->nb; i++) {
        for (tg_map_ent *e = m->b[i], *n; e; e = n) {
            n = e->next;
            if (free_val) free_val(e->val);
            free(e);
        }
    }
    free(m->b);
    free(m);
}

void *tg_map_get(const tg_map *m, int64_t key) {
    for (tg_map_ent *e = m->b[hash64(key, m->nb)]; e; e = e->next)
        if (e->key == key) return e->val;
    return NULL;
}

static void grow(tg_map *m) {
    size_t nb = m->nb * 2;
    tg_map_ent **b = calloc(nb, sizeof *b);
    if (!b) return; /* keep working with longer chains */
    for (size_t i = 0; i < m->nb; i++) {
        for (tg_map_ent *e = m->b[i], *n; e; e = n) {
            n = e->next;
            size_t h = hash64(e->key, nb);
            e->next = b[h];
            b[h] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

int tg_map_put(tg_map *m, int64_t key, void *val) {
    size_t h = hash64(key, m->nb);
    for (tg_map_ent *e = m->b[h]; e; e = e->next) {
        if (e->key == key) {
            e->val = val;
            return 0;
        }
    }
    tg_map_ent *e = malloc(sizeof *e);
    if (!e) return -1;
    e->key = key;
    e->val = val;
    e->next = m->b[h];
    m->b[h] = e;
    if (++m->count > m->nb) grow(m);
    return 0;
}

void *tg_map_del(tg_map *m, int64_t key) {
    for (tg_map_ent **pp = &m->b[hash64(key, m->nb)]; *pp; pp = &(*pp)->next) {
        if ((*pp)->key == key) {
            tg_map_ent *e = *pp;
            void *v = e->val;
            *pp = e->next;
            free(e);
            m->count--;
            return v;
        }
    }
    return NULL;
}

size_t tg_map_count(const tg_map *m) {
    return m->count;
}

void tg_map_sweep(tg_map *m, int (*fn)(void *arg, int64_t key, void *val), void *arg) {
    for (size_t i = 0; i < m->nb; i++) {
        for (tg_map_ent **pp = &m->b[i]; *pp;) {
            tg_map_ent *e = *pp;
            if (fn(arg, e->key, e->val)) {
                *pp = e->next;
                free(e);
                m->count--;
            } else {
                pp = &e->next;
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Throttle                                                                  */

typedef struct chat_slot {
    int64_t last; /* time of the last reserved send */
    int has_last;
    int64_t hold;   /* 429: nothing before this */
    int n;          /* entries used in ring */
    int head;       /* oldest entry when full */
    int64_t ring[]; /* group sends in the last minute (groups only) */
} chat_slot;

struct tg_throttle {
    tg_throttle_cfg cfg;
    tg_map *chats;
    int64_t tat_us; /* token bucket as virtual scheduling: theoretical arrival time */
    size_t gc_at;
};

tg_throttle *tg_throttle_new(const tg_throttle_cfg *cfg) {
    tg_throttle *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->cfg = *cfg;
    if (t->cfg.group_per_minute < 0) t->cfg.group_per_minute = 0;
    t->chats = tg_map_new();
    t->gc_at = 1024;
    if (!t->chats) {
        free(t);
        return NULL;
    }
    return t;
}

void tg_throttle_free(tg_throttle *t) {
    if (!t) return;
    tg_map_free(t->chats, free);
    free(t);
}

static chat_slot *slot_of(tg_throttle *t, int64_t chat_id, int create) {
    chat_slot *s = tg_map_get(t->chats, chat_id);
    if (s || !create) return s;
    int ring = chat_id < 0 ? t->cfg.group_per_minute : 0;
    s = calloc(1, sizeof *s + (size_t)ring * sizeof s->ring[0]);
    if (!s) return NULL;
    if (tg_map_put(t->chats, chat_id, s) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

static int64_t earliest(const tg_throttle *t, const chat_slot *s, int64_t chat_id, int64_t now) {
    int64_t e = now;
    if (!s) return e;
    if (s->hold > e) e = s->hold;
    if (s->has_last && t->cfg.chat_interval_ms > 0 && s->last + t->cfg.chat_interval_ms > e)
        e = s->last + t->cfg.chat_interval_ms;
    int g = t->cfg.group_per_minute;
    if (chat_id < 0 && g > 0 && s->n == g && s->ring[s->head] + 60000 > e)
        e = s->ring[s->head] + 60000;
    return e;
}

int64_t tg_throttle_chat_peek(tg_throttle *t, int64_t chat_id, int64_t now) {
    return earliest(t, slot_of(t, chat_id, 0), chat_id, now);
}

int64_t tg_throttle_chat(tg_throttle *t, int64_t chat_id, int64_t now) {
    chat_slot *s = slot_of(t, chat_id, 1);
    int64_t e = earliest(t, s, chat_id, now);
    if (!s) return e;
    s->last = e;
    s->has_last = 1;
    int g = chat_id < 0 ? t->cfg.group_per_minute : 0;
    if (g > 0) {
        if (s->n < g) {
            s->ring[(s->head + s->n) % g] = e;
            s->n++;
        } else {
            s->ring[s->head] = e;
            s->head = (s->head + 1) % g;
        }
    }
    if (tg_map_count(t->chats) >= t->gc_at) tg_throttle_gc(t, now);
    return e;
}

int64_t tg_throttle_global(tg_throttle *t, int64_t now) {
    int r = t->cfg.global_per_s;
    if (r <= 0) return now;
    /* Microseconds keep the arithmetic exact enough without floats. */
    int64_t T = 1000000 / r, tau = T * (r - 1);
    int64_t e = now * 1000;
    if (t->tat_us - tau > e) e = t->tat_us - tau;
    t->tat_us = (t->tat_us > e ? t->tat_us : e) + T;
    return (e + 999) / 1000;
}

void tg_throttle_hold(tg_throttle *t, int64_t chat_id, int64_t until) {
    chat_slot *s = slot_of(t, chat_id, 1);
    if (s && until > s->hold) s->hold = until;
}

static int idle(void *arg, int64_t key, void *val) {
    (void)key;
    int64_t now = *(int64_t *)arg;
    chat_slot *s = val;
    if (s->hold > now || (s->has_last && now - s->last < 61000)) return 0;
    free(s);
    return 1;
}

void tg_throttle_gc(tg_throttle *t, int64_t now) {
    tg_map_sweep(t->chats, idle, &now);
    size_t n = tg_map_count(t->chats);
    t->gc_at = n * 2 > 1024 ? n * 2 : 1024;
}

size_t tg_throttle_chats(const tg_throttle *t) {
    return tg_map_count(t->chats);
}
