/*
 * Outbox: replies Telegram would not take within the send budget (a 429
 * asking for a longer wait, an outage, a stop in the middle of a send).
 *
 * A produced reply is never dropped for a rate limit: send() stores what is
 * left of it under o/<n> (one row per reply, in order) and returns; this
 * thread delivers the rows when Telegram allows, oldest first and one chat
 * after the other in that chat's order, across restarts, until
 * outbox_expiry_s. While a chat has rows waiting, its new replies queue
 * behind them. What expires is counted and logged. The index in memory is
 * small (ids, chat, times); texts stay in the store.
 */
#include "telegram.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tg_ob {
    int64_t id;
    int64_t chat;       /* as the core names it */
    int64_t not_before; /* wall ms */
    int64_t expires;    /* wall ms */
    int attempts;
    char cid[64];
    struct tg_ob *next;
};

static void okey(char *buf, size_t n, int64_t id) {
    tg_key19(buf, n, 'o', id); /* ids count up from 0; load_cb refuses others */
}

static int64_t wall_ms(tg *t) {
    return t->h->wall_ns() / 1000000;
}

static void add_i64(cJSON *o, const char *key, int64_t v) {
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)v);
    cJSON_AddRawToObject(o, key, num);
}

/* ob_mu held. */
static void chat_count(tg *t, int64_t chat, int delta) {
    intptr_t n = (intptr_t)tg_map_get(t->ob_chats, chat) + delta;
    if (n > 0)
        tg_map_put(t->ob_chats, chat, (void *)n);
    else
        tg_map_del(t->ob_chats, chat);
}

/* ob_mu held. */
static void append_locked(tg *t, tg_ob *e) {
    if (t->ob_tail)
        t->ob_tail->next = e;
    else
        t->ob_head = e;
    t->ob_tail = e;
    t->nob++;
    chat_count(t, e->chat, 1);
    tg_gauge_l(t, t->m_tracked, "outbox", (double)t->nob);
}

/* ob_mu held. */
static void unlink_locked(tg *t, tg_ob *e) {
    tg_ob **pp = &t->ob_head, *prev = NULL;
    while (*pp && *pp != e) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) return;
    *pp = e->next;
    if (t->ob_tail == e) t->ob_tail = prev;
    t->nob--;
    chat_count(t, e->chat, -1);
    tg_gauge_l(t, t->m_tracked, "outbox", (double)t->nob);
}

int tg_outbox_has(tg *t, int64_t chat) {
    pthread_mutex_lock(&t->ob_mu);
    int has = t->ob_chats && tg_map_get(t->ob_chats, chat) != NULL;
    pthread_mutex_unlock(&t->ob_mu);
    return has;
}

