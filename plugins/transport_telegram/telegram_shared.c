/*
 * Webhook scale-out: with a shared PostgreSQL store every replica takes
 * webhooks, and chats are handed out one replica at a time.
 *
 * Keys, in this instance's namespace (shared by the replicas):
 *   q/<chat>/<update_id>  a pending update (the raw JSON), inserted once
 *                         (insert-if-absent) before the webhook answers 200;
 *   d/<update_id>         a handled update, kept DEDUPE_WINDOW ids back so a
 *                         late redelivery is recognised.
 * A replica works on a chat only while it holds the claim "chat:<chat>" (an
 * expiring lease row, host claim()): it submits the chat's pending rows in
 * update-id order, and once the core has handled them moves them from q/
 * to d/ and gives the claim up. Claims of a dead replica expire after
 * lease_s; another replica then takes the chat and redoes what was in
 * flight there (the bounded duplicates). Only this module's thread (the
 * intake thread) touches the sh_* state.
 */
#include "telegram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEDUPE_WINDOW 100000
/* Pending rows read per scan: bounds memory and one scan's cost. */
#define SCAN_MAX 4096

static void qkey(char *buf, size_t n, int64_t chat, int64_t id) {
    snprintf(buf, n, "q/%lld/%019lld", (long long)chat, (long long)id);
}

static void dkey(char *buf, size_t n, int64_t id) {
    tg_key19(buf, n, 'd', id);
}

int tg_shared_enabled(const tg *t) {
    if (t->c.mode != TG_MODE_WEBHOOK || !RD_HAS(t->h, kv_add) || !t->h->claim || !t->h->kv_add)
        return 0;
    const char *store = t->h->info(t->ctx, "store");
    return store && !strcmp(store, "postgresql");
}

/* ------------------------------------------------------------------------ */
/* Webhook: into the shared journal once                                     */

int tg_shared_webhook(tg *t, cJSON *root, int64_t id, const char **text) {
    char dk[40];
    dkey(dk, sizeof dk, id);
    char *v = NULL;
    size_t vl = 0;
    if (t->h->kv_get(t->ctx, dk, &v, &vl) == RD_OK) {
        free(v);
        *text = "ok (duplicate)\n";
        return 200;
    }
    tg_update u;
    memset(&u, 0, sizeof u);
    tg_update_parse(root, &u);
    int64_t chat = u.chat_id;
    tg_kind kind = u.kind;
    tg_update_free(&u);
    char *raw = cJSON_PrintUnformatted(root);
    char qk[64];
    qkey(qk, sizeof qk, chat, id);
    rd_status st = raw ? t->h->kv_add(t->ctx, qk, raw, strlen(raw)) : RD_E_INTERNAL;
    free(raw);
    if (st == RD_E_DUPLICATE) {
        *text = "ok (duplicate)\n";
        return 200;
    }
    if (st != RD_OK) {
        t->h->log(t->ctx, RD_LOG_ERROR, "webhook: cannot journal update %lld; Telegram will retry",
                  (long long)id);
        *text = "cannot store\n";
        return 500;
    }
    /* A redelivery racing with the original being recorded as handled
     * between the two reads above: take the new row back. */
    if (t->h->kv_get(t->ctx, dk, &v, &vl) == RD_OK) {
        free(v);
        t->h->kv_del(t->ctx, qk);
        *text = "ok (duplicate)\n";
        return 200;
    }
    tg_count(t, t->m_updates, tg_kind_name(kind), NULL, 1);
    tg_wake(t);
    *text = "ok\n";
    return 200;
}

/* ------------------------------------------------------------------------ */
/* The pump                                                                  */

static tg_sh_chat *chat_find(tg *t, int64_t chat) {
    for (size_t i = 0; i < t->nsh_chats; i++)
        if (t->sh_chats[i].chat == chat) return &t->sh_chats[i];
    return NULL;
}

static void claim_key(char *buf, size_t n, int64_t chat) {
    snprintf(buf, n, "chat:%lld", (long long)chat);
}

static int item_inflight(const tg *t, int64_t chat, int64_t id) {
    for (size_t i = 0; i < t->nsh_items; i++)
        if (t->sh_items[i].chat == chat && t->sh_items[i].tg_id == id) return 1;
    return 0;
}

