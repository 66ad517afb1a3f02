/*
 * Intake: getMe, getUpdates long polling, the update journal, the webhook
 * route, and submitting to the core in order.
 *
 * Every fetched update is written to the state store (one transaction per
 * batch, key j/<seq>) before the next getUpdates confirms it to Telegram, so
 * a crash loses nothing; entries are pruned once the core's handled
 * watermark passes them, and whatever is left is submitted again at start.
 *
 * The id handed to the core ("seq") is the Telegram update_id whenever ids
 * go up, which is always the case for one bot on one server. When they go
 * backwards (another Bot API server, a week-long pause, or a webhook
 * delivering an older update late) seq continues at last_seq + 1 instead,
 * because the core needs ids that increase.
 */
#include "telegram.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define META_KEY "meta"
#define RECENT_CAP 8192
/* Webhook dedupe index entries kept behind the newest update id. */
#define DEDUPE_WINDOW 100000

enum { RECENT_PENDING = 1, RECENT_SUBMITTED = 2 };

static void jkey(char *buf, size_t n, int64_t seq) {
    snprintf(buf, n, "j/%019lld", (long long)(seq < 0 ? 0 : seq));
}

static void wkey(char *buf, size_t n, int64_t tg_id) {
    snprintf(buf, n, "w/%019lld", (long long)(tg_id < 0 ? 0 : tg_id));
}

/* ------------------------------------------------------------------------ */
/* Recent update ids (webhook dedupe), under in_mu                           */

static int recent_get(tg *t, int64_t id) {
    return (int)(intptr_t)tg_map_get(t->recent, id);
}

static void recent_set(tg *t, int64_t id, int state) {
    if (!tg_map_get(t->recent, id)) {
        int64_t old = t->recent_ring[t->recent_pos];
        if (old) tg_map_del(t->recent, old);
        t->recent_ring[t->recent_pos] = id;
        t->recent_pos = (t->recent_pos + 1) % RECENT_CAP;
    }
    tg_map_put(t->recent, id, (void *)(intptr_t)state);
}

static void recent_forget(tg *t, int64_t id) {
    tg_map_del(t->recent, id);
    for (size_t i = 0; i < RECENT_CAP; i++)
        if (t->recent_ring[i] == id) t->recent_ring[i] = 0;
}

/* ------------------------------------------------------------------------ */
/* Pending items, under in_mu                                                */

/* NULL when out of memory or when no id is left for the core (tg_id is
 * checked by the callers; last_seq only grows by one per update). */
static tg_item *item_new(tg *t, int64_t tg_id) {
    int64_t next;
    if (!tg_valid_update_id(tg_id) || !tg_add_ok(t->last_seq, 1, &next) || next > TG_SEQ_MAX)
        return NULL;
    tg_item *it = calloc(1, sizeof *it);
    if (!it) return NULL;
    it->tg_id = tg_id;
    it->seq = next > tg_id ? next : tg_id;
    t->last_seq = it->seq;
    it->state = TG_ITEM_RESERVED;
    if (t->tail)
        t->tail->next = it;
    else
        t->head = it;
    t->tail = it;
    t->npending++;
    return it;
}

static void item_pop(tg *t) {
    tg_item *it = t->head;
    t->head = it->next;
    if (!t->head) t->tail = NULL;
    t->npending--;
    tg_update_free(&it->u);
    free(it);
}

/* Routes one update: skip() it or submit() it. */
rd_status tg_submit_item(tg *t, tg_item *it) {
    tg_route_cfg rc = {.bot_username = t->bot_username,
                       .bot_id = t->bot_id,
                       .group_all = t->c.group_all,
                       .channel_posts = t->c.channel_posts,
                       .edited_messages = t->c.edited_messages,
                       .commands = tg_cmds_names(t)};
    /* Group upgrades: remembered, and the new id speaks as the old one. */
    if (it->u.migrate_to) tg_mig_record(t, it->u.chat_id, it->u.migrate_to, "service message");
    if (it->u.migrate_from) tg_mig_record(t, it->u.migrate_from, it->u.chat_id, "service message");
    int64_t chat = it->u.chat_id ? tg_mig_back(t, it->u.chat_id) : 0;
    if (it->u.kind == TG_UPD_CALLBACK_QUERY) return tg_buttons_press(t, it, chat);
    tg_routed r;
    const char *why = tg_route(&it->u, &rc, &r);
    if (!why && (r.flags & RD_MSG_EDITED) && t->c.edits == TG_EDITS_NOTE) {
        /* Answered with a notice (not in channels), the agent is not run again. */
        if (it->u.kind == TG_UPD_EDITED_MESSAGE)
            tg_edit_notice(t, chat, it->u.thread_id, it->u.message_id);
        free(r.text);
        why = "edit_noted";
    }
    if (why) {
        t->h->skip(t->ctx, it->seq, why);
        tg_count(t, t->m_ignored, why, NULL, 1);
        return RD_OK;
    }
    if (it->u.chat_type == TG_CHAT_CHANNEL) tg_note_chat(t, it->u.chat_id, it->u.chat_type);
    char *meta = tg_inbound_meta(&it->u, it->tg_id);
    rd_inbound in = {.size = sizeof in,
                     .update_id = it->seq,
                     .chat_id = chat,
                     .user_id = it->u.user_id,
                     .message_id = it->u.message_id,
                     .thread_id = it->u.thread_id,
                     .text = r.text,
                     .text_len = r.len,
                     .flags = r.flags,
                     .meta = meta};
    rd_status st = it->u.media ? tg_media_submit(t, it, &in) : t->h->submit(t->ctx, &in);
    free(meta);
    free(r.text);
    /* Shared webhooks record handled updates per update, not by watermark. */
    if (st == RD_OK && !t->shared) tg_replied_register(t, chat, it->u.message_id, it->seq);
    if (st == RD_OK || st == RD_E_DUPLICATE || st == RD_E_FULL) return st;
    /* Anything else is a refusal the core will not change its mind about:
     * mark it handled so the watermark moves on. */
    t->h->log(t->ctx, RD_LOG_ERROR, "update %lld: the router refused it (status %d); skipped",
              (long long)it->tg_id, (int)st);
    t->h->skip(t->ctx, it->seq, "refused");
    tg_count(t, t->m_ignored, "refused", NULL, 1);
    return RD_OK;
}

