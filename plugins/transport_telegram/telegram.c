/*
 * telegram transport: Telegram Bot API by long polling or webhook.
 *
 * This file holds the descriptor, the option schema, configuration and the
 * lifecycle, on top of the other files (docs/layout.md shows the layers).
 * Updates come in through telegram_poll.c or telegram_webhook.c; replies
 * go out through telegram_send.c. Threads are named tg-* (top -H, perf).
 */
#include "telegram.h"
#include "backoff.h"
#include "hash_mix.h"
#include "telegram_attach.h"
#include "url_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const mode_choices[] = {"longpoll", "webhook", NULL};
static const char *const group_choices[] = {"mention", "all", NULL};
static const char *const parse_choices[] = {"none", "HTML", "MarkdownV2", NULL};
static const char *const format_choices[] = {"markdown", "plain", NULL};
static const char *const edits_choices[] = {"ignore", "answer", "note", NULL};

static const rd_option opts[] = {
    {"token", RD_OPT_STRING, RD_OPT_REQUIRED | RD_OPT_SECRET, NULL,
     "bot token from @BotFather, <bot id>:<secret>", 0, 0, NULL, RD_BIND(tg_keys, token)},
    {"api_base", RD_OPT_URL, 0, "https://api.telegram.org",
     "Bot API base URL: the cloud API, a local Bot API server or a test fake", 0, 0, NULL,
     RD_BIND(tg_keys, api_base)},
    {"ca_file", RD_OPT_STRING, 0, NULL,
     "PEM file of the certificate authorities trusted for api_base instead of the system's "
     "(a local Bot API server behind a private CA)",
     0, 0, NULL, RD_BIND(tg_keys, ca_file)},
    {"mode", RD_OPT_ENUM, 0, "longpoll", "longpoll (getUpdates) or webhook", 0, 0, mode_choices,
     RD_BIND(tg_keys, mode)},
    {"timeout", RD_OPT_DURATION, 0, "30", "long-poll timeout, seconds (0 = short polls)", 0, 50,
     NULL, RD_BIND(tg_keys, timeout)},
    {"limit", RD_OPT_INT, 0, "100", "updates per getUpdates call", 1, 100, NULL,
     RD_BIND(tg_keys, limit)},
    {"allowed_updates", RD_OPT_LIST, 0, NULL,
     "update types to ask for; default message, edited_message (+ channel posts when enabled)", 0,
     0, NULL, RD_BIND(tg_keys, allowed_updates)},
    {"group_mode", RD_OPT_ENUM, 0, "mention",
     "groups: answer only when addressed (mention, reply, command) or all messages", 0, 0,
     group_choices, RD_BIND(tg_keys, group_mode)},
    {"channel_posts", RD_OPT_BOOL, 0, "false", "forward channel posts", 0, 0, NULL,
     RD_BIND(tg_keys, channel_posts)},
    {"edited_messages", RD_OPT_BOOL, 0, NULL,
     "older spelling of edits: true = answer, false = ignore (edits wins when both are set)", 0, 0,
     NULL, RD_BIND(tg_keys, edited_messages)},
    {"edits", RD_OPT_ENUM, 0, "note",
     "edited messages: ignore, answer (routed again, flagged as an edit) or note (edits_notice "
     "in reply, the agent is not run)",
     0, 0, edits_choices, RD_BIND(tg_keys, edits)},
    {"edits_notice", RD_OPT_STRING, 0,
     "Edits aren't re-sent to the agent; send a new message instead.",
     "edits = note: the reply to an edited message", 0, 0, NULL, RD_BIND(tg_keys, edits_notice)},
    {"commands", RD_OPT_LIST, 0, NULL,
     "bot commands registered with setMyCommands beside /new and /persona, as NAME: DESCRIPTION "
     "(NAME 1-32 of a-z 0-9 _, no comma in DESCRIPTION)",
     0, 0, NULL, RD_BIND(tg_keys, commands)},
    {"buttons_max", RD_OPT_INT, 0, "12",
     "most buttons shown for the choices of one reply; further choices are left out", 1, 100, NULL,
     RD_BIND(tg_keys, buttons_max)},
    {"button_label_max", RD_OPT_INT, 0, "64",
     "characters of a choice shown on its button; longer labels are cut with an ellipsis (the "
     "whole choice is still what a press sends)",
     8, 256, NULL, RD_BIND(tg_keys, button_label_max)},
    {"buttons_expiry_s", RD_OPT_DURATION, 0, "604800",
     "a button press is accepted this long after the reply; then it is refused and its stored "
     "choices deleted",
     60, 31536000, NULL, RD_BIND(tg_keys, buttons_expiry_s)},
    {"parse_mode", RD_OPT_ENUM, 0, "none",
     "reply markup: none (entities per format), or HTML / MarkdownV2 for Telegram to parse", 0, 0,
     parse_choices, RD_BIND(tg_keys, parse_mode)},
    {"format", RD_OPT_ENUM, 0, "markdown",
     "replies and notices: markdown (read as CommonMark, sent with Telegram entities) or plain "
     "(sent as is); used when parse_mode = none",
     0, 0, format_choices, RD_BIND(tg_keys, format)},
    {"link_preview", RD_OPT_BOOL, 0, "on", "show a preview of the first link in a reply", 0, 0,
     NULL, RD_BIND(tg_keys, link_preview)},
    {"escape_replies", RD_OPT_BOOL, 0, "false",
     "escape reply text for parse_mode so it shows literally (notices are always escaped)", 0, 0,
     NULL, RD_BIND(tg_keys, escape_replies)},
    {"reply_to_message", RD_OPT_BOOL, 0, "true", "replies quote the user's message", 0, 0, NULL,
     RD_BIND(tg_keys, reply_to_message)},
    {"max_message_length", RD_OPT_INT, 0, "4096", "UTF-16 code units per message before splitting",
     16, 4096, NULL, RD_BIND(tg_keys, max_message_length)},
    {"throttle", RD_OPT_BOOL, 0, "on",
     "pace outbound messages; off for a local Bot API server, tests and benchmarks", 0, 0, NULL,
     RD_BIND(tg_keys, throttle)},
    {"throttle_chat_interval_ms", RD_OPT_INT, 0, "1000", "minimum gap between messages to a chat",
     0, 600000, NULL, RD_BIND(tg_keys, throttle_chat_interval_ms)},
    {"throttle_group_per_minute", RD_OPT_INT, 0, "20",
     "messages per minute to one group (0 = no cap)", 0, 100000, NULL,
     RD_BIND(tg_keys, throttle_group_per_minute)},
    {"throttle_global_per_s", RD_OPT_INT, 0, "30", "messages per second overall (0 = no cap)", 0,
     100000, NULL, RD_BIND(tg_keys, throttle_global_per_s)},
    {"edit_interval_ms", RD_OPT_INT, 0, "1000", "minimum gap between progress edits in a chat", 0,
     600000, NULL, RD_BIND(tg_keys, edit_interval_ms)},
    {"typing", RD_OPT_BOOL, 0, "true", "show \"typing\" while the backend works", 0, 0, NULL,
     RD_BIND(tg_keys, typing)},
    {"typing_interval_ms", RD_OPT_INT, 0, "4000", "chat action refresh period", 1000, 60000, NULL,
     RD_BIND(tg_keys, typing_interval_ms)},
    {"request_timeout_s", RD_OPT_DURATION, 0, "30",
     "timeout of one API request (not the long poll)", 1, 600, NULL,
     RD_BIND(tg_keys, request_timeout_s)},
    {"retry_base_ms", RD_OPT_INT, 0, "500", "first back-off after a 5xx or network error", 10,
     600000, NULL, RD_BIND(tg_keys, retry_base_ms)},
    {"retry_max_ms", RD_OPT_INT, 0, "30000", "back-off cap", 10, 3600000, NULL,
     RD_BIND(tg_keys, retry_max_ms)},
    {"send_retry_budget_s", RD_OPT_DURATION, 0, "300",
     "give up delivering one reply after this long", 1, 86400, NULL,
     RD_BIND(tg_keys, send_retry_budget_s)},
    {"retry_after_max_s", RD_OPT_DURATION, 0, "86400",
     "longest 429 retry_after honoured; longer ones are clamped and logged", 1, 604800, NULL,
     RD_BIND(tg_keys, retry_after_max_s)},
    {"outbox_expiry_s", RD_OPT_DURATION, 0, "86400",
     "a reply Telegram keeps refusing (429 past the send budget, outage) waits in the state store "
     "this long, then is dropped, counted and logged",
     1, 2592000, NULL, RD_BIND(tg_keys, outbox_expiry_s)},
    {"outbox_max", RD_OPT_INT, 0, "10000",
     "most replies waiting in the outbox; past it a reply that cannot be sent is dropped (0 = no "
     "outbox)",
     0, 1000000, NULL, RD_BIND(tg_keys, outbox_max)},
    {"chat_cache_max", RD_OPT_INT, 0, "50000",
     "most chats whose progress message and chat kind are remembered; idle ones are forgotten "
     "first",
     16, 10000000, NULL, RD_BIND(tg_keys, chat_cache_max)},
    {"migrations_max", RD_OPT_INT, 0, "100000",
     "most group-to-supergroup migrations kept (store and memory); the oldest go first", 16,
     10000000, NULL, RD_BIND(tg_keys, migrations_max)},
    {"start_timeout_s", RD_OPT_DURATION, 0, "15",
     "how long start waits for getMe before continuing in the background", 1, 600, NULL,
     RD_BIND(tg_keys, start_timeout_s)},
    {"confirm_on_stop", RD_OPT_BOOL, 0, "true",
     "longpoll: confirm fetched updates with a short getUpdates at stop", 0, 0, NULL,
     RD_BIND(tg_keys, confirm_on_stop)},
    {"delete_webhook", RD_OPT_BOOL, 0, "true",
     "longpoll: call deleteWebhook at start (getUpdates answers 409 while a webhook is set)", 0, 0,
     NULL, RD_BIND(tg_keys, delete_webhook)},
    {"webhook_path", RD_OPT_STRING, 0, NULL,
     "webhook: admin-server path Telegram posts to; default /telegram/<instance>", 0, 0, NULL,
     RD_BIND(tg_keys, webhook_path)},
    {"webhook_url", RD_OPT_STRING, 0, NULL,
     "webhook: public HTTPS URL for setWebhook at start; empty = leave the webhook as it is", 0, 0,
     NULL, RD_BIND(tg_keys, webhook_url)},
    {"secret_token", RD_OPT_STRING, RD_OPT_SECRET, NULL,
     "webhook: X-Telegram-Bot-Api-Secret-Token value (1-256 of A-Z a-z 0-9 _ -); required", 0, 0,
     NULL, RD_BIND(tg_keys, secret_token)},
    {"max_connections", RD_OPT_INT, 0, "40", "webhook: setWebhook max_connections", 1, 100000, NULL,
     RD_BIND(tg_keys, max_connections)},
    {"drop_pending_updates", RD_OPT_BOOL, 0, "false",
     "webhook: setWebhook drops the backlog (loses messages; off by default)", 0, 0, NULL,
     RD_BIND(tg_keys, drop_pending_updates)},
    {"delete_webhook_on_stop", RD_OPT_BOOL, 0, "false",
     "webhook: call deleteWebhook at stop (Telegram then keeps updates until the next start)", 0, 0,
     NULL, RD_BIND(tg_keys, delete_webhook_on_stop)},
    {"media", RD_OPT_BOOL, 0, "on",
     "fetch photos, documents, voice notes, audio, video, stickers and pass them on as "
     "attachments; "
     "off answers them with unsupported_notice",
     0, 0, NULL, RD_BIND(tg_keys, media)},
    {"max_media_bytes", RD_OPT_INT, 0, "20971520",
     "largest file fetched (20 MiB is the cloud Bot API's download limit); larger ones get "
     "unsupported_notice",
     1, 2097152000, NULL, RD_BIND(tg_keys, max_media_bytes)},
    {"unsupported_notice", RD_OPT_STRING, 0, "Sorry, I can't take this kind of message.",
     "reply to a message whose file cannot be handled (media off, too large, unsupported kind)", 0,
     0, NULL, RD_BIND(tg_keys, unsupported_notice)},
    {"album_wait_ms", RD_OPT_INT, 0, "1000",
     "how long the first part of an album waits for the others before they go on as one message", 0,
     10000, NULL, RD_BIND(tg_keys, album_wait_ms)},
    {"max_unrecorded_replies", RD_OPT_INT, 0, "1024",
     "most replies sent while the store has not yet recorded them as answered (what a kill -9 "
     "sends again); a further reply waits for the next write",
     1, 100000, NULL, RD_BIND(tg_keys, max_unrecorded_replies)},
    {"send_async", RD_OPT_BOOL, 0, "true",
     "a reply that is one plain message goes out from the transport's event loop, so no router "
     "worker waits for the Bot API (needs a routerd of plugin ABI 1.4)",
     0, 0, NULL, RD_BIND(tg_keys, send_async)},
    {"send_concurrency", RD_OPT_INT, 0, "256",
     "most sendMessage requests of the event loop in flight at once, and connections to the "
     "Bot API it keeps open; further replies wait in its queue",
     1, 65536, NULL, RD_BIND(tg_keys, send_concurrency)},
    {0},
};

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