/* Moves what the core handled from q/ to d/. */
static void complete_handled(tg *t) {
    int64_t w = atomic_load(&t->acked);
    size_t n = 0;
    for (size_t i = 0; i < t->nsh_items; i++)
        if (t->sh_items[i].seq <= w) n++;
    if (!n) return;
    rd_kv_op *ops = calloc(2 * n + 1, sizeof *ops);
    char(*keys)[64] = calloc(2 * n + 1, sizeof *keys);
    if (!ops || !keys) goto out;
    size_t k = 0;
    int64_t newest = 0;
    for (size_t i = 0; i < t->nsh_items; i++) {
        tg_sh_item *it = &t->sh_items[i];
        if (it->seq > w) continue;
        qkey(keys[k], sizeof keys[k], it->chat, it->tg_id);
        ops[k] = (rd_kv_op){.op = RD_KV_DEL, .key = keys[k]};
        k++;
        dkey(keys[k], sizeof keys[k], it->tg_id);
        ops[k] = (rd_kv_op){.op = RD_KV_PUT, .key = keys[k], .val = "1", .val_len = 1};
        k++;
        if (it->tg_id > newest) newest = it->tg_id;
    }
    if (newest > DEDUPE_WINDOW) {
        dkey(keys[k], sizeof keys[k], newest - DEDUPE_WINDOW);
        ops[k] = (rd_kv_op){.op = RD_KV_DEL_RANGE, .key = "d/", .key_end = keys[k]};
        k++;
    }
    if (t->h->kv_txn(t->ctx, ops, k) != RD_OK) {
        t->h->log(t->ctx, RD_LOG_WARN, "cannot record %zu handled updates in the store; retrying",
                  n);
        goto out;
    }
    size_t j = 0;
    for (size_t i = 0; i < t->nsh_items; i++) {
        tg_sh_item *it = &t->sh_items[i];
        if (it->seq <= w) {
            tg_sh_chat *c = chat_find(t, it->chat);
            if (c && c->inflight) c->inflight--;
        } else {
            t->sh_items[j++] = *it;
        }
    }
    t->nsh_items = j;
out:
    free(keys);
    free(ops);
}

typedef struct sh_row {
    int64_t chat, id;
    char *raw;
    size_t len;
} sh_row;

typedef struct sh_scan {
    sh_row *v;
    size_t n, cap;
} sh_scan;

static int parse_i64(const char *s, size_t n, int64_t *out) {
    char buf[32];
    if (!n || n >= sizeof buf) return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end = NULL;
    long long v = strtoll(buf, &end, 10);
    if (!end || *end) return 0;
    *out = v;
    return 1;
}

static int scan_row(void *arg, const char *key, const void *val, size_t len) {
    sh_scan *a = arg;
    const char *p = key + 2, *slash = strchr(p, '/');
    sh_row r = {0};
    if (!slash || !parse_i64(p, (size_t)(slash - p), &r.chat) ||
        !parse_i64(slash + 1, strlen(slash + 1), &r.id) || !tg_valid_update_id(r.id))
        return 0; /* not ours: left alone */
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        sh_row *v = realloc(a->v, cap * sizeof *v);
        if (!v) return 1;
        a->v = v;
        a->cap = cap;
    }
    r.raw = malloc(len + 1);
    if (!r.raw) return 1;
    memcpy(r.raw, val, len);
    r.raw[len] = 0;
    r.len = len;
    a->v[a->n++] = r;
    return a->n >= SCAN_MAX;
}

/* 1 submitted (or skipped), 0 the core pushes back. */
static int submit_row(tg *t, const sh_row *r) {
    cJSON *root = tg_json_parse(r->raw, r->len);
    tg_item it;
    memset(&it, 0, sizeof it);
    it.tg_id = r->id;
    it.seq = t->sh_seq + 1 > r->id ? t->sh_seq + 1 : r->id;
    if (root) tg_update_parse(root, &it.u);
    cJSON_Delete(root);
    if (t->nsh_items == t->capsh_items) {
        size_t cap = t->capsh_items ? t->capsh_items * 2 : 64;
        tg_sh_item *v = realloc(t->sh_items, cap * sizeof *v);
        if (!v) {
            tg_update_free(&it.u);
            return 0;
        }
        t->sh_items = v;
        t->capsh_items = cap;
    }
    rd_status st = tg_submit_item(t, &it);
    tg_update_free(&it.u);
    if (st == RD_E_FULL) return 0;
    t->sh_seq = it.seq;
    /* Duplicate means the core handled this seq already: complete it. */
    t->sh_items[t->nsh_items++] =
        (tg_sh_item){.seq = st == RD_E_DUPLICATE ? -1 : it.seq, .chat = r->chat, .tg_id = r->id};
    tg_sh_chat *c = chat_find(t, r->chat);
    if (c) c->inflight++;
    return 1;
}

