/* Fuzz target: Bot API responses and updates as the telegram transport
 * reads them (envelope, getUpdates batches, single webhook updates,
 * addressing in groups). Invariants are checked, not just crashes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <routerd/plugin.h>

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
        /* Routed text is never empty and never longer than the input. */
        if (!r.text || r.len == 0 || r.len > u->text_len || strlen(r.text) != r.len)
            __builtin_trap();
        free(r.text);
    }
}

static void one_update(const cJSON *u) {
    tg_update up;
    if (tg_update_parse(u, &up) != 0) return;
    if (up.text && strlen(up.text) != up.text_len) __builtin_trap();
    check_route(&up);
    tg_update_free(&up);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    tg_resp r;
    if (tg_resp_parse(s, size, &r) == 0) {
        if (cJSON_IsArray(r.result))
            for (const cJSON *e = r.result->child; e; e = e->next)
                one_update(e);
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