rd_status tg_outbox_put(tg *t, const tg_reply *r, int after_refusal, rd_error *err) {
    int64_t now = wall_ms(t);
    int64_t nb = now;
    if (after_refusal) {
        /* The chat's hold (set by the 429) says when Telegram takes it. */
        int64_t mono = tg_now(t);
        pthread_mutex_lock(&t->out_mu);
        int64_t at = tg_throttle_chat_peek(t->thr, tg_mig_forward(t, r->chat), mono);
        pthread_mutex_unlock(&t->out_mu);
        int64_t wait = at > mono ? at - mono : 0;
        if (wait < 1000) wait = 1000; /* an outage: try again in a moment */
        nb = now + tg_clamp(wait, 0, t->c.outbox_expiry_ms);
    }
    tg_ob *e = calloc(1, sizeof *e);
    cJSON *o = cJSON_CreateObject();
    char *text = malloc(r->len + 1);
    if (!e || !o || !text) {
        free(e);
        cJSON_Delete(o);
        free(text);
        t->h->error(err, RD_E_INTERNAL, "transient", "telegram outbox: out of memory");
        return RD_E_INTERNAL;
    }
    memcpy(text, r->text, r->len);
    text[r->len] = 0;
    e->chat = r->chat;
    e->not_before = nb;
    e->expires = now + t->c.outbox_expiry_ms;
    snprintf(e->cid, sizeof e->cid, "%s", r->cid ? r->cid : "");
    add_i64(o, "chat", r->chat);
    add_i64(o, "thread", r->thread);
    add_i64(o, "reply_to", r->reply_to);
    add_i64(o, "edit_of", r->edit_of);
    cJSON_AddBoolToObject(o, "literal", r->literal);
    if (r->markup) cJSON_AddRawToObject(o, "markup", r->markup);
    if (r->btn_ref) cJSON_AddStringToObject(o, "btn_ref", r->btn_ref);
    /* The text is kept whole (a Markdown tail cannot be rendered on its
     * own); skip counts the parts already delivered. */
    if (r->skip) add_i64(o, "skip", (int64_t)r->skip);
    cJSON_AddStringToObject(o, "cid", e->cid);
    add_i64(o, "not_before", e->not_before);
    add_i64(o, "expires", e->expires);
    cJSON_AddStringToObject(o, "text", text);
    free(text);
    char *val = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);

    pthread_mutex_lock(&t->ob_mu);
    if (t->nob >= (size_t)t->c.outbox_max) {
        pthread_mutex_unlock(&t->ob_mu);
        free(val);
        free(e);
        tg_count(t, t->m_outbox, "full", NULL, 1);
        t->h->log(t->ctx, RD_LOG_ERROR,
                  "reply%s%s cannot wait in the outbox: %s (outbox_max %lld); it is dropped",
                  r->cid ? " " : "", r->cid ? r->cid : "", t->c.outbox_max ? "full" : "disabled",
                  (long long)t->c.outbox_max);
        t->h->error(err, RD_E_RETRY, "transient", "telegram outbox full");
        return RD_E_RETRY;
    }
    e->id = t->ob_next++;
    char k[40];
    okey(k, sizeof k, e->id);
    /* Under ob_mu: rows are stored in id order, the order of delivery. */
    rd_status st = val ? t->h->kv_put(t->ctx, k, val, strlen(val)) : RD_E_INTERNAL;
    if (st == RD_OK) append_locked(t, e);
    pthread_cond_broadcast(&t->ob_cv);
    pthread_mutex_unlock(&t->ob_mu);
    free(val);
    if (st != RD_OK) {
        free(e);
        tg_count(t, t->m_outbox, "store_failed", NULL, 1);
        t->h->log(t->ctx, RD_LOG_ERROR, "reply %s: cannot store it in the outbox; it is dropped",
                  r->cid ? r->cid : "");
        t->h->error(err, RD_E_RETRY, "transient", "telegram outbox: the state store failed");
        return RD_E_RETRY;
    }
    tg_count(t, t->m_outbox, "queued", NULL, 1);
    if (after_refusal)
        t->h->log(t->ctx, RD_LOG_WARN,
                  "reply %s: Telegram refuses it for now; kept in the outbox, next try in %.0f s",
                  e->cid, (double)(nb - now) / 1000);
    return RD_OK;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */

typedef struct load_acc {
    tg *t;
    int64_t now;
} load_acc;

static int load_cb(void *arg, const char *key, const void *val, size_t len) {
    load_acc *a = arg;
    tg *t = a->t;
    if (strncmp(key, "o/", 2)) return 0;
    char *end = NULL;
    errno = 0;
    long long id = strtoll(key + 2, &end, 10);
    cJSON *o = tg_json_parse(val, len);
    int64_t chat = 0, nb = 0, exp = 0;
    int ok = !errno && end && !*end && id >= 0 && id < TG_SEQ_MAX && o &&
             tg_json_i64(o, "chat", &chat) && tg_valid_chat_id(chat) &&
             tg_json_i64(o, "not_before", &nb) && tg_json_i64(o, "expires", &exp) &&
             cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "text"));
    tg_ob *e = ok ? calloc(1, sizeof *e) : NULL;
    if (e) {
        e->id = id;
        e->chat = chat;
        /* Times from another clock or a damaged row: keep them sane. */
        e->expires = tg_clamp(exp, 0, a->now + t->c.outbox_expiry_ms);
        e->not_before = tg_clamp(nb, 0, e->expires);
        const cJSON *cid = cJSON_GetObjectItemCaseSensitive(o, "cid");
        snprintf(e->cid, sizeof e->cid, "%s", cJSON_IsString(cid) ? cid->valuestring : "");
        append_locked(t, e);
        if (id >= t->ob_next) t->ob_next = id + 1;
    } else {
        t->h->log(t->ctx, RD_LOG_ERROR, "outbox row %s is unreadable; dropped", key);
        t->h->kv_del(t->ctx, key);
    }
    cJSON_Delete(o);
    return 0;
}