static char *dup_or_null(const char *s) {
    return s && *s ? strdup(s) : NULL;
}

static int valid_secret_token(const char *s) {
    return tg_chars_ok(s, 1, 256, "_-");
}

static int valid_token(const char *s, int64_t *bot_id) {
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || !colon[1] || strlen(s) > 200) return 0;
    int64_t id = 0;
    for (const char *p = s; p < colon; p++) {
        if (*p < '0' || *p > '9' || id > INT64_MAX / 10 - 10) return 0;
        id = id * 10 + (*p - '0');
    }
    /* The token goes into a URL path: refuse anything that would need
     * escaping there. */
    for (const char *p = colon + 1; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == ':'))
            return 0;
    }
    *bot_id = id;
    return 1;
}

static char *allowed_updates_json(tg *t) {
    cJSON *arr = cJSON_CreateArray();
    /* Written empty asks Telegram for its own default: only an absent key
     * gets ours. */
    const char *const *list =
        t->h->cfg_isset(t->ctx, "allowed_updates") ? t->c.k.allowed_updates : NULL;
    if (list) {
        for (size_t i = 0; list[i]; i++)
            if (*list[i]) cJSON_AddItemToArray(arr, cJSON_CreateString(list[i]));
    } else {
        cJSON_AddItemToArray(arr, cJSON_CreateString("message"));
        if (t->c.edited_messages) cJSON_AddItemToArray(arr, cJSON_CreateString("edited_message"));
        cJSON_AddItemToArray(arr, cJSON_CreateString("callback_query"));
        if (t->c.channel_posts) {
            cJSON_AddItemToArray(arr, cJSON_CreateString("channel_post"));
            if (t->c.edited_messages)
                cJSON_AddItemToArray(arr, cJSON_CreateString("edited_channel_post"));
        }
    }
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return s;
}

