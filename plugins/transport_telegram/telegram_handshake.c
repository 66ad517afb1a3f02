/*
 * The handshake with the Bot API: getMe (who the bot is; nothing goes to
 * the core before it succeeded), and setWebhook or deleteWebhook (where
 * Telegram sends updates).
 */
#include "telegram.h"

#include <stdio.h>
#include <stdlib.h>

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

tg_class tg_set_webhook(tg *t, char *detail, size_t n) {
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

void tg_delete_webhook(tg *t, int64_t budget_ms) {
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
    tg_class cls = tg_set_webhook(t, detail, sizeof detail);
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
