/* Fuzz target: Bot API responses and updates as the telegram transport
 * reads them (envelope, getUpdates batches, single webhook updates,
 * addressing in groups). Invariants are checked, not just crashes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <routerd/plugin.h>

#include "telegram_attach.h"
#include "telegram_parse.h"

static void check_route(const tg_update *u) {
    static const tg_route_cfg cfgs[] = {
        {.bot_username = "routerd_bot", .bot_id = 42, .edited_messages = 1},
        {.bot_username = "routerd_bot", .bot_id = 42, .group_all = 1, .channel_posts = 1},
        {.bot_username = NULL, .bot_id = 0, .edited_messages = 1},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        tg_routed r;
        const char *why = tg_route(u, &cfgs[i], &r);
        if (why) continue;
        /* Routed text is never longer than the input, and empty only for a
         * file without caption. */
        if (!r.text || (r.len == 0 && !u->media) || r.len > u->text_len || strlen(r.text) != r.len)
            __builtin_trap();
        free(r.text);
    }
}

/* A file's numbers are in range and its strings safe to pass on. */
static void check_media(const tg_media *m) {
    if (!m) return;
    if (m->file_size < 0 || m->file_size > TG_FILE_SIZE_MAX || m->width < 0 || m->width > 100000 ||
        m->height < 0 || m->height > 100000 || m->duration < 0)
        __builtin_trap();
    if (m->kind != TG_MK_UNSUPPORTED &&
        (!tg_mime_ok(m->mime) || !m->name[0] || strchr(m->name, '/') || m->name[0] == '.'))
        __builtin_trap();
    if (m->kind != TG_MK_UNSUPPORTED && m->kind != TG_MK_PHOTO && !m->invalid &&
        !tg_chars_ok(m->file_id, 1, TG_FILE_ID_MAX - 1, "_-"))
        __builtin_trap();
    for (size_t i = 0; i < m->nphoto; i++)
        if (!tg_chars_ok(m->photo[i].file_id, 1, TG_FILE_ID_MAX - 1, "_-") ||
            m->photo[i].file_size < 0 || m->photo[i].file_size > TG_FILE_SIZE_MAX)
            __builtin_trap();
    int best = tg_media_pick_photo(m, 1000);
    if (best >= (int)m->nphoto || (best >= 0 && m->photo[best].file_size > 1000)) __builtin_trap();
}

/* No id that reaches the transport's arithmetic is out of range. */
static void check_bounds(const tg_update *u) {
    if (!tg_valid_update_id(u->update_id)) __builtin_trap();
    if (u->chat_id ? !tg_valid_chat_id(u->chat_id) : !u->invalid && u->kind != TG_UPD_OTHER)
        __builtin_trap();
    if (u->user_id && !tg_valid_chat_id(u->user_id)) __builtin_trap();
    if (u->message_id && !tg_valid_pos_id(u->message_id)) __builtin_trap();
    if (u->thread_id && !tg_valid_pos_id(u->thread_id)) __builtin_trap();
    if (u->reply_to_user_id && !tg_valid_chat_id(u->reply_to_user_id)) __builtin_trap();
    for (int i = 0; i < 2; i++) {
        int64_t m = i ? u->migrate_from : u->migrate_to;
        if (m && (!tg_valid_chat_id(m) || m >= 0 || m == u->chat_id || u->chat_id >= 0))
            __builtin_trap();
    }
    /* The intake's +1s stay in range. */
    int64_t next;
    if (!tg_add_ok(u->update_id, 1, &next) || next > TG_SEQ_MAX) __builtin_trap();
}

static void same_ids(const tg_update *a, const tg_update *b) {
    if (a->update_id != b->update_id || a->chat_id != b->chat_id || a->user_id != b->user_id ||
        a->message_id != b->message_id || a->thread_id != b->thread_id ||
        a->migrate_to != b->migrate_to || a->migrate_from != b->migrate_from ||
        a->kind != b->kind || a->invalid != b->invalid)
        __builtin_trap();
}