static void release(tg *t, size_t i) {
    char ck[48];
    claim_key(ck, sizeof ck, t->sh_chats[i].chat);
    t->h->claim(t->ctx, ck, t->sh_chats[i].token);
    t->sh_chats[i] = t->sh_chats[--t->nsh_chats];
}

int tg_shared_pump(tg *t) {
    complete_handled(t);
    int64_t now = tg_now(t);
    /* Renewed three times a lease, like the leader's lease. */
    const char *lm = t->h->info(t->ctx, "lease_ms");
    int64_t every = lm ? strtoll(lm, NULL, 10) / 3 : 0;
    if (every < 300) every = 300;

    sh_scan a = {0};
    if (t->h->kv_scan(t->ctx, "q/", scan_row, &a) != RD_OK) {
        for (size_t i = 0; i < a.n; i++)
            free(a.v[i].raw);
        free(a.v);
        return 0;
    }
    for (size_t i = 0; i < t->nsh_chats; i++)
        t->sh_chats[i].seen = 0;

    int pushed_back = 0, again = 0;
    /* This round only submits for the chat claimed in the last one. */
    int rescan = t->sh_rescan;
    int64_t tried = INT64_MIN; /* rows of one chat are adjacent */
    for (size_t i = 0; i < a.n && !atomic_load(&t->quiescing); i++) {
        sh_row *r = &a.v[i];
        tg_sh_chat *c = chat_find(t, r->chat);
        if (c) c->seen = 1;
        if (pushed_back || item_inflight(t, r->chat, r->id)) continue;
        if (!c) {
            /* One new chat per round: replicas pumping side by side then
             * share the chats instead of the first one taking them all. */
            if (tried == r->chat || again || rescan) continue;
            tried = r->chat;
            char ck[48];
            claim_key(ck, sizeof ck, r->chat);
            int64_t tok = t->h->claim(t->ctx, ck, 0);
            if (tok <= 0) continue; /* another replica works on it */
            tg_sh_chat *v = realloc(t->sh_chats, (t->nsh_chats + 1) * sizeof *v);
            if (!v) {
                t->h->claim(t->ctx, ck, tok);
                continue;
            }
            t->sh_chats = v;
            c = &t->sh_chats[t->nsh_chats++];
            *c = (tg_sh_chat){.chat = r->chat, .token = tok, .renewed_ms = now, .seen = 1};
            /* This scan is older than the claim: the previous holder may
             * have handled some of these rows in between. Read again. */
            again = 1;
            continue;
        }
        if (tried == r->chat) continue;
        if (!submit_row(t, r)) pushed_back = 1;
    }
    for (size_t i = 0; i < a.n; i++)
        free(a.v[i].raw);
    free(a.v);

    /* Renew what is worked on; give up chats with nothing left. */
    for (size_t i = 0; i < t->nsh_chats;) {
        tg_sh_chat *c = &t->sh_chats[i];
        if (!c->inflight && !c->seen) {
            release(t, i);
            continue;
        }
        if (now - c->renewed_ms >= every) {
            char ck[48];
            claim_key(ck, sizeof ck, c->chat);
            int64_t tok = t->h->claim(t->ctx, ck, 0);
            if (tok > 0) {
                c->token = tok;
                c->renewed_ms = now;
            } else if (tok == 0) {
                t->h->log(t->ctx, RD_LOG_WARN,
                          "chat claim lost to another replica (this one stalled); it may "
                          "answer what was in flight here again");
                c->inflight = 0;
                t->sh_chats[i] = t->sh_chats[--t->nsh_chats];
                continue;
            }
        }
        i++;
    }
    tg_gauge(t, t->m_claims, (double)t->nsh_chats);
    t->sh_rescan = again;
    return again;
}

/* At stop: what the core handled is recorded, claims are given up. */
void tg_shared_stop(tg *t) {
    complete_handled(t);
    while (t->nsh_chats)
        release(t, t->nsh_chats - 1);
    tg_gauge(t, t->m_claims, 0);
}

void tg_shared_free(tg *t) {
    free(t->sh_chats);
    t->sh_chats = NULL;
    t->nsh_chats = 0;
    free(t->sh_items);
    t->sh_items = NULL;
    t->nsh_items = t->capsh_items = 0;
}