/* Submits ready items in seq order until the core pushes back. */
static void drain_locked(tg *t) {
    t->full = 0;
    t->album_hold = 0;
    while (t->head && t->head->state != TG_ITEM_RESERVED) {
        tg_item *it = t->head;
        if (it->state == TG_ITEM_ABSORBED) {
            /* Its album went to the core with the first part. */
            t->h->skip(t->ctx, it->seq, "album_part");
            if (t->c.mode == TG_MODE_WEBHOOK) recent_set(t, it->tg_id, RECENT_SUBMITTED);
        } else if (it->state == TG_ITEM_READY) {
            if (atomic_load(&t->quiescing) || !atomic_load(&t->have_me)) return;
            if (tg_submit_item(t, it) == RD_E_FULL) {
                /* An album still arriving is no back-pressure: take its parts. */
                t->full = !t->album_hold;
                return;
            }
            if (t->c.mode == TG_MODE_WEBHOOK) recent_set(t, it->tg_id, RECENT_SUBMITTED);
        }
        item_pop(t);
    }
}

/* ------------------------------------------------------------------------ */
/* State store                                                               */

static char *meta_json(tg *t) {
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
static int tg_term_current(tg *t) {
    int64_t term = atomic_load(&t->term);
    return !t->lead_key[0] || (term && t->h->lead(t->ctx, t->lead_key) == term);
}

/* Replicas: only the leader polls (or takes webhooks). While the lead is
 * not current (store unreachable, another replica leads) nothing is
 * fetched or confirmed; the same term coming back resumes as it was. A new
 * term starts from what the store holds: another replica may have moved
 * on, and what was fetched here but not submitted is in the journal. */
static int tg_leading(tg *t) {
    if (!t->lead_key[0]) return 1;
    int64_t term = t->h->lead(t->ctx, t->lead_key), mine = atomic_load(&t->term);
    if (term == mine && term) {
        if (t->lead_paused)
            t->h->log(t->ctx, RD_LOG_INFO, "active again (term %lld)", (long long)term);
        t->lead_paused = 0;
        return 1;
    }
    if (!term) {
        if (mine && !t->lead_paused)
            t->h->log(t->ctx, RD_LOG_WARN,
                      "not the leader any more (store unreachable or another replica leads): "
                      "fetching and confirming nothing");
        t->lead_paused = 1;
        return 0;
    }
    if (mine && t->c.mode == TG_MODE_WEBHOOK) {
        /* Webhook handlers may hold items of the old term: start afresh. */
        t->h->log(t->ctx, RD_LOG_ERROR,
                  "another replica led in between; restarting to rejoin as a standby");
        atomic_store(&t->term, 0);
        t->h->request_stop(t->ctx);
        return 0;
    }
    atomic_store(&t->term, 0);
    pthread_mutex_lock(&t->in_mu);
    while (t->head)
        item_pop(t);
    free(t->replay);
    t->replay = NULL;
    t->nreplay = 0;
    rd_error e = {0};
    t->offset_sent = -1;
    rd_status st = tg_intake_load(t, &e);
    pthread_mutex_unlock(&t->in_mu);
    if (st != RD_OK) return 0;
    atomic_store(&t->term, term);
    t->lead_paused = 0;
    t->h->log(t->ctx, RD_LOG_INFO, "active: %s this bot (term %lld)",
              t->c.mode == TG_MODE_WEBHOOK ? "taking webhooks for" : "polling", (long long)term);
    return 1;
}

void tg_persist_acks(tg *t, int force) {
    if (t->lead_key[0] && !tg_term_current(t)) return; /* a standby owns no watermark */
    int64_t w = atomic_load(&t->acked);
    size_t pending = tg_replied_pending(t);
    if (w <= t->persisted && !pending) return;
    /* Each write is a synced transaction: at most fifty a second, which
     * bounds what a kill -9 re-sends to ~20 ms of replies. */
    int64_t now = tg_now(t);
    if (!force && now - t->persisted_ms < 20) return;
    t->persisted_ms = now;
    int64_t prev = t->persisted;
    if (w > t->persisted) t->persisted = w;
    w = t->persisted;

    size_t nd = 0;
    int64_t *done = tg_replied_take(t, w, now, &nd);

    char end[40], wend[40], rend[40];
    int64_t w1 = w < TG_SEQ_MAX ? w + 1 : TG_SEQ_MAX; /* acks are our own seqs */
    jkey(end, sizeof end, w1);
    snprintf(rend, sizeof rend, "r/%019lld", (long long)(w1 < 0 ? 0 : w1));
    char *meta = meta_json(t);
    rd_kv_op *ops = calloc(nd + 4, sizeof *ops);
    char(*rk)[40] = calloc(nd + 1, sizeof *rk);
    size_t n = 0;
    if (!ops || !rk || !meta) goto fail;
    ops[n++] = (rd_kv_op){.op = RD_KV_DEL_RANGE, .key = "j/", .key_end = end};
    ops[n++] = (rd_kv_op){.op = RD_KV_PUT, .key = META_KEY, .val = meta, .val_len = strlen(meta)};
    ops[n++] = (rd_kv_op){.op = RD_KV_DEL_RANGE, .key = "r/", .key_end = rend};
    for (size_t i = 0; i < nd; i++) {
        if (done[i] <= w) continue; /* the watermark covers it */
        snprintf(rk[i], sizeof rk[i], "r/%019lld", (long long)done[i]);
        ops[n++] = (rd_kv_op){.op = RD_KV_PUT, .key = rk[i], .val = "1", .val_len = 1};
    }
    if (t->c.mode == TG_MODE_WEBHOOK) {
        pthread_mutex_lock(&t->in_mu);
        int64_t newest = t->recent_ring[(t->recent_pos + RECENT_CAP - 1) % RECENT_CAP];
        pthread_mutex_unlock(&t->in_mu);
        if (tg_valid_update_id(newest) && newest > DEDUPE_WINDOW) {
            wkey(wend, sizeof wend, newest - DEDUPE_WINDOW);
            ops[n++] = (rd_kv_op){.op = RD_KV_DEL_RANGE, .key = "w/", .key_end = wend};
        }
    }
    if (t->h->kv_txn(t->ctx, ops, n) == RD_OK) goto out;
fail:
    t->persisted = prev; /* try again on the next tick */
    tg_replied_put_back(t, done, nd);
    t->h->log(t->ctx, RD_LOG_WARN, "cannot record the handled watermark %lld in the store",
              (long long)w);
out:
    free(rk);
    free(ops);
    free(meta);
    free(done);
}

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

rd_status tg_intake_load(tg *t, rd_error *err) {
    (void)err;
    const rd_host *h = t->h;
    char *val = NULL;
    size_t len = 0;
    int64_t handled = -1, last = -1, offset = 0, bot_id = 0;
    if (h->kv_get(t->ctx, META_KEY, &val, &len) == RD_OK && val) {
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
    jkey(big, sizeof big, TG_SEQ_MAX + 1);
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
            jkey(k, sizeof k, r->seq);
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
                    if (t->tail)
                        t->tail->next = it;
                    else
                        t->head = it;
                    t->tail = it;
                    t->npending++;
                    if (t->c.mode == TG_MODE_WEBHOOK) recent_set(t, it->tg_id, RECENT_PENDING);
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
                jkey(k, sizeof k, r->seq);
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
        jkey(end, sizeof end, INT64_MAX / 2);
        rd_kv_op op = {.op = RD_KV_DEL_RANGE, .key = "j/", .key_end = end};
        h->kv_txn(t->ctx, &op, 1);
        h->log(t->ctx, RD_LOG_WARN, "dropped %zu journaled updates of the previous bot", dropped);
    } else if (handled >= 0) {
        char end[40];
        jkey(end, sizeof end, handled + 1);
        rd_kv_op op = {.op = RD_KV_DEL_RANGE, .key = "j/", .key_end = end};
        h->kv_txn(t->ctx, &op, 1);
    }
    if (ra.n) {
        char end[40];
        snprintf(end, sizeof end, "r/%019lld", (long long)(INT64_MAX / 2));
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

/* ------------------------------------------------------------------------ */
/* Handshake                                                                 */

rd_status tg_get_me(tg *t, int64_t budget_ms, rd_error *err) {
    int64_t deadline = tg_now(t) + budget_ms;
    for (int attempt = 0;; attempt++) {
        tg_call call;
        tg_api_call(t, "getMe", "{}", 0, deadline, &call);
        if (call.cls == TG_C_OK) {
            const cJSON *r = call.resp.result;
            int64_t id = 0;
            const cJSON *un = cJSON_GetObjectItemCaseSensitive(r, "username");
            if (!tg_json_i64(r, "id", &id) || !tg_valid_pos_id(id) || !cJSON_IsString(un)) {
                tg_call_free(&call);
                t->h->error(err, RD_E_UNAVAILABLE, "protocol", "getMe: result lacks id/username");
                return RD_E_UNAVAILABLE;
            }
            t->bot_id = id;
            snprintf(t->bot_username, sizeof t->bot_username, "%s", un->valuestring);
            if (id != t->token_bot_id)
                t->h->log(t->ctx, RD_LOG_WARN, "getMe says bot %lld, the token says %lld",
                          (long long)id, (long long)t->token_bot_id);
            atomic_store(&t->have_me, 1);
            t->h->log(t->ctx, RD_LOG_INFO, "connected as @%s (id %lld)", t->bot_username,
                      (long long)id);
            tg_call_free(&call);
            return RD_OK;
        }
        if (call.cls == TG_C_PERMANENT) {
            int64_t code = call.parsed && call.resp.error_code ? call.resp.error_code : call.http;
            if (code == 401)
                t->h->error(err, RD_E_CONFIG, "fatal",
                            "token: Telegram rejected it (401 Unauthorized); revoked or mistyped?");
            else if (code == 404)
                t->h->error(err, RD_E_CONFIG, "fatal",
                            "api_base: getMe answered 404 Not Found; is %s a Bot API server?",
                            t->c.api_base);
            else
                t->h->error(err, RD_E_CONFIG, "fatal", "getMe failed: %s", call.detail);
            tg_call_free(&call);
            return RD_E_CONFIG;
        }
        if (call.cls == TG_C_ABORTED) {
            tg_call_free(&call);
            t->h->error(err, RD_E_UNAVAILABLE, "transient", "stopped");
            return RD_E_UNAVAILABLE;
        }
        int64_t wait = tg_backoff(t, attempt);
        if (tg_now(t) + wait >= deadline) {
            t->h->error(err, RD_E_UNAVAILABLE, "transient", "getMe: %s", call.detail);
            tg_call_free(&call);
            return RD_E_UNAVAILABLE;
        }
        t->h->log(t->ctx, RD_LOG_WARN, "getMe: %s; retrying", call.detail);
        tg_call_free(&call);
        if (tg_sleep(t, wait, &t->quiescing)) {
            t->h->error(err, RD_E_UNAVAILABLE, "transient", "stopped");
            return RD_E_UNAVAILABLE;
        }
    }
}

static tg_class set_webhook(tg *t, char *detail, size_t n) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "url", t->c.webhook_url);
    cJSON_AddStringToObject(o, "secret_token", t->c.secret_token);
    cJSON_AddNumberToObject(o, "max_connections", (double)t->c.max_connections);
    cJSON_AddRawToObject(o, "allowed_updates", t->c.allowed_updates_json);
    cJSON_AddBoolToObject(o, "drop_pending_updates", t->c.drop_pending_updates);
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    tg_call call;
    tg_api_call(t, "setWebhook", body, 0, tg_now(t) + t->c.request_timeout_ms, &call);
    free(body);
    snprintf(detail, n, "%s", call.detail);
    tg_class cls = call.cls;
    tg_call_free(&call);
    return cls;
}

static void delete_webhook(tg *t, int64_t budget_ms) {
    tg_call call;
    tg_api_call(t, "deleteWebhook", "{\"drop_pending_updates\":false}", 0, tg_now(t) + budget_ms,
                &call);
    if (call.cls != TG_C_OK && call.cls != TG_C_ABORTED)
        t->h->log(t->ctx, RD_LOG_WARN, "deleteWebhook: %s", call.detail);
    tg_call_free(&call);
}

/* Called from start(): a refused setWebhook is a configuration error. */
rd_status tg_start_webhook(tg *t, rd_error *err) {
    char detail[320];
    tg_class cls = set_webhook(t, detail, sizeof detail);
    if (cls == TG_C_OK) {
        t->webhook_set = 1;
        t->h->log(t->ctx, RD_LOG_INFO, "webhook set to the configured webhook_url");
        return RD_OK;
    }
    if (cls == TG_C_PERMANENT) {
        t->h->error(err, RD_E_CONFIG, "fatal", "webhook_url: setWebhook refused: %s", detail);
        return RD_E_CONFIG;
    }
    t->h->log(t->ctx, RD_LOG_WARN, "setWebhook: %s; will retry", detail);
    return RD_OK;
}

/* ------------------------------------------------------------------------ */
/* Long polling                                                              */

/* Whether this update was replayed from the journal at start (polling
 * without a known offset may bring it back). Intake thread only. */
static int is_replayed(tg *t, const cJSON *raw) {
    tg_update u;
    if (tg_update_parse(raw, &u) != 0) return 0;
    int found = 0;
    for (size_t i = 0; i < t->nreplay && !found; i++) {
        const tg_replay_key *k = &t->replay[i];
        found = k->tg_id == u.update_id && k->kind == (int)u.kind && k->chat_id == u.chat_id &&
                k->message_id == u.message_id;
    }
    tg_update_free(&u);
    return found;
}

/* Logs a refused update id: the first time, then every 1000th, so a server
 * repeating it cannot flood the log. */
static void refuse_update_id(tg *t, const char *where, const cJSON *item) {
    long long n = atomic_fetch_add(&t->refused_ids, 1);
    char shown[40];
    int64_t id;
    if (tg_json_i64_value(item, &id))
        snprintf(shown, sizeof shown, "%lld", (long long)id);
    else if (cJSON_IsNumber(item))
        snprintf(shown, sizeof shown, "%.6g", item->valuedouble);
    else if (cJSON_IsString(item))
        snprintf(shown, sizeof shown, "%.24s", item->valuestring);
    else
        snprintf(shown, sizeof shown, "(not a number)");
    if (n % 1000 == 0)
        t->h->log(t->ctx, RD_LOG_WARN,
                  "%s: update_id %s is outside 0..%lld or not an integer; refused (%lld so far). "
                  "Telegram's ids fit in 53 bits: is api_base a Bot API server?",
                  where, shown, (long long)TG_ID_MAX, n + 1);
    tg_count(t, t->m_ignored, "bad_update_id", NULL, 1);
}

typedef struct batch_ent {
    int64_t id;
    const cJSON *u;
} batch_ent;

static int by_id(const void *a, const void *b) {
    int64_t x = ((const batch_ent *)a)->id, y = ((const batch_ent *)b)->id;
    return x < y ? -1 : x > y;
}

/* Journals one getUpdates result and queues it. Returns 0, 1 when it held
 * only refused updates (poll again after a pause), or -1 when the journal
 * write failed (the offset then stays, so Telegram sends the batch
 * again). */
static int handle_batch(tg *t, const cJSON *result) {
    if (!cJSON_IsArray(result)) {
        t->h->log(t->ctx, RD_LOG_ERROR, "getUpdates: result is not an array; polling again");
        tg_count(t, t->m_api_err, "getUpdates", "malformed", 1);
        return -1;
    }
    int total = cJSON_GetArraySize(result);
    if (total <= 0) return 0;
    batch_ent *v = calloc((size_t)total, sizeof *v);
    if (!v) return -1;
    size_t n = 0, refused = 0;
    for (const cJSON *e = result->child; e && n < (size_t)total; e = e->next) {
        const cJSON *uid = cJSON_GetObjectItemCaseSensitive(e, "update_id");
        if (!uid) {
            t->h->log(t->ctx, RD_LOG_WARN, "getUpdates: an element without update_id ignored");
            tg_count(t, t->m_ignored, "no_update_id", NULL, 1);
            continue;
        }
        if (!tg_json_i64_value(uid, &v[n].id) || !tg_valid_update_id(v[n].id)) {
            /* Cannot be confirmed (offset = id + 1) nor ordered: refused.
             * A server that keeps sending it gets polled at a slower pace. */
            refuse_update_id(t, "getUpdates", uid);
            refused++;
            continue;
        }
        v[n++].u = e;
    }
    qsort(v, n, sizeof *v, by_id);
    int64_t max_id = n ? v[n - 1].id : 0;
    /* Duplicates inside one reply would be a server bug; keep one. Polling
     * without a known offset can also bring back updates replayed from the
     * journal: the same update (id, chat, message) is taken once. */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && v[i].id == v[m - 1].id) continue;
        if (t->nreplay && is_replayed(t, v[i].u)) {
            t->h->log(t->ctx, RD_LOG_INFO, "update %lld is already journaled; taken once",
                      (long long)v[i].id);
            continue;
        }
        v[m++] = v[i];
    }
    n = m;
    if (n == 0) {
        free(v);
        if (max_id <= 0) return refused ? 1 : 0;
        /* All known already: still move the offset past them. */
        pthread_mutex_lock(&t->in_mu);
        int64_t prev = t->tg_offset;
        if (max_id + 1 > t->tg_offset) t->tg_offset = max_id + 1;
        pthread_mutex_unlock(&t->in_mu);
        char *meta = meta_json(t);
        rd_kv_op op = {.op = RD_KV_PUT, .key = META_KEY, .val = meta, .val_len = strlen(meta)};
        if (!meta || t->h->kv_txn(t->ctx, &op, 1) != RD_OK) {
            pthread_mutex_lock(&t->in_mu);
            t->tg_offset = prev;
            pthread_mutex_unlock(&t->in_mu);
        }
        free(meta);
        return 0;
    }
    pthread_mutex_lock(&t->in_mu);
    int64_t offset = t->tg_offset;
    pthread_mutex_unlock(&t->in_mu);
    if (offset > 0 && v[0].id < offset) {
        /* Telegram never returns ids below the offset it was given, unless
         * it does not know that offset: another server or id space. Asking
         * the same offset again would spin, so continue from its ids. */
        t->h->log(t->ctx, RD_LOG_WARN,
                  "getUpdates returned update %lld below the offset %lld: the Bot API server's "
                  "update ids were reset (new server, or a long pause); continuing from its ids",
                  (long long)v[0].id, (long long)offset);
        tg_count(t, t->m_resets, NULL, NULL, 1);
    }
    tg_item **items = calloc(n, sizeof *items);
    char **raw = calloc(n, sizeof *raw);
    rd_kv_op *ops = calloc(n + 1, sizeof *ops);
    char(*keys)[40] = calloc(n, sizeof *keys);
    int rc = -1;
    if (!items || !raw || !ops || !keys) goto out;
    for (size_t i = 0; i < n; i++) {
        raw[i] = cJSON_PrintUnformatted(v[i].u);
        if (!raw[i]) goto out;
    }
    pthread_mutex_lock(&t->in_mu);
    size_t k = 0;
    for (; k < n; k++) {
        items[k] = item_new(t, v[k].id);
        if (!items[k]) break;
        tg_update_parse(v[k].u, &items[k]->u);
        jkey(keys[k], sizeof keys[k], items[k]->seq);
        ops[k] =
            (rd_kv_op){.op = RD_KV_PUT, .key = keys[k], .val = raw[k], .val_len = strlen(raw[k])};
    }
    int64_t prev_offset = t->tg_offset;
    if (k == n) t->tg_offset = max_id + 1;
    pthread_mutex_unlock(&t->in_mu);
    char *meta = k == n ? meta_json(t) : NULL;
    rd_status st = RD_E_INTERNAL;
    if (meta) {
        ops[n] = (rd_kv_op){.op = RD_KV_PUT, .key = META_KEY, .val = meta, .val_len = strlen(meta)};
        st = t->h->kv_txn(t->ctx, ops, n + 1);
    }
    free(meta);
    pthread_mutex_lock(&t->in_mu);
    for (size_t i = 0; i < k; i++) {
        items[i]->state = st == RD_OK ? TG_ITEM_READY : TG_ITEM_DEAD;
        if (st == RD_OK) tg_count(t, t->m_updates, tg_kind_name(items[i]->u.kind), NULL, 1);
    }
    if (st != RD_OK) t->tg_offset = prev_offset;
    pthread_mutex_unlock(&t->in_mu);
    if (st != RD_OK) {
        t->h->log(t->ctx, RD_LOG_ERROR,
                  "cannot journal %zu updates in the state store; they stay unconfirmed and are "
                  "fetched again",
                  n);
        goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; raw && i < n; i++)
        free(raw[i]);
    free(keys);
    free(ops);
    free(raw);
    free(items);
    free(v);
    return rc;
}