static rd_status read_config(tg *t, rd_error *err) {
    const rd_host *h = t->h;
    rd_ctx *x = t->ctx;
    tg_cfg *c = &t->c;
    if (!RD_HAS(h, cfg_bind) || !h->cfg_bind) {
        h->error(err, RD_E_CONFIG, "fatal", "needs a routerd speaking plugin ABI 1.2");
        return RD_E_CONFIG;
    }
    rd_status st = h->cfg_bind(x, &c->k, sizeof c->k, err);
    if (st != RD_OK) return st;
    /* The schema checked types, bounds and choices; what is left here is
     * what it cannot say. */
    const tg_keys *k = &c->k;
    if (!k->token || !valid_token(k->token, &t->token_bot_id)) {
        h->error(err, RD_E_CONFIG, "fatal",
                 "token: not a bot token (expected <bot id>:<secret> as given by @BotFather)");
        return RD_E_CONFIG;
    }
    c->token = strdup(k->token);
    c->api_base = strdup(k->api_base);
    size_t bl = strlen(c->api_base);
    while (bl > 8 && c->api_base[bl - 1] == '/')
        c->api_base[--bl] = 0;
    c->ca_file = dup_or_null(k->ca_file);
    int cae = c->ca_file ? ca_file_check(c->ca_file) : 0;
    if (cae) {
        h->error(err, RD_E_CONFIG, "fatal", "ca_file: cannot read %s: %s", c->ca_file,
                 strerror(cae));
        return RD_E_CONFIG;
    }
    /* Enums are indexes into the *_choices arrays above. */
    c->mode = k->mode == 1 ? TG_MODE_WEBHOOK : TG_MODE_LONGPOLL;
    c->poll_timeout_s = k->timeout / 1000; /* getUpdates takes whole seconds */
    c->limit = k->limit;
    c->group_all = k->group_mode == 1;
    c->channel_posts = k->channel_posts;
    /* edits, or its older boolean spelling when only that is written. */
    c->edits = k->edits == 0 ? TG_EDITS_IGNORE : k->edits == 1 ? TG_EDITS_ANSWER : TG_EDITS_NOTE;
    if (!h->cfg_isset(x, "edits") && h->cfg_isset(x, "edited_messages"))
        c->edits = k->edited_messages ? TG_EDITS_ANSWER : TG_EDITS_IGNORE;
    c->edited_messages = c->edits != TG_EDITS_IGNORE;
    c->edits_notice = dup_or_null(k->edits_notice);
    if (c->edits == TG_EDITS_NOTE && !c->edits_notice) {
        h->error(err, RD_E_CONFIG, "fatal", "edits_notice: empty, but edits = note sends it");
        return RD_E_CONFIG;
    }
    c->buttons_max = k->buttons_max;
    c->button_label_max = k->button_label_max;
    c->buttons_expiry_s = k->buttons_expiry_s / 1000;
    c->max_unrecorded = k->max_unrecorded_replies;
    c->send_async = k->send_async;
    c->send_concurrency = k->send_concurrency;
    c->parse_mode = k->parse_mode == 1 ? TG_PM_HTML : k->parse_mode == 2 ? TG_PM_MDV2 : TG_PM_NONE;
    c->escape_replies = k->escape_replies;
    c->format_markdown = k->format != 1; /* 1 = plain */
    c->link_preview = k->link_preview;
    c->reply_to_message = k->reply_to_message;
    c->max_units = k->max_message_length;
    c->throttle = k->throttle;
    c->throttle_cfg.chat_interval_ms = k->throttle_chat_interval_ms;
    c->throttle_cfg.group_per_minute = (int)k->throttle_group_per_minute;
    c->throttle_cfg.global_per_s = (int)k->throttle_global_per_s;
    c->edit_interval_ms = k->edit_interval_ms;
    c->typing = k->typing;
    c->typing_interval_ms = k->typing_interval_ms;
    c->request_timeout_ms = k->request_timeout_s;
    c->retry_base_ms = k->retry_base_ms;
    c->retry_max_ms = k->retry_max_ms;
    if (c->retry_max_ms < c->retry_base_ms) c->retry_max_ms = c->retry_base_ms;
    c->send_budget_ms = k->send_retry_budget_s;
    c->start_timeout_ms = k->start_timeout_s;
    c->retry_after_max_s = k->retry_after_max_s / 1000;
    c->outbox_expiry_ms = k->outbox_expiry_s;
    c->outbox_max = k->outbox_max;
    c->chat_cache_max = k->chat_cache_max;
    c->migrations_max = k->migrations_max;
    c->confirm_on_stop = k->confirm_on_stop;
    c->delete_webhook = k->delete_webhook;
    c->webhook_url = dup_or_null(k->webhook_url);
    c->secret_token = dup_or_null(k->secret_token);
    c->max_connections = k->max_connections;
    c->drop_pending_updates = k->drop_pending_updates;
    c->delete_webhook_on_stop = k->delete_webhook_on_stop;
    const char *wp = k->webhook_path;
    if (wp && *wp) {
        if (wp[0] != '/') {
            h->error(err, RD_E_CONFIG, "fatal", "webhook_path: must start with '/'");
            return RD_E_CONFIG;
        }
        c->webhook_path = strdup(wp);
    } else {
        char buf[128];
        snprintf(buf, sizeof buf, "/telegram/%s", t->instance);
        c->webhook_path = strdup(buf);
    }
    if (c->mode == TG_MODE_WEBHOOK) {
        if (!c->secret_token) {
            h->error(err, RD_E_CONFIG, "fatal",
                     "secret_token: required in webhook mode (anyone could post updates "
                     "otherwise)");
            return RD_E_CONFIG;
        }
        if (!valid_secret_token(c->secret_token)) {
            h->error(err, RD_E_CONFIG, "fatal",
                     "secret_token: 1-256 characters from A-Z a-z 0-9 _ - (Telegram's rule)");
            return RD_E_CONFIG;
        }
        /* A string, not a URL option: empty is allowed (leave the webhook
         * alone), and long polling ignores it. */
        if (c->webhook_url && !url_is_http(c->webhook_url)) {
            h->error(err, RD_E_CONFIG, "fatal", "webhook_url: must be an http(s) URL");
            return RD_E_CONFIG;
        }
    }
    if (tg_media_config(t, err) != RD_OK) return RD_E_INTERNAL;
    c->allowed_updates_json = allowed_updates_json(t);
    if (c->allowed_updates_json && !strstr(c->allowed_updates_json, "\"callback_query\""))
        h->log(x, RD_LOG_WARN,
               "allowed_updates lacks callback_query: presses of reply buttons will not arrive");
    size_t n = strlen(c->api_base) + strlen(c->token) + 8;
    t->url_prefix = malloc(n);
    snprintf(t->url_prefix, n, "%s/bot%s/", c->api_base, c->token);
    return RD_OK;
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                 */

static void make_metrics(tg *t) {
    const rd_host *h = t->h;
    static const char *const l_method_code[] = {"method", "code", NULL};
    static const char *const l_kind[] = {"kind", NULL};
    static const char *const l_reason[] = {"reason", NULL};
    static const char *const l_method[] = {"method", NULL};
    static const char *const l_status[] = {"status", NULL};
    static const char *const l_none[] = {NULL};
    static const double wait_b[] = {0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60};
    static const double api_b[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    t->m_api_err = h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_api_errors_total",
                             "Failed Bot API requests by method and code (HTTP status, "
                             "network, malformed)",
                             l_method_code, NULL, 0);
    t->m_updates = h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_updates_total",
                             "Updates received from Telegram by kind", l_kind, NULL, 0);
    t->m_ignored = h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_updates_ignored_total",
                             "Updates acknowledged without routing, by reason", l_reason, NULL, 0);
    t->m_sent = h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_messages_sent_total",
                          "Messages sent or edited, by method", l_method, NULL, 0);
    t->m_send_fail = h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_send_failures_total",
                               "Replies that could not be delivered, by reason", l_reason, NULL, 0);
    t->m_retries = h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_retries_total",
                             "Bot API requests retried, by reason", l_reason, NULL, 0);
    t->m_throttle_wait =
        h->metric(t->ctx, RD_METRIC_HISTOGRAM, "routerd_telegram_throttle_wait_seconds",
                  "Time a message waited for the outbound pacing", l_none, wait_b,
                  sizeof wait_b / sizeof wait_b[0]);
    t->m_pending = h->metric(t->ctx, RD_METRIC_GAUGE, "routerd_telegram_pending_updates",
                             "Journaled updates not yet accepted by the router", l_none, NULL, 0);
    t->m_claims = h->metric(t->ctx, RD_METRIC_GAUGE, "routerd_telegram_chat_claims",
                            "Chats this replica works on (webhook scale-out)", l_none, NULL, 0);
    t->m_webhook = h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_webhook_requests_total",
                             "Webhook requests by HTTP status answered", l_status, NULL, 0);
    t->m_resets =
        h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_id_space_resets_total",
                  "Times update ids went backwards (new Bot API server or bot)", l_none, NULL, 0);
    static const char *const l_map[] = {"map", NULL};
    static const char *const l_outcome[] = {"outcome", NULL};
    t->m_tracked = h->metric(t->ctx, RD_METRIC_GAUGE, "routerd_telegram_tracked_chats",
                             "Per-chat entries the transport keeps, by map (chats, migrations, "
                             "outbox)",
                             l_map, NULL, 0);
    t->m_outbox = h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_outbox_total",
                            "Replies through the outbox, by outcome (queued, delivered, expired, "
                            "failed, full, store_failed)",
                            l_outcome, NULL, 0);
    t->m_outbox_expired =
        h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_outbox_expired_total",
                  "Replies dropped undelivered after outbox_expiry_s", l_none, NULL, 0);
    t->m_api_seconds =
        h->metric(t->ctx, RD_METRIC_HISTOGRAM, "routerd_telegram_api_request_seconds",
                  "Bot API request latency (long polls excluded)", l_method, api_b,
                  sizeof api_b / sizeof api_b[0]);
    t->m_unrecorded =
        h->metric(t->ctx, RD_METRIC_GAUGE, "routerd_telegram_unrecorded_replies",
                  "Replies sent or being sent whose answered mark the store has not yet recorded "
                  "(at most max_unrecorded_replies)",
                  l_none, NULL, 0);
    t->m_record_waits =
        h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_reply_record_waits_total",
                  "Replies that waited for the store to record earlier ones", l_none, NULL, 0);
    tg_media_metrics(t);
}

