/*
 * The intake queue: updates between fetch and submit, in seq order, under
 * in_mu. Polling and the webhook reserve an item, journal it and mark it
 * ready; ready items go to the core in seq order (routed by tg_route(),
 * button presses and files through their own files), so a chat keeps its
 * order. A message whose files the fetcher thread has not fetched yet
 * holds back its own chat only; updates of other chats pass it, after the
 * held chat's updates moved behind them (move_held()).
 *
 * The id handed to the core ("seq") is the Telegram update_id whenever ids
 * go up, which is always the case for one bot on one server. When they go
 * backwards (another Bot API server, a week-long pause, or a webhook
 * delivering an older update late) seq continues at last_seq + 1 instead,
 * because the core needs ids that increase.
 */
#include "telegram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECENT_CAP 8192

/* ------------------------------------------------------------------------ */
/* Recent update ids (webhook dedupe), under in_mu                           */

int tg_recent_get(tg *t, int64_t id) {
    return (int)(intptr_t)tg_map_get(t->recent, id);
}

void tg_recent_set(tg *t, int64_t id, int state) {
    if (!tg_map_get(t->recent, id)) {
        int64_t old = t->recent_ring[t->recent_pos];
        if (old) tg_map_del(t->recent, old);
        t->recent_ring[t->recent_pos] = id;
        t->recent_pos = (t->recent_pos + 1) % RECENT_CAP;
    }
    tg_map_put(t->recent, id, (void *)(intptr_t)state);
}

void tg_recent_forget(tg *t, int64_t id) {
    tg_map_del(t->recent, id);
    for (size_t i = 0; i < RECENT_CAP; i++)
        if (t->recent_ring[i] == id) t->recent_ring[i] = 0;
}

int64_t tg_recent_newest(tg *t) {
    return t->recent_ring[(t->recent_pos + RECENT_CAP - 1) % RECENT_CAP];
}

/* ------------------------------------------------------------------------ */
/* Pending items, under in_mu                                                */

void tg_queue_push(tg *t, tg_item *it) {
    if (t->tail)
        t->tail->next = it;
    else
        t->head = it;
    t->tail = it;
    t->npending++;
    if (it->u.media) pthread_cond_broadcast(&t->in_cv); /* the fetch thread may want it */
}

/* NULL when out of memory or when no id is left for the core (tg_id is
 * checked by the callers; last_seq only grows by one per update). */
tg_item *tg_item_new(tg *t, int64_t tg_id) {
    int64_t next;
    if (!tg_valid_update_id(tg_id) || !tg_add_ok(t->last_seq, 1, &next) || next > TG_SEQ_MAX)
        return NULL;
    tg_item *it = calloc(1, sizeof *it);
    if (!it) return NULL;
    it->tg_id = tg_id;
    it->seq = next > tg_id ? next : tg_id;
    t->last_seq = it->seq;
    it->state = TG_ITEM_RESERVED;
    tg_queue_push(t, it);
    return it;
}

void tg_jkey(char *buf, size_t n, int64_t seq) {
    tg_key19(buf, n, 'j', seq);
}

static void item_free(tg_item *it) {
    if (it->file.state == TG_F_BUSY) {
        it->orphan = 1; /* the fetcher still reads it */
        return;
    }
    tg_update_free(&it->u);
    free(it->file.data);
    free(it);
}

/* Takes it (after prev, NULL at the head) out of the queue. */
static void item_unlink(tg *t, tg_item *prev, tg_item *it) {
    if (prev)
        prev->next = it->next;
    else
        t->head = it->next;
    if (t->tail == it) t->tail = prev;
    t->npending--;
    item_free(it);
}

void tg_queue_clear(tg *t) {
    while (t->head)
        item_unlink(t, NULL, t->head);
}

/* What tg_route() needs to know of this bot. */
static tg_route_cfg route_cfg(tg *t) {
    return (tg_route_cfg){.bot_username = t->bot_username,
                          .bot_id = t->bot_id,
                          .group_all = t->c.group_all,
                          .channel_posts = t->c.channel_posts,
                          .edited_messages = t->c.edited_messages,
                          .commands = tg_cmds_names(t)};
}