/* One getUpdates exchange on the multi handle, so quiesce() can cut a
 * hanging long poll at once (curl_multi_wakeup). */
static void poll_once(tg *t, int *attempt) {
    pthread_mutex_lock(&t->in_mu);
    int64_t offset = t->tg_offset;
    pthread_mutex_unlock(&t->in_mu);
    char body[1024];
    char off[48] = "";
    if (offset > 0) snprintf(off, sizeof off, "\"offset\":%lld,", (long long)offset);
    /* An album waits for its parts: a short poll, so it goes on time. */
    int64_t timeout_s = t->album_hold && t->c.poll_timeout_s > 1 ? 1 : t->c.poll_timeout_s;
    snprintf(body, sizeof body, "{%s\"limit\":%lld,\"timeout\":%lld,\"allowed_updates\":%s}", off,
             (long long)t->c.limit, (long long)timeout_s,
             t->c.allowed_updates_json ? t->c.allowed_updates_json : "[]");
    tg_buf buf = {0};
    tg_call call;
    memset(&call, 0, sizeof call);
    /* The server holds the request up to `timeout` s: allow for that. */
    tg_easy_setup(t, t->poll_easy, "getUpdates", body, (timeout_s + 15) * 1000, &buf, &call);
    curl_multi_add_handle(t->multi, t->poll_easy);
    int64_t t0 = tg_now(t);
    int running = 1, aborted = 0;
    while (running) {
        if (curl_multi_perform(t->multi, &running) != CURLM_OK) break;
        if (!running) break;
        if (atomic_load(&t->quiescing)) {
            aborted = 1;
            break;
        }
        curl_multi_poll(t->multi, NULL, 0, 100, NULL);
        tg_persist_acks(t, 0);
        /* Lead lost (store unreachable, lease gone): stop polling now. */
        if (atomic_load(&t->quiescing) || !tg_term_current(t)) {
            aborted = 1;
            break;
        }
    }
    /* A poll held for a second surely reached the server, which confirmed
     * everything below its offset on arrival. */
    if (aborted && tg_now(t) - t0 >= 1000) t->offset_sent = offset;
    call.cc = CURLE_OK;
    if (!aborted) {
        int q;
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(t->multi, &q)))
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == t->poll_easy)
                call.cc = msg->data.result;
    }
    curl_multi_remove_handle(t->multi, t->poll_easy);
    if (aborted) {
        free(buf.p);
        return;
    }
    curl_easy_getinfo(t->poll_easy, CURLINFO_RESPONSE_CODE, &call.http);
    tg_classify(t, "getUpdates", &buf, &call);
    free(buf.p);
    int64_t wait = 0;
    if (call.cls == TG_C_OK) t->offset_sent = offset;
    int batch = 0;
    switch (call.cls) {
    case TG_C_OK:
        batch = handle_batch(t, call.resp.result);
        if (batch == 0)
            *attempt = 0;
        else if (batch > 0)
            wait = 1000; /* only refused updates: do not spin on them */
        else
            wait = tg_backoff(t, (*attempt)++);
        break;
    case TG_C_RETRY_AFTER:
        wait = call.wait_ms;
        t->h->log(t->ctx, RD_LOG_WARN, "getUpdates: %s; waiting %.1f s", call.detail,
                  (double)wait / 1000);
        tg_count(t, t->m_retries, "429", NULL, 1);
        break;
    case TG_C_CONFLICT:
        wait = tg_backoff(t, (*attempt)++);
        if (wait < 1000) wait = 1000;
        t->h->log(t->ctx, RD_LOG_WARN,
                  "getUpdates: %s. Another process is polling with this token, or a webhook is "
                  "set (use mode = webhook, or delete_webhook = true). Retrying in %.1f s",
                  call.detail, (double)wait / 1000);
        tg_count(t, t->m_retries, "409", NULL, 1);
        break;
    case TG_C_PERMANENT: {
        int64_t code = call.parsed && call.resp.error_code ? call.resp.error_code : call.http;
        wait = t->c.retry_max_ms;
        t->h->log(t->ctx, RD_LOG_ERROR, "getUpdates: %s%s; retrying in %.1f s", call.detail,
                  code == 401 ? " (the token was revoked?)" : "", (double)wait / 1000);
        if (code == 401 || code == 404) t->h->ready(t->ctx, 0, "telegram: getUpdates refused");
        break;
    }
    case TG_C_UNPARSED:
    case TG_C_TRANSIENT:
        wait = tg_backoff(t, (*attempt)++);
        t->h->log(t->ctx, RD_LOG_ERROR, "getUpdates: %s; polling again in %.1f s", call.detail,
                  (double)wait / 1000);
        tg_count(t, t->m_retries, call.cc != CURLE_OK ? "network" : "5xx", NULL, 1);
        break;
    case TG_C_ABORTED:
        break;
    }
    if (call.cls == TG_C_OK && *attempt == 0) {
        t->h->ready(t->ctx, 1, NULL);
        /* Short polls (timeout = 0) or a server that ignores the timeout:
         * do not hammer it with empty polls. */
        int64_t took = tg_now(t) - t0;
        if (cJSON_GetArraySize(call.resp.result) == 0) {
            if (took < 200) wait = 200 - took;
            /* The backlog is through: replayed updates cannot come back. */
            free(t->replay);
            t->replay = NULL;
            t->nreplay = 0;
        }
    }
    tg_call_free(&call);
    if (wait > 0) tg_sleep(t, wait, &t->quiescing);
}