static void tg_destroy(void *self);

static rd_status tg_create(const rd_host *host, rd_ctx *ctx, void **self, rd_error *err) {
    tg *t = calloc(1, sizeof *t);
    if (!t) {
        host->error(err, RD_E_INTERNAL, "fatal", "out of memory");
        return RD_E_INTERNAL;
    }
    t->h = host;
    t->ctx = ctx;
    const char *inst = host->info(ctx, "instance");
    snprintf(t->instance, sizeof t->instance, "%s", inst && *inst ? inst : "telegram");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake_cv, &ca);
    pthread_cond_init(&t->typ_cv, &ca);
    pthread_cond_init(&t->in_cv, &ca);
    pthread_cond_init(&t->ob_cv, &ca);
    pthread_cond_init(&t->rep_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&t->mig_mu, NULL);
    pthread_mutex_init(&t->ob_mu, NULL);
    pthread_mutex_init(&t->wake_mu, NULL);
    easy_pool_init(&t->pool, 16);
    pthread_mutex_init(&t->in_mu, NULL);
    pthread_mutex_init(&t->out_mu, NULL);
    pthread_mutex_init(&t->typ_mu, NULL);
    pthread_mutex_init(&t->series_mu, NULL);
    pthread_mutex_init(&t->rep_mu, NULL);
    atomic_init(&t->acked, -1);
    t->persisted = -1;
    t->last_seq = -1;
    *self = t;
    rd_status st = read_config(t, err);
    if (st != RD_OK) {
        tg_destroy(t);
        *self = NULL;
        return st;
    }
    tg_throttle_cfg tc = t->c.throttle_cfg;
    if (!t->c.throttle) memset(&tc, 0, sizeof tc);
    t->thr = tg_throttle_new(&tc);
    t->chats = tg_map_new();
    t->typing = tg_map_new();
    t->recent = tg_map_new();
    t->rep_keys = tg_map_new();
    t->recent_ring = calloc(8192, sizeof *t->recent_ring);
    t->mig_to = tg_map_new();
    t->mig_from = tg_map_new();
    t->ob_chats = tg_map_new();
    if (!t->thr || !t->chats || !t->typing || !t->recent || !t->recent_ring || !t->rep_keys ||
        !t->mig_to || !t->mig_from || !t->ob_chats) {
        tg_destroy(t);
        *self = NULL;
        host->error(err, RD_E_INTERNAL, "fatal", "out of memory");
        return RD_E_INTERNAL;
    }
    make_metrics(t);
    if ((st = tg_cmds_create(t, err)) != RD_OK || (st = tg_buttons_create(t, err)) != RD_OK) {
        tg_destroy(t);
        *self = NULL;
        return st;
    }
    return RD_OK;
}