/* Routes one update: skip() it or submit() it. */
rd_status tg_submit_item(tg *t, tg_item *it) {
    tg_route_cfg rc = route_cfg(t);
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
                     .meta = meta,
                     .reply_to = it->u.reply_to_id};
    if (it->u.media && !tg_media_ready(t, it)) {
        free(meta);
        free(r.text);
        return RD_E_RETRY;
    }
    /* Shared webhooks record handled updates per update, not by watermark.
     * Registered before the core has it: its reply may be quick. */
    if (!t->shared) tg_replied_register(t, chat, it->u.message_id, it->seq);
    rd_status st = it->u.media ? tg_media_submit(t, it, &in) : t->h->submit(t->ctx, &in);
    free(meta);
    free(r.text);
    if (st != RD_OK && !t->shared) tg_replied_unregister(t, chat, it->u.message_id, it->seq);
    if (st == RD_OK || st == RD_E_DUPLICATE || st == RD_E_FULL) return st;
    /* Anything else is a refusal the core will not change its mind about:
     * mark it handled so the watermark moves on. */
    t->h->log(t->ctx, RD_LOG_ERROR, "update %lld: the router refused it (status %d); skipped",
              (long long)it->tg_id, (int)st);
    t->h->skip(t->ctx, it->seq, "refused");
    tg_count(t, t->m_ignored, "refused", NULL, 1);
    return RD_OK;
}

/* Chats with an update waiting for its files, at most this many at once
 * (more wait in line behind the head). */
#define HELD_MAX 64

static int held(const int64_t *v, size_t n, int64_t chat) {
    for (size_t i = 0; i < n; i++)
        if (v[i] == chat) return 1;
    return 0;
}

/* Whether x waits behind an update of its chat (passed over). */
static int is_held(tg *t, const tg_item *x, const int64_t *hold, size_t nhold) {
    return x->state == TG_ITEM_READY && x->u.chat_id &&
           held(hold, nhold, tg_mig_back(t, x->u.chat_id));
}

/* The held chats' updates (all before `stop`, passed over, and theirs
 * after it) move to the tail in their order with new seqs, their journal
 * rows with them in one transaction: what goes to the core next is then
 * below them, so the core's watermark cannot pass them before they are
 * submitted. 0 when that is not possible now (an update being journaled,
 * the store failing) or not safe: an update replayed from the journal may
 * have reached a backend before the restart, under its seq (a2a derives
 * its messageId and exactly-once record from it), so its seq never changes
 * and its chat is not passed until it is submitted. */
static int move_held(tg *t, tg_item *stop, const int64_t *hold, size_t nhold) {
    size_t n = 0;
    for (tg_item *x = t->head; x; x = x->next) {
        if (x->state == TG_ITEM_RESERVED) return 0; /* its seq would end up above ours */
        int h = x != stop && is_held(t, x, hold, nhold);
        if (h && x->replayed) return 0;
        n += h;
    }
    int64_t last;
    if (!tg_add_ok(t->last_seq, (int64_t)n, &last) || last > TG_SEQ_MAX) return 0;
    tg_item **v = calloc(n, sizeof *v);
    rd_kv_op *ops = calloc(2 * n, sizeof *ops);
    char(*keys)[40] = calloc(2 * n, sizeof *keys);
    char **vals = calloc(n, sizeof *vals);
    int ok = v && ops && keys && vals;
    size_t i = 0;
    for (tg_item *x = t->head; ok && x; x = x->next) {
        if (x == stop || !is_held(t, x, hold, nhold)) continue;
        size_t len = 0;
        v[i] = x;
        tg_jkey(keys[2 * i], sizeof keys[2 * i], x->seq);
        tg_jkey(keys[2 * i + 1], sizeof keys[2 * i + 1], t->last_seq + 1 + (int64_t)i);
        ok = t->h->kv_get(t->ctx, keys[2 * i], &vals[i], &len) == RD_OK && vals[i];
        ops[2 * i] = (rd_kv_op){.op = RD_KV_DEL, .key = keys[2 * i]};
        ops[2 * i + 1] =
            (rd_kv_op){.op = RD_KV_PUT, .key = keys[2 * i + 1], .val = vals[i], .val_len = len};
        i++;
    }
    if (ok) ok = t->h->kv_txn(t->ctx, ops, 2 * n) == RD_OK;
    for (i = 0; vals && i < n; i++)
        free(vals[i]);
    free(vals);
    free(keys);
    free(ops);
    if (!ok) {
        free(v);
        return 0;
    }
    /* Unlink them, then append them in order. */
    tg_item *prev = NULL;
    for (tg_item *x = t->head, *nx; x; x = nx) {
        nx = x->next;
        if (x != stop && is_held(t, x, hold, nhold)) {
            if (prev)
                prev->next = nx;
            else
                t->head = nx;
        } else {
            prev = x;
        }
    }
    t->tail = prev;
    for (i = 0; i < n; i++) {
        v[i]->seq = ++t->last_seq;
        v[i]->next = NULL;
        if (t->tail)
            t->tail->next = v[i];
        else
            t->head = v[i];
        t->tail = v[i];
    }
    free(v);
    return 1;
}