/* ------------------------------------------------------------------------ */
/* The intake thread                                                         */

void *tg_main_loop(void *arg) {
    tg *t = arg;
    int attempt = 0;
    while (!atomic_load(&t->quiescing) && !atomic_load(&t->have_me)) {
        rd_error e = {0};
        rd_status st = tg_get_me(t, 60000, &e);
        if (st == RD_OK) break;
        if (atomic_load(&t->quiescing)) break; /* stopped, not failed: nothing to retry */
        int64_t wait = st == RD_E_CONFIG ? t->c.retry_max_ms : tg_backoff(t, attempt++);
        t->h->log(t->ctx, st == RD_E_CONFIG ? RD_LOG_ERROR : RD_LOG_WARN, "%s; retrying in %.1f s",
                  e.msg, (double)wait / 1000);
        tg_sleep(t, wait, &t->quiescing);
    }
    if (t->c.mode == TG_MODE_WEBHOOK && t->c.webhook_url) {
        attempt = 0;
        while (!atomic_load(&t->quiescing) && !t->webhook_set) {
            char detail[320];
            tg_class cls = set_webhook(t, detail, sizeof detail);
            if (cls == TG_C_OK) {
                t->webhook_set = 1;
                t->h->log(t->ctx, RD_LOG_INFO, "webhook set to the configured webhook_url");
                break;
            }
            if (atomic_load(&t->quiescing)) break; /* stopped, not failed */
            t->h->log(t->ctx, cls == TG_C_PERMANENT ? RD_LOG_ERROR : RD_LOG_WARN,
                      "setWebhook: %s; retrying", detail);
            tg_sleep(t, cls == TG_C_PERMANENT ? t->c.retry_max_ms : tg_backoff(t, attempt++),
                     &t->quiescing);
        }
    } else if (t->c.mode == TG_MODE_LONGPOLL && t->c.delete_webhook &&
               !atomic_load(&t->quiescing)) {
        delete_webhook(t, t->c.request_timeout_ms);
    }
    if (!atomic_load(&t->quiescing)) t->h->ready(t->ctx, 1, NULL);
    attempt = 0;
    while (t->shared && !atomic_load(&t->quiescing)) {
        /* Jitter, so that replicas take turns at claiming chats. */
        if (!tg_shared_pump(t)) tg_sleep(t, 30 + t->h->wall_ns() / 1000 % 40, &t->quiescing);
    }
    while (!atomic_load(&t->quiescing)) {
        if (!tg_leading(t)) {
            tg_sleep(t, 100, &t->quiescing);
            continue;
        }
        tg_persist_acks(t, 0);
        pthread_mutex_lock(&t->in_mu);
        drain_locked(t);
        /* An album waiting for its parts must not stop the polling. */
        int blocked = t->head != NULL && !t->album_hold;
        size_t pending = t->npending;
        pthread_mutex_unlock(&t->in_mu);
        tg_gauge(t, t->m_pending, (double)pending);
        /* Back-pressure: leave new updates with Telegram until the core
         * takes the queued ones (ack() wakes us). */
        if (t->c.mode == TG_MODE_WEBHOOK || blocked) {
            tg_sleep(t, 100, &t->quiescing);
            continue;
        }
        poll_once(t, &attempt);
    }
    /* Draining: the core still finishes work and acks; keep the watermark
     * stored so a crash now re-sends as little as possible. */
    while (!atomic_load(&t->closing)) {
        if (t->shared)
            tg_shared_pump(t);
        else
            tg_persist_acks(t, 0);
        tg_sleep(t, 100, &t->closing);
    }
    return NULL;
}