void tg_outbox_load(tg *t) {
    load_acc a = {.t = t, .now = wall_ms(t)};
    pthread_mutex_lock(&t->ob_mu);
    t->h->kv_scan(t->ctx, "o/", load_cb, &a);
    size_t n = t->nob;
    pthread_mutex_unlock(&t->ob_mu);
    if (n)
        t->h->log(t->ctx, RD_LOG_INFO, "%zu replies wait in the outbox; delivering them first", n);
}

void tg_outbox_free(tg *t) {
    for (tg_ob *e = t->ob_head, *n; e; e = n) {
        n = e->next;
        free(e);
    }
    t->ob_head = t->ob_tail = NULL;
    t->nob = 0;
    tg_map_free(t->ob_chats, NULL);
    t->ob_chats = NULL;
}

/* ------------------------------------------------------------------------ */
/* Delivery                                                                  */

enum { PICK_NONE = 0, PICK_SEND, PICK_EXPIRED };

/* The oldest row of the first chat that may go now. ob_mu held. */
static int pick_locked(tg *t, int64_t now, tg_ob **out, int64_t *next_wake) {
    tg_map *seen = tg_map_new();
    int what = PICK_NONE;
    for (tg_ob *e = t->ob_head; e && seen; e = e->next) {
        if (tg_map_get(seen, e->chat)) continue; /* an older row of this chat waits */
        tg_map_put(seen, e->chat, (void *)1);
        if (e->expires <= now) {
            what = PICK_EXPIRED;
        } else if (e->not_before <= now) {
            what = PICK_SEND;
        } else {
            int64_t w = e->not_before < e->expires ? e->not_before : e->expires;
            if (w < *next_wake) *next_wake = w;
            continue;
        }
        *out = e;
        break;
    }
    tg_map_free(seen, NULL);
    return what;
}

static void remove_row(tg *t, tg_ob *e) {
    char k[40];
    okey(k, sizeof k, e->id);
    t->h->kv_del(t->ctx, k);
    pthread_mutex_lock(&t->ob_mu);
    unlink_locked(t, e);
    pthread_mutex_unlock(&t->ob_mu);
    free(e);
}