/* Submits ready items in seq order until the core pushes back. An update
 * whose files are still being fetched (or whose album is still arriving)
 * holds back its own chat only: the other chats' updates pass it. */
void tg_drain_locked(tg *t) {
    t->full = 0;
    t->album_hold = 0;
    int64_t hold[HELD_MAX];
    size_t nhold = 0;
    tg_item *prev = NULL, *it = t->head;
    while (it && it->state != TG_ITEM_RESERVED) {
        tg_item *next = it->next;
        if (it->state == TG_ITEM_DEAD) {
            item_unlink(t, prev, it);
            it = next;
            continue;
        }
        if (is_held(t, it, hold, nhold)) {
            prev = it; /* after the update its chat waits for */
            it = next;
            continue;
        }
        if (prev) {
            /* it goes before updates passed over: they move behind it. */
            if (!move_held(t, it, hold, nhold)) return;
            prev = NULL;
            next = it->next;
        }
        if (it->state == TG_ITEM_ABSORBED) {
            /* Its album went to the core with the first part. */
            t->h->skip(t->ctx, it->seq, "album_part");
            if (t->c.mode == TG_MODE_WEBHOOK) tg_recent_set(t, it->tg_id, TG_RECENT_SUBMITTED);
        } else if (it->state == TG_ITEM_READY) {
            if (atomic_load(&t->quiescing) || !atomic_load(&t->have_me)) return;
            rd_status st = tg_submit_item(t, it);
            if (st == RD_E_FULL) {
                t->full = 1;
                return;
            }
            if (st == RD_E_RETRY) {
                /* Waiting for files is no back-pressure: the rest goes on. */
                t->album_hold = 1;
                if (!it->u.chat_id || nhold == HELD_MAX) return;
                hold[nhold++] = tg_mig_back(t, it->u.chat_id);
                prev = it;
                it = next;
                continue;
            }
            if (t->c.mode == TG_MODE_WEBHOOK) tg_recent_set(t, it->tg_id, TG_RECENT_SUBMITTED);
        }
        item_unlink(t, NULL, it);
        it = next;
    }
}

/* Whether a queued update goes to the core with files to fetch (routing
 * as tg_submit_item() does, without its side effects). */
static int wants_files(tg *t, tg_item *it) {
    if (!it->u.media || it->u.kind == TG_UPD_CALLBACK_QUERY) return 0;
    tg_route_cfg rc = route_cfg(t);
    tg_routed r;
    const char *why = tg_route(&it->u, &rc, &r);
    if (why) return 0;
    free(r.text);
    return !((r.flags & RD_MSG_EDITED) && t->c.edits == TG_EDITS_NOTE);
}

/* One download at a time, oldest update first, outside in_mu: the intake
 * goes on meanwhile. quiesce() aborts a download (the update stays
 * journaled and is fetched again after a restart). */
void *tg_fetch_loop(void *arg) {
    tg *t = arg;
    pthread_mutex_lock(&t->in_mu);
    while (!atomic_load(&t->quiescing)) {
        int64_t now = tg_now(t);
        /* Sleeps until an update with media is queued (tg_queue_push), an
         * album wants its parts, a retry is due, or a stop; at most a
         * second, not a poll every 50 ms. */
        int64_t wake = now + (atomic_load(&t->have_me) ? 1000 : 200);
        tg_item *x = t->head;
        for (; x; x = x->next) {
            if (x->state != TG_ITEM_READY || x->file.state != TG_F_NONE) continue;
            if (!x->file.wanted && !wants_files(t, x)) continue;
            if (now >= x->file.retry_at) break;
            if (x->file.retry_at < wake) wake = x->file.retry_at;
        }
        if (!x || !atomic_load(&t->have_me)) {
            struct timespec dl = tg_deadline(wake > now ? wake - now : 1);
            pthread_cond_timedwait(&t->in_cv, &t->in_mu, &dl);
            continue;
        }
        x->file.state = TG_F_BUSY;
        if (!x->file.first_ms) x->file.first_ms = now;
        tg_file f = x->file;
        pthread_mutex_unlock(&t->in_mu);
        int r = tg_media_take(t, x, &f);
        pthread_mutex_lock(&t->in_mu);
        x->file.state = TG_F_NONE;
        if (x->orphan) {
            free(f.data);
            item_free(x);
            continue;
        }
        if (r == 0) {
            x->file = f;
        } else {
            x->file.retry_at = tg_now(t) + tg_backoff(t, x->file.attempts++);
        }
    }
    pthread_mutex_unlock(&t->in_mu);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Refused ids                                                               */

/* Logs a refused update id: the first time, then every 1000th, so a server
 * repeating it cannot flood the log. */
void tg_refuse_update_id(tg *t, const char *where, const cJSON *item) {
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