static void tg_stop(void *self);

static rd_status tg_start(void *self, rd_error *err) {
    tg *t = self;
    if (tg_api_init(t) != 0) {
        t->h->error(err, RD_E_INTERNAL, "fatal", "cannot set up libcurl");
        return RD_E_INTERNAL;
    }
    tg_buttons_load_key(t);
    /* Under a lease (replicas sharing a store) the state is loaded when
     * this replica becomes the leader, not before. */
    t->shared = tg_shared_enabled(t);
    if (t->shared)
        t->h->log(t->ctx, RD_LOG_INFO,
                  "shared store: every replica takes webhooks, chats are claimed one replica "
                  "at a time");
    else if (RD_HAS(t->h, lead) && t->h->lead)
        snprintf(t->lead_key, sizeof t->lead_key, "telegram:%lld", (long long)t->token_bot_id);
    rd_status st = t->lead_key[0] || t->shared ? RD_OK : tg_journal_load(t, err);
    if (st != RD_OK) return st;
    tg_mig_load(t);
    tg_outbox_load(t);
    if (t->shared) {
        /* Replicas write outbox rows side by side: ids from the clock
         * (microseconds), so two replicas never reuse one. */
        int64_t base = t->h->wall_ns() / 1000;
        if (base > t->ob_next) t->ob_next = base;
    }
    /* The send loop and the buttons thread exist before the first update
     * reaches the router (from the intake thread, or from a webhook once
     * the route is up), whose workers reply through them. */
    tg_buttons_start(t);
    tg_async_start(t);
    if (t->c.mode == TG_MODE_WEBHOOK) {
        /* The host refuses a wrong secret from the headers, before the body. */
        st = RD_HAS(t->h, http_route_auth) && t->h->http_route_auth
                 ? t->h->http_route_auth(t->ctx, "POST", t->c.webhook_path,
                                         "X-Telegram-Bot-Api-Secret-Token", t->c.secret_token,
                                         tg_webhook, t)
                 : t->h->http_route(t->ctx, "POST", t->c.webhook_path, tg_webhook, t);
        if (st != RD_OK) {
            t->h->error(err, RD_E_CONFIG, "fatal", "webhook_path: cannot register POST %s",
                        t->c.webhook_path);
            st = RD_E_CONFIG;
            goto fail;
        }
    }
    st = tg_get_me(t, t->c.start_timeout_ms, err);
    if (st == RD_E_CONFIG) goto fail;
    if (st != RD_OK)
        t->h->log(t->ctx, RD_LOG_WARN, "%s; continuing the handshake in the background", err->msg);
    /* A refused setWebhook (bad URL, ...) is a configuration error. */
    if (st == RD_OK && t->c.mode == TG_MODE_WEBHOOK && t->c.webhook_url &&
        tg_start_webhook(t, err) == RD_E_CONFIG) {
        st = RD_E_CONFIG;
        goto fail;
    }
    memset(err, 0, sizeof *err);
    /* With a shared store files are fetched inline (telegram_media.c). */
    if (!t->shared && pthread_create(&t->fetch_th, NULL, tg_fetch_loop, t) != 0) {
        t->h->error(err, RD_E_INTERNAL, "fatal", "cannot start the file fetcher thread");
        st = RD_E_INTERNAL;
        goto fail;
    }
    t->fetch_running = !t->shared;
    if (t->fetch_running) pthread_setname_np(t->fetch_th, "tg-fetch");
    atomic_store(&t->started, 1);
    if (pthread_create(&t->main_th, NULL, tg_main_loop, t) != 0) {
        t->h->error(err, RD_E_INTERNAL, "fatal", "cannot start the intake thread");
        atomic_store(&t->started, 0);
        st = RD_E_INTERNAL;
        goto fail;
    }
    t->main_running = 1;
    pthread_setname_np(t->main_th, "tg-intake");
    if (pthread_create(&t->typing_th, NULL, tg_typing_loop, t) == 0) {
        t->typing_running = 1;
        pthread_setname_np(t->typing_th, "tg-typing");
    }
    if (pthread_create(&t->ob_th, NULL, tg_outbox_loop, t) == 0) {
        t->ob_running = 1;
        pthread_setname_np(t->ob_th, "tg-outbox");
    }
    if (t->c.mode == TG_MODE_WEBHOOK)
        t->h->log(t->ctx, RD_LOG_INFO, "webhook mode: POST %s on the admin server, api_base %s",
                  t->c.webhook_path, t->c.api_base);
    else
        t->h->log(t->ctx, RD_LOG_INFO, "long-poll mode (timeout %lld s), api_base %s",
                  (long long)t->c.poll_timeout_s, t->c.api_base);
    return RD_OK;
fail: /* stop() is not called after a failed start() */
    tg_stop(t);
    return st;
}

