/*
 * The webhook route: Telegram POSTs one update per request. Its secret is
 * checked, the update journaled and queued (or, with replicas sharing the
 * store, handed to telegram_shared.c), and the answer tells Telegram
 * whether to retry: 200 once it is safe, 429 to come back, 5xx on failure.
 */
#include "telegram.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
        tg_refuse_update_id(t, "webhook", uid);
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
    int known = tg_recent_get(t, id);
    if (known == TG_RECENT_PENDING) tg_drain_locked(t);
    known = tg_recent_get(t, id);
    pthread_mutex_unlock(&t->in_mu);
    if (!known) {
        /* A retry after a restart: the dedupe index is in the store. */
        char k[40], *v = NULL;
        size_t vl = 0;
        tg_wkey(k, sizeof k, id);
        if (t->h->kv_get(t->ctx, k, &v, &vl) == RD_OK) known = TG_RECENT_SUBMITTED;
        free(v);
    }
    if (known == TG_RECENT_SUBMITTED) {
        cJSON_Delete(root);
        tg_answer(t, resp, 200, 0, "ok (duplicate)\n");
        return;
    }
    if (known == TG_RECENT_PENDING) {
        cJSON_Delete(root);
        tg_answer(t, resp, 429, 1, "queued; busy\n");
        return;
    }
    pthread_mutex_lock(&t->in_mu);
    tg_drain_locked(t);
    if (t->full || t->npending >= 1024) {
        /* Back-pressure: Telegram keeps the update and retries. */
        pthread_mutex_unlock(&t->in_mu);
        cJSON_Delete(root);
        tg_answer(t, resp, 429, 1, "busy\n");
        return;
    }
    tg_item *it = tg_item_new(t, id);
    if (it) {
        tg_update_parse(root, &it->u);
        tg_recent_set(t, id, TG_RECENT_PENDING);
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
    tg_jkey(jk, sizeof jk, seq);
    tg_wkey(wk, sizeof wk, id);
    snprintf(sv, sizeof sv, "%lld", (long long)seq);
    rd_kv_op ops[2] = {
        {.op = RD_KV_PUT, .key = jk, .val = raw, .val_len = raw ? strlen(raw) : 0},
        {.op = RD_KV_PUT, .key = wk, .val = sv, .val_len = strlen(sv)},
    };
    rd_status st = raw ? t->h->kv_txn(t->ctx, ops, 2) : RD_E_INTERNAL;
    free(raw);
    pthread_mutex_lock(&t->in_mu);
    it->state = st == RD_OK ? TG_ITEM_READY : TG_ITEM_DEAD;
    if (st != RD_OK) tg_recent_forget(t, id);
    pthread_cond_broadcast(&t->in_cv);
    tg_drain_locked(t);
    int now_state = tg_recent_get(t, id);
    if (st == RD_OK && now_state == TG_RECENT_PENDING && !t->full && !t->album_hold) {
        /* Concurrent requests: an older one is still being journaled and
         * goes first. That takes milliseconds; wait for it a little. */
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += 2;
        while (now_state == TG_RECENT_PENDING && !t->full && !t->album_hold &&
               !atomic_load(&t->quiescing)) {
            if (pthread_cond_timedwait(&t->in_cv, &t->in_mu, &dl) == ETIMEDOUT) break;
            tg_drain_locked(t);
            now_state = tg_recent_get(t, id);
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
    if (now_state == TG_RECENT_SUBMITTED || album)
        tg_answer(t, resp, 200, 0, "ok\n");
    else
        tg_answer(t, resp, 429, 1, "queued; busy\n"); /* journaled: the retry is a duplicate */
}