void tg_intake_stop(tg *t) {
    if (t->shared) { /* the other replicas keep using the webhook */
        tg_shared_stop(t);
        return;
    }
    tg_persist_acks(t, 1);
    if (t->c.mode == TG_MODE_LONGPOLL && t->c.confirm_on_stop && atomic_load(&t->have_me) &&
        tg_term_current(t)) {
        pthread_mutex_lock(&t->in_mu);
        int64_t offset = t->tg_offset;
        pthread_mutex_unlock(&t->in_mu);
        if (offset > 0 && offset != t->offset_sent) {
            /* Confirms what is journaled. The update this may return is
             * not confirmed (an offset confirms only ids below it) and not
             * journaled: Telegram sends it again next time. */
            char body[128];
            snprintf(body, sizeof body, "{\"offset\":%lld,\"limit\":1,\"timeout\":0}",
                     (long long)offset);
            atomic_store(&t->final_call, 1);
            CURL *c = tg_easy_get(t);
            tg_call call;
            if (c) {
                tg_api_once(t, c, "getUpdates", body, 5000, &call);
                if (call.cls != TG_C_OK)
                    t->h->log(t->ctx, RD_LOG_WARN, "confirming getUpdates at stop: %s",
                              call.detail);
                tg_call_free(&call);
                tg_easy_put(t, c);
            }
            atomic_store(&t->final_call, 0);
        }
    }
    /* Replicas sharing a postgresql store keep using the webhook; the
     * sqlite store has one process, which leads, and may delete it. */
    const char *store = t->h->info(t->ctx, "store");
    if (t->c.mode == TG_MODE_WEBHOOK && t->c.delete_webhook_on_stop && atomic_load(&t->have_me) &&
        !(store && !strcmp(store, "postgresql"))) {
        atomic_store(&t->final_call, 1);
        delete_webhook(t, 5000);
        atomic_store(&t->final_call, 0);
    }
}

