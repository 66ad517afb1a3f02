/*
 * Group -> supergroup migrations.
 *
 * When a group is upgraded, Telegram gives it a new chat id. The manifest
 * (allowlist, persona chats), /persona choices and conversation ids all
 * name the old one, so the transport keeps speaking it to the core: updates
 * from the new id are submitted with the old id, replies to the old id go
 * to the new one. Migrations come from the service messages
 * (migrate_to_chat_id in the old group, migrate_from_chat_id in the new
 * one) and from the migrate_to_chat_id parameter of a refused send; they
 * are kept in the state store (m/<old> = "<new> <order>") and in memory,
 * at most migrations_max, the oldest forgotten first.
 */
#include "telegram.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tg_mig {
    int64_t from, to;
    int64_t order; /* insertion order, for eviction */
    struct tg_mig *next;
} tg_mig;

static void mkey(char *buf, size_t n, int64_t from) {
    snprintf(buf, n, "m/%lld", (long long)from);
}

/* mig_mu held. Links e in (maps and FIFO); 0 or -1 without memory. */
static int link_locked(tg *t, tg_mig *e) {
    if (tg_map_put(t->mig_to, e->from, e) != 0) return -1;
    if (tg_map_put(t->mig_from, e->to, e) != 0) {
        tg_map_del(t->mig_to, e->from);
        return -1;
    }
    if (t->mig_tail)
        t->mig_tail->next = e;
    else
        t->mig_head = e;
    t->mig_tail = e;
    t->nmig++;
    return 0;
}

/* mig_mu held. Forgets the oldest migration; returns it (caller frees). */
static tg_mig *evict_locked(tg *t) {
    tg_mig *e = t->mig_head;
    if (!e) return NULL;
    t->mig_head = e->next;
    if (!t->mig_head) t->mig_tail = NULL;
    tg_map_del(t->mig_to, e->from);
    if (tg_map_get(t->mig_from, e->to) == e) tg_map_del(t->mig_from, e->to);
    t->nmig--;
    return e;
}

static void gauge(tg *t) {
    tg_gauge_l(t, t->m_tracked, "migrations", (double)t->nmig);
}

typedef struct mig_row {
    int64_t from, to, order;
} mig_row;

typedef struct mig_acc {
    mig_row *v;
    size_t n, cap;
} mig_acc;

static int scan_cb(void *arg, const char *key, const void *val, size_t len) {
    mig_acc *a = arg;
    char buf[64];
    if (strncmp(key, "m/", 2) || len >= sizeof buf) return 0;
    memcpy(buf, val, len);
    buf[len] = 0;
    char *end = NULL;
    errno = 0;
    long long from = strtoll(key + 2, &end, 10);
    if (errno || !end || *end) return 0;
    long long to = 0, order = 0;
    if (sscanf(buf, "%lld %lld", &to, &order) != 2) return 0;
    if (!tg_valid_chat_id(from) || !tg_valid_chat_id(to) || from >= 0 || to >= 0 || from == to)
        return 0;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        mig_row *v = realloc(a->v, cap * sizeof *v);
        if (!v) return 1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = (mig_row){from, to, order};
    return 0;
}

static int by_order(const void *x, const void *y) {
    int64_t a = ((const mig_row *)x)->order, b = ((const mig_row *)y)->order;
    return a < b ? -1 : a > b;
}

void tg_mig_load(tg *t) {
    mig_acc a = {0};
    t->h->kv_scan(t->ctx, "m/", scan_cb, &a);
    if (a.n) qsort(a.v, a.n, sizeof *a.v, by_order);
    pthread_mutex_lock(&t->mig_mu);
    for (size_t i = 0; i < a.n; i++) {
        tg_mig *e = calloc(1, sizeof *e);
        if (!e) break;
        *e = (tg_mig){a.v[i].from, a.v[i].to, a.v[i].order, NULL};
        tg_mig *old = tg_map_get(t->mig_to, e->from);
        if (old || link_locked(t, e) != 0) {
            free(e);
            continue;
        }
        if (e->order >= t->mig_order) t->mig_order = e->order + 1;
    }
    /* A smaller migrations_max than last time: drop the oldest. */
    while (t->nmig > (size_t)t->c.migrations_max) {
        tg_mig *e = evict_locked(t);
        char k[40];
        mkey(k, sizeof k, e->from);
        t->h->kv_del(t->ctx, k);
        free(e);
    }
    gauge(t);
    size_t n = t->nmig;
    pthread_mutex_unlock(&t->mig_mu);
    free(a.v);
    if (n)
        t->h->log(t->ctx, RD_LOG_INFO,
                  "%zu group migrations known: their supergroups speak as the old groups", n);
}

