/*
 * The update journal in the state store.
 *
 * Every fetched update is written to the state store (one transaction per
 * batch, key j/<seq>) before the next getUpdates confirms it to Telegram, so
 * a crash loses nothing; entries are pruned once the core's handled
 * watermark passes them, and whatever is left is submitted again at start.
 *
 * Beside the journal: the meta row (offset, sequence, handled watermark, and
 * the bot and server the state belongs to), the answered marks r/<seq>
 * (telegram_answered.c) and the webhook dedupe index w/<update_id>.
 */
#include "telegram.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Webhook dedupe index entries kept behind the newest update id. */
#define DEDUPE_WINDOW 100000

/* ------------------------------------------------------------------------ */
/* Rows and the watermark                                                    */

void tg_wkey(char *buf, size_t n, int64_t tg_id) {
    tg_key19(buf, n, 'w', tg_id);
}

char *tg_meta_json(tg *t) {
    pthread_mutex_lock(&t->in_mu);
    int64_t offset = t->tg_offset, last = t->last_seq;
    pthread_mutex_unlock(&t->in_mu);
    cJSON *o = cJSON_CreateObject();
    char num[32];
    cJSON_AddNumberToObject(o, "v", 1);
    cJSON_AddStringToObject(o, "api_base", t->c.api_base);
    snprintf(num, sizeof num, "%lld", (long long)t->token_bot_id);
    cJSON_AddRawToObject(o, "bot_id", num);
    snprintf(num, sizeof num, "%lld", (long long)offset);
    cJSON_AddRawToObject(o, "offset", num);
    snprintf(num, sizeof num, "%lld", (long long)last);
    cJSON_AddRawToObject(o, "last_seq", num);
    snprintf(num, sizeof num, "%lld", (long long)t->persisted);
    cJSON_AddRawToObject(o, "handled", num);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Whether the term the state was loaded in is still current. */
int tg_term_current(tg *t) {
    int64_t term = atomic_load(&t->term);
    return !t->lead_key[0] || (term && t->h->lead(t->ctx, t->lead_key) == term);
}

/* Whether a watermark or answered marks wait to be written. */
static int acks_due(tg *t) {
    if (t->lead_key[0] && !tg_term_current(t)) return 0; /* a standby owns no watermark */
    return atomic_load(&t->acked) > t->persisted || tg_replied_pending(t);
}

int tg_acks_take(tg *t, tg_acks *a) {
    memset(a, 0, sizeof *a);
    if (!acks_due(t)) return 0;
    int64_t now = tg_now(t);
    t->persisted_ms = now;
    a->prev = t->persisted;
    int64_t w = atomic_load(&t->acked);
    if (w > t->persisted) t->persisted = w;
    w = t->persisted;
    a->done = tg_replied_take(t, w, now, &a->nd);
    int64_t w1 = w < TG_SEQ_MAX ? w + 1 : TG_SEQ_MAX; /* acks are our own seqs */
    tg_jkey(a->end, sizeof a->end, w1);
    tg_key19(a->rend, sizeof a->rend, 'r', w1);
    a->ops = calloc(a->nd + 4, sizeof *a->ops); /* 3 ranges, the marks, the caller's */
    a->rk = calloc(a->nd + 1, sizeof *a->rk);
    if (!a->ops || !a->rk) {
        tg_acks_end(t, a, 0);
        return -1;
    }
    a->ops[a->n++] = (rd_kv_op){.op = RD_KV_DEL_RANGE, .key = "j/", .key_end = a->end};
    a->ops[a->n++] = (rd_kv_op){.op = RD_KV_DEL_RANGE, .key = "r/", .key_end = a->rend};
    for (size_t i = 0; i < a->nd; i++) {
        if (a->done[i] <= w) continue; /* the watermark covers it */
        tg_key19(a->rk[i], sizeof a->rk[i], 'r', a->done[i]);
        a->ops[a->n++] = (rd_kv_op){.op = RD_KV_PUT, .key = a->rk[i], .val = "1", .val_len = 1};
    }
    if (t->c.mode == TG_MODE_WEBHOOK) {
        pthread_mutex_lock(&t->in_mu);
        int64_t newest = tg_recent_newest(t);
        pthread_mutex_unlock(&t->in_mu);
        if (tg_valid_update_id(newest) && newest > DEDUPE_WINDOW) {
            tg_wkey(a->wend, sizeof a->wend, newest - DEDUPE_WINDOW);
            a->ops[a->n++] = (rd_kv_op){.op = RD_KV_DEL_RANGE, .key = "w/", .key_end = a->wend};
        }
    }
    return 1;
}

void tg_acks_end(tg *t, tg_acks *a, int committed) {
    if (committed) {
        t->persist_failed = 0;
        tg_replied_committed(t);
    } else {
        t->persisted = a->prev; /* try again on the next tick */
        t->persist_failed = 1;
        tg_replied_put_back(t, a->done, a->nd);
        t->h->log(t->ctx, RD_LOG_WARN, "cannot record the handled watermark %lld in the store",
                  (long long)atomic_load(&t->acked));
    }
    free(a->rk);
    free(a->ops);
    free(a->done);
    memset(a, 0, sizeof *a);
}

void tg_persist_acks(tg *t, int force) {
    /* Each write is a synced transaction: at most one per
     * TG_PERSIST_GAP_MS, unless senders wait for their marks to be stored
     * (max_unrecorded_replies); after a failed write they wait for the
     * tick too. The journal's writes carry the watermark for free. */
    if (!force && tg_now(t) - t->persisted_ms < TG_PERSIST_GAP_MS &&
        (t->persist_failed || !tg_replied_urgent(t)))
        return;
    tg_acks a;
    if (tg_acks_take(t, &a) <= 0) return;
    char *meta = tg_meta_json(t);
    int ok = 0;
    if (meta) {
        a.ops[a.n++] =
            (rd_kv_op){.op = RD_KV_PUT, .key = TG_META_KEY, .val = meta, .val_len = strlen(meta)};
        ok = t->h->kv_txn(t->ctx, a.ops, a.n) == RD_OK;
    }
    free(meta);
    tg_acks_end(t, &a, ok);
}

/* ------------------------------------------------------------------------ */
/* Loading at start                                                          */

typedef struct scan_row {
    int64_t seq;
    char *raw;
    size_t len;
    struct scan_row *next;
} scan_row;

typedef struct {
    scan_row *head, **tail;
    size_t n;
} scan_acc;

static int scan_cb(void *arg, const char *key, const void *val, size_t len) {
    scan_acc *a = arg;
    if (strncmp(key, "j/", 2) != 0) return 0;
    char *end = NULL;
    errno = 0;
    long long seq = strtoll(key + 2, &end, 10);
    if (errno || !end || *end || seq < 0 || seq > TG_SEQ_MAX) return 0;
    scan_row *r = calloc(1, sizeof *r);
    if (!r) return 1;
    r->seq = seq;
    r->raw = malloc(len + 1);
    if (!r->raw) {
        free(r);
        return 1;
    }
    memcpy(r->raw, val, len);
    r->raw[len] = 0;
    r->len = len;
    *a->tail = r;
    a->tail = &r->next;
    a->n++;
    return 0;
}

typedef struct rep_acc {
    int64_t *v; /* ascending: the scan is in key order */
    size_t n, cap;
} rep_acc;

static int rep_scan_cb(void *arg, const char *key, const void *val, size_t len) {
    (void)val, (void)len;
    rep_acc *a = arg;
    if (strncmp(key, "r/", 2) != 0) return 0;
    char *end = NULL;
    errno = 0;
    long long seq = strtoll(key + 2, &end, 10);
    if (errno || !end || *end || seq < 0 || seq > TG_SEQ_MAX) return 0;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int64_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return 1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = seq;
    return 0;
}

static int rep_has(const rep_acc *a, int64_t seq) {
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a->v[mid] == seq) return 1;
        if (a->v[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

rd_status tg_journal_load(tg *t, rd_error *err) {
    (void)err;
    const rd_host *h = t->h;
    char *val = NULL;
    size_t len = 0;
    int64_t handled = -1, last = -1, offset = 0, bot_id = 0;
    if (h->kv_get(t->ctx, TG_META_KEY, &val, &len) == RD_OK && val) {
        cJSON *m = tg_json_parse(val, len);
        if (m) {
            tg_json_i64(m, "handled", &handled);
            tg_json_i64(m, "last_seq", &last);
            tg_json_i64(m, "offset", &offset);
            tg_json_i64(m, "bot_id", &bot_id);
            const cJSON *b = cJSON_GetObjectItemCaseSensitive(m, "api_base");
            if (cJSON_IsString(b))
                snprintf(t->stored_api_base, sizeof t->stored_api_base, "%s", b->valuestring);
            cJSON_Delete(m);
        } else {
            h->log(t->ctx, RD_LOG_WARN, "stored offset record is unreadable; starting afresh");
        }
    }
    free(val);
    /* Written by a build that let an extreme update_id through, or damaged:
     * such values would overflow the sequence again. Rows past TG_SEQ_MAX
     * are never read back; they go. */
    char big[40];
    tg_jkey(big, sizeof big, TG_SEQ_MAX + 1);
    rd_kv_op drop_big = {.op = RD_KV_DEL_RANGE, .key = big, .key_end = "j0"};
    if (handled > TG_SEQ_MAX) {
        /* Everything journaled was handled. */
        h->log(t->ctx, RD_LOG_WARN,
               "stored handled watermark %lld is out of range; the journal is cleared and the "
               "sequence starts afresh",
               (long long)handled);
        drop_big.key = "j/";
        rd_kv_op r = {.op = RD_KV_DEL_RANGE, .key = "r/", .key_end = "r0"};
        h->kv_txn(t->ctx, &r, 1);
        handled = last = -1;
    }
    h->kv_txn(t->ctx, &drop_big, 1);
    if (handled < -1) handled = -1;
    if (last < -1 || last > TG_SEQ_MAX) {
        h->log(t->ctx, RD_LOG_WARN, "stored sequence %lld is out of range; continuing from %lld",
               (long long)last, (long long)handled);
        last = handled;
    }
    if (offset < 0 || offset > TG_ID_MAX + 1) {
        h->log(t->ctx, RD_LOG_WARN,
               "stored getUpdates offset %lld is out of range; polling starts without one",
               (long long)offset);
        offset = 0;
    }
    t->stored_bot_id = bot_id;
    int same_bot = !bot_id || bot_id == t->token_bot_id;
    int same_server = !t->stored_api_base[0] || !strcmp(t->stored_api_base, t->c.api_base);
    if (!same_bot)
        h->log(t->ctx, RD_LOG_WARN,
               "the stored state belongs to bot %lld, the token to bot %lld: pending updates of "
               "the old bot are dropped and polling starts without an offset",
               (long long)bot_id, (long long)t->token_bot_id);
    else if (!same_server)
        h->log(t->ctx, RD_LOG_WARN,
               "api_base changed from %s to %s: update ids of the new server are unrelated, so "
               "polling starts without an offset (journaled updates are kept)",
               t->stored_api_base, t->c.api_base);
    t->tg_offset = same_bot && same_server ? offset : 0;
    t->persisted = handled;
    atomic_store(&t->acked, handled);

    rep_acc ra = {0};
    h->kv_scan(t->ctx, "r/", rep_scan_cb, &ra);
    scan_acc acc = {.head = NULL, .tail = &acc.head};
    if (h->kv_scan(t->ctx, "j/", scan_cb, &acc) != RD_OK)
        h->log(t->ctx, RD_LOG_WARN, "cannot read the update journal");
    size_t replay = 0, dropped = 0, answered = 0;
    int64_t maxseq = -1;
    for (scan_row *r = acc.head, *nx; r; r = nx) {
        nx = r->next;
        if (r->seq > maxseq) maxseq = r->seq;
        if (r->seq > handled && same_bot && rep_has(&ra, r->seq)) {
            /* Answered before a crash: its reply went out already. */
            char k[40];
            tg_jkey(k, sizeof k, r->seq);
            h->kv_del(t->ctx, k);
            answered++;
        } else if (r->seq > handled && same_bot) {
            cJSON *u = tg_json_parse(r->raw, r->len);
            tg_update up;
            if (u && tg_update_parse(u, &up) == 0) {
                tg_item *it = calloc(1, sizeof *it);
                if (it) {
                    it->seq = r->seq;
                    it->tg_id = up.update_id;
                    it->u = up;
                    it->state = TG_ITEM_READY;
                    it->replayed = 1;
                    tg_queue_push(t, it);
                    if (t->c.mode == TG_MODE_WEBHOOK)
                        tg_recent_set(t, it->tg_id, TG_RECENT_PENDING);
                    if (!t->tg_offset && t->c.mode == TG_MODE_LONGPOLL) {
                        tg_replay_key *nk =
                            realloc(t->replay, (t->nreplay + 1) * sizeof *t->replay);
                        if (nk) {
                            t->replay = nk;
                            t->replay[t->nreplay++] = (tg_replay_key){
                                it->tg_id, it->u.chat_id, it->u.message_id, (int)it->u.kind};
                        }
                    }
                    replay++;
                } else {
                    tg_update_free(&up);
                }
            } else {
                h->log(t->ctx, RD_LOG_ERROR, "journal entry %lld is unreadable; dropped",
                       (long long)r->seq);
                char k[40];
                tg_jkey(k, sizeof k, r->seq);
                h->kv_del(t->ctx, k);
            }
            cJSON_Delete(u);
        } else if (r->seq > handled) {
            dropped++;
        }
        free(r->raw);
        free(r);
    }
    if (dropped) {
        char end[40];
        tg_jkey(end, sizeof end, INT64_MAX / 2);
        rd_kv_op op = {.op = RD_KV_DEL_RANGE, .key = "j/", .key_end = end};
        h->kv_txn(t->ctx, &op, 1);
        h->log(t->ctx, RD_LOG_WARN, "dropped %zu journaled updates of the previous bot", dropped);
    } else if (handled >= 0) {
        char end[40];
        tg_jkey(end, sizeof end, handled + 1);
        rd_kv_op op = {.op = RD_KV_DEL_RANGE, .key = "j/", .key_end = end};
        h->kv_txn(t->ctx, &op, 1);
    }
    if (ra.n) {
        char end[40];
        tg_key19(end, sizeof end, 'r', INT64_MAX / 2);
        rd_kv_op op = {.op = RD_KV_DEL_RANGE, .key = "r/", .key_end = end};
        h->kv_txn(t->ctx, &op, 1);
        if (ra.v[ra.n - 1] > maxseq) maxseq = ra.v[ra.n - 1];
    }
    free(ra.v);
    if (answered)
        h->log(t->ctx, RD_LOG_INFO,
               "%zu journaled updates were answered before the last stop; not sent again",
               answered);
    last = last > maxseq ? last : maxseq;
    last = last > handled ? last : handled;
    t->last_seq = last;
    if (replay)
        h->log(t->ctx, RD_LOG_INFO,
               "%zu journaled updates were not handled before the last stop; they go first",
               replay);
    tg_gauge(t, t->m_pending, (double)t->npending);
    return RD_OK;
}