void tg_intake_free(tg *t) {
    tg_shared_free(t);
    while (t->head)
        item_pop(t);
    free(t->replay);
    t->replay = NULL;
    tg_replied_free(t);
}

/* ------------------------------------------------------------------------ */
/* Webhook                                                                   */

void tg_answer(tg *t, rd_http_resp *resp, int status, int retry_after, const char *text) {
    char label[8];
    resp->status = status;
    resp->content_type = "text/plain";
    resp->body = strdup(text);
    resp->body_len = resp->body ? strlen(resp->body) : 0;
    resp->retry_after_s = retry_after;
    snprintf(label, sizeof label, "%d", status);
    tg_count(t, t->m_webhook, label, NULL, 1);
}

static void webhook(tg *t, const rd_http_req *req, rd_http_resp *resp);

void tg_webhook(void *arg, const rd_http_req *req, rd_http_resp *resp) {
    tg *t = arg;
    /* stop() waits for handlers in flight, and none starts after it: no
     * host call happens once stop() returned. */
    atomic_fetch_add(&t->hooks_active, 1);
    if (atomic_load(&t->closing)) {
        resp->status = 503;
        resp->retry_after_s = 1;
        resp->body = strdup("stopping\n");
        resp->body_len = resp->body ? strlen(resp->body) : 0;
    } else {
        webhook(t, req, resp);
    }
    atomic_fetch_sub(&t->hooks_active, 1);
}