static void one_update(const cJSON *u) {
    tg_update up;
    if (tg_update_parse(u, &up) != 0) return;
    if (up.text && strlen(up.text) != up.text_len) __builtin_trap();
    check_bounds(&up);
    check_media(up.media);
    check_route(&up);
    /* The journal keeps updates re-printed: every id reads back the same. */
    char *again = cJSON_PrintUnformatted(u);
    cJSON *u2 = again ? tg_json_parse(again, strlen(again)) : NULL;
    tg_update up2;
    if (again && (!u2 || tg_update_parse(u2, &up2) != 0)) __builtin_trap();
    if (u2) {
        same_ids(&up, &up2);
        tg_update_free(&up2);
    }
    cJSON_Delete(u2);
    free(again);
    tg_update_free(&up);
}

static int known_label(const char *l) {
    static const char *const set[] = {"400", "401", "403", "404", "409", "413", "420",  "429",
                                      "500", "502", "503", "504", "4xx", "5xx", "other"};
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
        if (!strcmp(l, set[i])) return 1;
    return 0;
}

static void check_resp(const tg_resp *r) {
    if (r->retry_after < 0 || r->retry_after > TG_RETRY_AFTER_MAX_S) __builtin_trap();
    if (r->error_code && (r->error_code < 100 || r->error_code > 599)) __builtin_trap();
    if (r->migrate_to && (!tg_valid_chat_id(r->migrate_to) || r->migrate_to >= 0)) __builtin_trap();
    int clamped;
    int64_t ms = tg_secs_to_ms(r->retry_after_raw, 3600, &clamped);
    if (ms < 0 || ms > 3600 * 1000 || (ms / 1000 != r->retry_after_raw) != clamped)
        __builtin_trap();
    if (!known_label(tg_code_label(r->error_code)) ||
        !known_label(tg_code_label(r->retry_after_raw)))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    tg_resp r;
    if (tg_resp_parse(s, size, &r) == 0) {
        check_resp(&r);
        if (cJSON_IsArray(r.result)) {
            for (const cJSON *e = r.result->child; e; e = e->next)
                one_update(e);
            /* The journal keeps each update's own text when the spans line
             * up with the parsed array: each span must parse to the same
             * element (compared printed: cJSON_Compare() looks keys up,
             * so duplicate keys would fool it). */
            int total = cJSON_GetArraySize(r.result);
            size_t off[64], len[64];
            int n = total <= 64 ? tg_json_result_spans(s, size, off, len, total) : -1;
            if (n > total) __builtin_trap();
            if (n == total) {
                const cJSON *e = r.result->child;
                for (int i = 0; i < n; i++, e = e->next) {
                    if (off[i] + len[i] > size || len[i] < 2) __builtin_trap();
                    cJSON *x = tg_json_parse(s + off[i], len[i]);
                    char *a = x ? cJSON_PrintUnformatted(x) : NULL, *b = cJSON_PrintUnformatted(e);
                    if (!a || !b || strcmp(a, b)) __builtin_trap();
                    free(a);
                    free(b);
                    cJSON_Delete(x);
                }
            }
        }
        int64_t v;
        tg_json_i64(r.result, "message_id", &v);
        tg_resp_free(&r);
    }
    /* A webhook body is one update. */
    cJSON *o = tg_json_parse(s, size);
    if (o) {
        one_update(o);
        /* The journal stores updates re-printed: they must read back. Only
         * updates with a valid update_id are journaled (the rest are
         * ignored at intake); a fractional id may print as an integer. */
        char *again = cJSON_PrintUnformatted(o);
        int64_t a = 0, b = 0;
        if (again && tg_json_i64(o, "update_id", &a)) {
            cJSON *o2 = tg_json_parse(again, strlen(again));
            if (!o2) __builtin_trap();
            if (!tg_json_i64(o2, "update_id", &b) || a != b) __builtin_trap();
            cJSON_Delete(o2);
        }
        free(again);
        cJSON_Delete(o);
    }
    return 0;
}
