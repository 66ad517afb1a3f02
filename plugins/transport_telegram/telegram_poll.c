/*
 * Long polling: one getUpdates at a time on the multi handle (quiesce()
 * cuts it at once), each batch journaled and queued before the next poll
 * confirms it, with back-off on errors and a pause on 429 and 409.
 */
#include "telegram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct batch_ent {
    int64_t id;
    const cJSON *u;
    const char *raw; /* the update's text in the reply, or NULL: print u */
    size_t raw_len;
} batch_ent;

static int by_id(const void *a, const void *b) {
    int64_t x = ((const batch_ent *)a)->id, y = ((const batch_ent *)b)->id;
    return x < y ? -1 : x > y;
}

/* The host can commit the journal without a sync of its own (ABI 1.6). */
static int lazy_journal(const tg *t) {
    return RD_HAS(t->h, kv_sync) && t->h->kv_txn_lazy && t->h->kv_sync;
}

/* Journals one getUpdates result (body: the reply's text) and queues it.
 * Returns 0, 1 when it held only refused updates (poll again after a
 * pause), or -1 when the journal write failed (the offset then stays, so
 * Telegram sends the batch again). */
static int handle_batch(tg *t, const cJSON *result, const char *body, size_t body_len) {
    if (!cJSON_IsArray(result)) {
        t->h->log(t->ctx, RD_LOG_ERROR, "getUpdates: result is not an array; polling again");
        tg_count(t, t->m_api_err, "getUpdates", "malformed", 1);
        return -1;
    }
    int total = cJSON_GetArraySize(result);
    if (total <= 0) return 0;
    batch_ent *v = calloc((size_t)total, sizeof *v);
    size_t *off = calloc((size_t)total, sizeof *off), *len = calloc((size_t)total, sizeof *len);
    if (!v || !off || !len) {
        free(v);
        free(off);
        free(len);
        return -1;
    }
    /* Each update is journaled as Telegram sent it when the reply's text
     * lines up with the parsed array, else printed again. */
    int spans = body ? tg_json_result_spans(body, body_len, off, len, total) : -1;
    size_t n = 0, refused = 0, idx = 0;
    for (const cJSON *e = result->child; e && n < (size_t)total; e = e->next, idx++) {
        const cJSON *uid = cJSON_GetObjectItemCaseSensitive(e, "update_id");
        if (!uid) {
            t->h->log(t->ctx, RD_LOG_WARN, "getUpdates: an element without update_id ignored");
            tg_count(t, t->m_ignored, "no_update_id", NULL, 1);
            continue;
        }
        if (!tg_json_i64_value(uid, &v[n].id) || !tg_valid_update_id(v[n].id)) {
            /* Cannot be confirmed (offset = id + 1) nor ordered: refused.
             * A server that keeps sending it gets polled at a slower pace. */
            tg_refuse_update_id(t, "getUpdates", uid);
            refused++;
            continue;
        }
        if (spans == total) {
            v[n].raw = body + off[idx];
            v[n].raw_len = len[idx];
        }
        v[n++].u = e;
    }
    free(off);
    free(len);
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
        char *meta = tg_meta_json(t);
        rd_kv_op op = {.op = RD_KV_PUT, .key = TG_META_KEY, .val = meta, .val_len = strlen(meta)};
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
        raw[i] = v[i].raw ? strndup(v[i].raw, v[i].raw_len) : cJSON_PrintUnformatted(v[i].u);
        if (!raw[i]) goto out;
    }
    pthread_mutex_lock(&t->in_mu);
    size_t k = 0;
    for (; k < n; k++) {
        items[k] = tg_item_new(t, v[k].id);
        if (!items[k]) break;
        tg_update_parse(v[k].u, &items[k]->u);
        tg_jkey(keys[k], sizeof keys[k], items[k]->seq);
        ops[k] =
            (rd_kv_op){.op = RD_KV_PUT, .key = keys[k], .val = raw[k], .val_len = strlen(raw[k])};
    }
    int64_t prev_offset = t->tg_offset;
    if (k == n) t->tg_offset = max_id + 1;
    pthread_mutex_unlock(&t->in_mu);
    /* The watermark and marks due ride on this commit: at a steady rate
     * they need no synced write of their own. */
    tg_acks acks;
    int with_acks = k == n ? tg_acks_take(t, &acks) : 0;
    char *meta = k == n ? tg_meta_json(t) : NULL;
    size_t nops = n + 1;
    rd_kv_op *more = with_acks > 0 ? realloc(ops, (nops + acks.n) * sizeof *ops) : NULL;
    if (more) {
        ops = more;
        memcpy(ops + nops, acks.ops, acks.n * sizeof *ops);
        nops += acks.n;
    }
    rd_status st = RD_E_INTERNAL;
    if (meta) {
        ops[n] =
            (rd_kv_op){.op = RD_KV_PUT, .key = TG_META_KEY, .val = meta, .val_len = strlen(meta)};
        /* Without a sync of its own: the next poll's offset confirms these
         * updates only once a sync covers the commit (tg_journal_sync), and
         * the backends' synced writes usually do that first. Until then a
         * crash of the machine loses nothing Telegram does not still keep. */
        uint64_t seq = 0;
        if (lazy_journal(t)) {
            st = t->h->kv_txn_lazy(t->ctx, ops, nops, &seq);
            if (st == RD_OK && seq > t->jseq) t->jseq = seq;
        } else {
            st = t->h->kv_txn(t->ctx, ops, nops);
        }
    }
    free(meta);
    if (with_acks > 0) tg_acks_end(t, &acks, st == RD_OK && more != NULL);
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

int tg_journal_sync(tg *t, int64_t wait_ms) {
    if (!t->jseq) return 0;
    rd_status st = t->h->kv_sync(t->ctx, t->jseq, wait_ms);
    if (st == RD_OK) {
        t->jseq = 0;
        return 0;
    }
    t->h->log(t->ctx, RD_LOG_ERROR,
              "cannot sync the journal to disk; its updates stay unconfirmed until it can");
    return -1;
}

/* One getUpdates exchange on the multi handle, so quiesce() can cut a
 * hanging long poll at once (curl_multi_wakeup). */
void tg_poll_once(tg *t, int *attempt) {
    /* The offset below confirms the updates journaled last: they must be
     * on disk first. Backends' synced commits cover them within about a
     * millisecond while messages flow; after TG_SYNC_WAIT_MS this syncs. */
    if (tg_journal_sync(t, TG_SYNC_WAIT_MS) != 0) {
        tg_sleep(t, tg_backoff(t, (*attempt)++), &t->quiescing);
        return;
    }
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
    int64_t wait = 0;
    if (call.cls == TG_C_OK) t->offset_sent = offset;
    int batch = 0;
    switch (call.cls) {
    case TG_C_OK:
        batch = handle_batch(t, call.resp.result, buf.p, buf.len);
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
    free(buf.p);
    if (wait > 0) tg_sleep(t, wait, &t->quiescing);
}