static void webhook(tg *t, const rd_http_req *req, rd_http_resp *resp) {
    const char *secret = req->header ? req->header(req, "X-Telegram-Bot-Api-Secret-Token") : NULL;
    if (!secret || !tg_secret_equal(secret, t->c.secret_token)) {
        tg_answer(t, resp, 401, 0, "unauthorized\n");
        return;
    }
    if (atomic_load(&t->quiescing) || !atomic_load(&t->have_me)) {
        tg_answer(t, resp, 503, 1, "not ready\n");
        return;
    }
    if (!t->shared && !tg_term_current(t)) { /* a standby: the leader takes webhooks */
        tg_answer(t, resp, 503, 1, "standby\n");
        return;
    }
    cJSON *root = tg_json_parse(req->body, req->body_len);
    const cJSON *uid = cJSON_GetObjectItemCaseSensitive(root, "update_id");
    int64_t id = 0;
    if (!cJSON_IsObject(root) || !uid) {
        cJSON_Delete(root);
        t->h->log(t->ctx, RD_LOG_WARN, "webhook: the body is not a Telegram update (%zu bytes)",
                  req->body_len);
        tg_answer(t, resp, 400, 0, "not an update\n");
        return;
    }
    if (!tg_json_i64_value(uid, &id) || !tg_valid_update_id(id)) {
        /* Never deliverable: answered 200 so the sender does not retry it
         * forever, refused and logged. */
        refuse_update_id(t, "webhook", uid);
        cJSON_Delete(root);
        tg_answer(t, resp, 200, 0, "ignored: update_id out of range\n");
        return;
    }
    if (t->shared) {
        const char *text = "";
        int status = tg_shared_webhook(t, root, id, &text);
        cJSON_Delete(root);
        tg_answer(t, resp, status, 0, text);
        return;
    }
    pthread_mutex_lock(&t->in_mu);
    int known = recent_get(t, id);
    if (known == RECENT_PENDING) drain_locked(t);
    known = recent_get(t, id);
    pthread_mutex_unlock(&t->in_mu);
    if (!known) {
        /* A retry after a restart: the dedupe index is in the store. */
        char k[40], *v = NULL;
        size_t vl = 0;
        wkey(k, sizeof k, id);
        if (t->h->kv_get(t->ctx, k, &v, &vl) == RD_OK) known = RECENT_SUBMITTED;
        free(v);
    }
    if (known == RECENT_SUBMITTED) {
        cJSON_Delete(root);
        tg_answer(t, resp, 200, 0, "ok (duplicate)\n");
        return;
    }
    if (known == RECENT_PENDING) {
        cJSON_Delete(root);
        tg_answer(t, resp, 429, 1, "queued; busy\n");
        return;
    }
    pthread_mutex_lock(&t->in_mu);
    drain_locked(t);
    if (t->full || t->npending >= 1024) {
        /* Back-pressure: Telegram keeps the update and retries. */
        pthread_mutex_unlock(&t->in_mu);
        cJSON_Delete(root);
        tg_answer(t, resp, 429, 1, "busy\n");
        return;
    }
    tg_item *it = item_new(t, id);
    if (it) {
        tg_update_parse(root, &it->u);
        recent_set(t, id, RECENT_PENDING);
    }
    int64_t seq = it ? it->seq : 0;
    tg_kind kind = it ? it->u.kind : TG_UPD_OTHER;
    pthread_mutex_unlock(&t->in_mu);
    if (!it) {
        cJSON_Delete(root);
        tg_answer(t, resp, 503, 1, "out of memory\n");
        return;
    }
    char *raw = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char jk[40], wk[40], sv[32];
    jkey(jk, sizeof jk, seq);
    wkey(wk, sizeof wk, id);
    snprintf(sv, sizeof sv, "%lld", (long long)seq);
    rd_kv_op ops[2] = {
        {.op = RD_KV_PUT, .key = jk, .val = raw, .val_len = raw ? strlen(raw) : 0},
        {.op = RD_KV_PUT, .key = wk, .val = sv, .val_len = strlen(sv)},
    };
    rd_status st = raw ? t->h->kv_txn(t->ctx, ops, 2) : RD_E_INTERNAL;
    free(raw);
    pthread_mutex_lock(&t->in_mu);
    it->state = st == RD_OK ? TG_ITEM_READY : TG_ITEM_DEAD;
    if (st != RD_OK) recent_forget(t, id);
    pthread_cond_broadcast(&t->in_cv);
    drain_locked(t);
    int now_state = recent_get(t, id);
    if (st == RD_OK && now_state == RECENT_PENDING && !t->full && !t->album_hold) {
        /* Concurrent requests: an older one is still being journaled and
         * goes first. That takes milliseconds; wait for it a little. */
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += 2;
        while (now_state == RECENT_PENDING && !t->full && !t->album_hold &&
               !atomic_load(&t->quiescing)) {
            if (pthread_cond_timedwait(&t->in_cv, &t->in_mu, &dl) == ETIMEDOUT) break;
            drain_locked(t);
            now_state = recent_get(t, id);
        }
    }
    /* An album waiting for its parts: journaled, the intake thread goes on. */
    int album = t->album_hold;
    pthread_mutex_unlock(&t->in_mu);
    if (st != RD_OK) {
        t->h->log(t->ctx, RD_LOG_ERROR, "webhook: cannot journal update %lld; Telegram will retry",
                  (long long)id);
        tg_answer(t, resp, 500, 0, "cannot store\n");
        return;
    }
    tg_count(t, t->m_updates, tg_kind_name(kind), NULL, 1);
    if (now_state == RECENT_SUBMITTED || album)
        tg_answer(t, resp, 200, 0, "ok\n");
    else
        tg_answer(t, resp, 429, 1, "queued; busy\n"); /* journaled: the retry is a duplicate */
}