static void tg_quiesce(void *self) {
    tg *t = self;
    atomic_store(&t->quiescing, 1);
    tg_wake(t);
}

static void tg_stop(void *self) {
    tg *t = self;
    atomic_store(&t->quiescing, 1);
    atomic_store(&t->closing, 1);
    tg_wake(t);
    while (atomic_load(&t->hooks_active) > 0)
        tg_sleep(t, 1, NULL);
    tg_async_stop(t); /* the replies in flight end before stop() returns */
    if (t->main_running) pthread_join(t->main_th, NULL);
    if (t->typing_running) pthread_join(t->typing_th, NULL);
    if (t->ob_running) pthread_join(t->ob_th, NULL);
    if (t->fetch_running) pthread_join(t->fetch_th, NULL);
    t->main_running = t->typing_running = t->ob_running = t->fetch_running = 0;
    tg_buttons_stop(t);
    if (atomic_load(&t->started)) tg_intake_stop(t);
    atomic_store(&t->started, 0);
}

static void tg_ack(void *self, int64_t watermark) {
    tg *t = self;
    long long cur = atomic_load(&t->acked);
    while (watermark > cur && !atomic_compare_exchange_weak(&t->acked, &cur, watermark)) {
    }
    /* No wake-up: the watermark rides on the next journal write, or the
     * long poll's 100 ms tick (the back-pressure nap's, at most as long)
     * stores it. Senders short of marks wake the intake themselves. */
}