void tg_mig_free(tg *t) {
    for (tg_mig *e = t->mig_head, *n; e; e = n) {
        n = e->next;
        free(e);
    }
    t->mig_head = t->mig_tail = NULL;
    t->nmig = 0;
    tg_map_free(t->mig_to, NULL);
    tg_map_free(t->mig_from, NULL);
    t->mig_to = t->mig_from = NULL;
}

int64_t tg_mig_forward(tg *t, int64_t chat) {
    pthread_mutex_lock(&t->mig_mu);
    for (int hop = 0; hop < 4; hop++) {
        tg_mig *e = tg_map_get(t->mig_to, chat);
        if (!e) break;
        chat = e->to;
    }
    pthread_mutex_unlock(&t->mig_mu);
    return chat;
}

int64_t tg_mig_back(tg *t, int64_t chat) {
    pthread_mutex_lock(&t->mig_mu);
    for (int hop = 0; hop < 4; hop++) {
        tg_mig *e = tg_map_get(t->mig_from, chat);
        if (!e) break;
        chat = e->from;
    }
    pthread_mutex_unlock(&t->mig_mu);
    return chat;
}

void tg_mig_record(tg *t, int64_t from, int64_t to, const char *how) {
    /* Only groups migrate, to supergroups: both ids negative. */
    if (!tg_valid_chat_id(from) || !tg_valid_chat_id(to) || from >= 0 || to >= 0 || from == to)
        return;
    pthread_mutex_lock(&t->mig_mu);
    tg_mig *cur = tg_map_get(t->mig_to, from);
    if (cur && cur->to == to) {
        pthread_mutex_unlock(&t->mig_mu);
        return; /* known: logged once, when first seen */
    }
    /* A supergroup does not migrate again, and a chain back to `from`
     * would loop: refuse both. */
    if (tg_map_get(t->mig_to, to) || tg_map_get(t->mig_from, from) || cur) {
        pthread_mutex_unlock(&t->mig_mu);
        t->h->log(t->ctx, RD_LOG_WARN,
                  "ignoring a migration of group %lld to %lld (%s): it contradicts a known one",
                  (long long)from, (long long)to, how);
        return;
    }
    tg_mig *e = calloc(1, sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&t->mig_mu);
        return;
    }
    *e = (tg_mig){from, to, t->mig_order++, NULL};
    tg_mig *gone = NULL;
    if (t->nmig >= (size_t)t->c.migrations_max) gone = evict_locked(t);
    char k[40], v[64], gk[40];
    mkey(k, sizeof k, from);
    snprintf(v, sizeof v, "%lld %lld", (long long)to, (long long)e->order);
    rd_kv_op ops[2] = {{.op = RD_KV_PUT, .key = k, .val = v, .val_len = strlen(v)}};
    size_t nops = 1;
    if (gone) {
        mkey(gk, sizeof gk, gone->from);
        ops[nops++] = (rd_kv_op){.op = RD_KV_DEL, .key = gk};
    }
    rd_status st = t->h->kv_txn(t->ctx, ops, nops);
    int linked = link_locked(t, e) == 0;
    if (!linked) free(e);
    gauge(t);
    pthread_mutex_unlock(&t->mig_mu);
    if (gone) {
        t->h->log(t->ctx, RD_LOG_WARN,
                  "migrations_max (%lld) reached: the migration of group %lld is forgotten; its "
                  "supergroup now speaks with its own id",
                  (long long)t->c.migrations_max, (long long)gone->from);
        free(gone);
    }
    t->h->log(t->ctx, RD_LOG_WARN,
              "group %lld was upgraded to supergroup %lld (%s): replies go to the new id and its "
              "messages are routed as the old group (allowlist, persona, conversation)%s",
              (long long)from, (long long)to, how,
              st == RD_OK ? "" : "; NOT stored: it holds until the next restart");
}