/* One delivery attempt of e. */
static void attempt(tg *t, tg_ob *e) {
    char k[40], *val = NULL;
    size_t vl = 0;
    okey(k, sizeof k, e->id);
    if (t->h->kv_get(t->ctx, k, &val, &vl) != RD_OK) {
        t->h->log(t->ctx, RD_LOG_ERROR, "outbox: reply %s vanished from the store", e->cid);
        remove_row(t, e);
        return;
    }
    cJSON *o = tg_json_parse(val, vl);
    free(val);
    const cJSON *txt = cJSON_GetObjectItemCaseSensitive(o, "text");
    if (!o || !cJSON_IsString(txt)) {
        cJSON_Delete(o);
        remove_row(t, e);
        return;
    }
    tg_reply r = {.chat = e->chat, .cid = e->cid};
    tg_json_i64(o, "thread", &r.thread);
    tg_json_i64(o, "reply_to", &r.reply_to);
    tg_json_i64(o, "edit_of", &r.edit_of);
    if (!tg_valid_pos_id(r.thread)) r.thread = 0;
    if (!tg_valid_pos_id(r.reply_to)) r.reply_to = 0;
    if (!tg_valid_pos_id(r.edit_of)) r.edit_of = 0;
    r.literal = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "literal"));
    /* Buttons: the keyboard as it was built at send time. */
    const cJSON *mk = cJSON_GetObjectItemCaseSensitive(o, "markup");
    const cJSON *bref = cJSON_GetObjectItemCaseSensitive(o, "btn_ref");
    char *markup = cJSON_IsObject(mk) ? cJSON_PrintUnformatted(mk) : NULL;
    r.markup = markup;
    r.btn_ref = markup && cJSON_IsString(bref) ? bref->valuestring : NULL;
    int64_t skip = 0;
    if (tg_json_i64(o, "skip", &skip) && skip > 0 && skip < 1000000) r.skip = (size_t)skip;
    size_t len = 0;
    char *text = tg_utf8_sanitize(txt->valuestring, strlen(txt->valuestring), &len);
    r.text = text ? text : "";
    r.len = text ? len : 0;
    /* One attempt per turn, so other chats are not held up for long. */
    int64_t budget = t->c.send_budget_ms < 30000 ? t->c.send_budget_ms : 30000;
    r.deadline = tg_now(t) + budget;
    size_t done = 0;
    rd_error err = {0};
    rd_status st = r.len && !tg_is_blank(r.text, r.len) ? tg_deliver(t, &r, &done, &err) : RD_OK;
    if (st == RD_OK) {
        tg_count(t, t->m_outbox, "delivered", NULL, 1);
        t->h->log(t->ctx, RD_LOG_INFO, "outbox: reply %s delivered", e->cid);
        remove_row(t, e);
    } else if (st == RD_E_RETRY) {
        if (done > r.skip) {
            /* Parts went out: skip them next time, without the quote. */
            cJSON_DeleteItemFromObjectCaseSensitive(o, "skip");
            cJSON_AddNumberToObject(o, "skip", (double)done);
            cJSON_ReplaceItemInObjectCaseSensitive(o, "reply_to", cJSON_CreateNumber(0));
            cJSON_ReplaceItemInObjectCaseSensitive(o, "edit_of", cJSON_CreateNumber(0));
            char *nv = cJSON_PrintUnformatted(o);
            if (nv) t->h->kv_put(t->ctx, k, nv, strlen(nv));
            free(nv);
        }
        int64_t mono = tg_now(t);
        pthread_mutex_lock(&t->out_mu);
        int64_t at = tg_throttle_chat_peek(t->thr, tg_mig_forward(t, e->chat), mono);
        pthread_mutex_unlock(&t->out_mu);
        int64_t wait = at > mono ? at - mono : 0;
        int64_t back = tg_backoff(t, e->attempts < 30 ? e->attempts : 30);
        pthread_mutex_lock(&t->ob_mu);
        e->attempts++;
        e->not_before = wall_ms(t) + (wait > back ? wait : back);
        pthread_mutex_unlock(&t->ob_mu);
    } else {
        tg_count(t, t->m_outbox, "failed", NULL, 1);
        t->h->log(t->ctx, RD_LOG_ERROR, "outbox: reply %s cannot be delivered (%s); dropped",
                  e->cid, err.msg);
        remove_row(t, e);
    }
    free(markup);
    free(text);
    cJSON_Delete(o);
}

void *tg_outbox_loop(void *arg) {
    tg *t = arg;
    while (!atomic_load(&t->closing)) {
        int64_t now = wall_ms(t), next = now + 60000;
        tg_ob *e = NULL;
        pthread_mutex_lock(&t->ob_mu);
        int what = atomic_load(&t->have_me) ? pick_locked(t, now, &e, &next) : PICK_NONE;
        if (what == PICK_NONE) {
            int64_t wait = tg_clamp(next - now, 10, 60000);
            if (!atomic_load(&t->have_me)) wait = 200;
            struct timespec dl = tg_deadline(wait);
            if (!atomic_load(&t->closing)) pthread_cond_timedwait(&t->ob_cv, &t->ob_mu, &dl);
            pthread_mutex_unlock(&t->ob_mu);
            continue;
        }
        pthread_mutex_unlock(&t->ob_mu);
        if (what == PICK_EXPIRED) {
            tg_count(t, t->m_outbox, "expired", NULL, 1);
            tg_count(t, t->m_outbox_expired, NULL, NULL, 1);
            t->h->log(t->ctx, RD_LOG_ERROR,
                      "outbox: reply %s expired undelivered after %lld s (outbox_expiry_s); "
                      "dropped",
                      e->cid, (long long)(t->c.outbox_expiry_ms / 1000));
            remove_row(t, e);
            continue;
        }
        attempt(t, e);
    }
    return NULL;
}

rd_status tg_outbox_rest(tg *t, const tg_reply *r, size_t done, rd_error *err) {
    tg_reply rest = *r;
    rest.skip = done;
    if (done) rest.reply_to = rest.edit_of = 0; /* the first part went out, quoting */
    rd_error e2 = {0};
    rd_status st = tg_outbox_put(t, &rest, 1, &e2);
    if (st == RD_OK)
        memset(err, 0, sizeof *err);
    else if (!err->msg[0])
        *err = e2;
    return st;
}