static void tg_destroy(void *self) {
    tg *t = self;
    if (!t) return;
    tg_intake_free(t);
    tg_send_free(t);
    tg_media_free(t);
    tg_buttons_free(t);
    tg_async_free(t);
    tg_cmds_free(t);
    tg_mig_free(t);
    tg_outbox_free(t);
    tg_api_cleanup(t);
    tg_throttle_free(t->thr);
    tg_map_free(t->chats, free);
    tg_map_free(t->typing, free);
    tg_map_free(t->recent, NULL);
    free(t->recent_ring);
    tg_metrics_free(t);
    free(t->c.token);
    free(t->c.api_base);
    free(t->c.ca_file);
    free(t->c.allowed_updates_json);
    free(t->c.webhook_path);
    free(t->c.webhook_url);
    free(t->c.secret_token);
    free(t->c.edits_notice);
    free(t->url_prefix);
    pthread_mutex_destroy(&t->wake_mu);
    easy_pool_destroy(&t->pool);
    curl_share_locked_free(&t->share); /* after every handle that joined it */
    pthread_mutex_destroy(&t->in_mu);
    pthread_mutex_destroy(&t->out_mu);
    pthread_mutex_destroy(&t->typ_mu);
    pthread_mutex_destroy(&t->series_mu);
    pthread_mutex_destroy(&t->rep_mu);
    pthread_mutex_destroy(&t->mig_mu);
    pthread_mutex_destroy(&t->ob_mu);
    pthread_cond_destroy(&t->ob_cv);
    pthread_cond_destroy(&t->wake_cv);
    pthread_cond_destroy(&t->typ_cv);
    pthread_cond_destroy(&t->in_cv);
    pthread_cond_destroy(&t->rep_cv);
    free(t);
}

static const rd_ops ops = {
    .size = sizeof ops,
    .create = tg_create,
    .start = tg_start,
    .quiesce = tg_quiesce,
    .stop = tg_stop,
    .destroy = tg_destroy,
    .send = tg_send,
    .progress = tg_progress,
    .activity = tg_activity,
    .ack = tg_ack,
};

RD_PLUGIN_DEFINE(.kind = RD_KIND_TRANSPORT, .name = "telegram", .version = "1.0.0",
                 .summary = "Telegram Bot API: long polling or webhook, journaled intake, paced "
                            "replies",
                 .options = opts, .ops = &ops, .flags = RD_PF_NOWAIT_SEND | RD_PF_ORDERED_SEND);
