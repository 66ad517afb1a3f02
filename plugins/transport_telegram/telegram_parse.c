/* Pure helpers of the telegram transport; see telegram_parse.h. */
#include "telegram_parse.h"
#include "telegram_attach.h"
#include "sbuf.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <routerd/plugin.h>

/* ------------------------------------------------------------------------ */
/* Integers                                                                  */

int tg_valid_update_id(int64_t v) {
    return v >= 0 && v <= TG_ID_MAX;
}

int tg_valid_chat_id(int64_t v) {
    return v != 0 && v >= -TG_ID_MAX && v <= TG_ID_MAX;
}

int tg_valid_pos_id(int64_t v) {
    return v > 0 && v <= TG_ID_MAX;
}

void tg_key19(char *buf, size_t n, char tag, int64_t v) {
    char k[22];
    uint64_t u = v < 0 ? 0 : (uint64_t)v;
    k[0] = tag;
    k[1] = '/';
    for (int i = 20; i >= 2; i--, u /= 10)
        k[i] = (char)('0' + u % 10);
    k[21] = 0;
    if (!n) return;
    size_t m = n - 1 < sizeof k - 1 ? n - 1 : sizeof k - 1;
    memcpy(buf, k, m);
    buf[m] = 0;
}

int64_t tg_secs_to_ms(int64_t s, int64_t max_s, int *clamped) {
    int64_t c = tg_clamp(s, 0, max_s > 0 ? max_s : 0), ms = 0;
    if (clamped) *clamped = c != s;
    if (!tg_mul_ok(c, 1000, &ms)) ms = INT64_MAX / 2; /* max_s absurd: still bounded */
    return ms;
}

const char *tg_code_label(int64_t code) {
    static const struct {
        int code;
        const char *label;
    } known[] = {{400, "400"}, {401, "401"}, {403, "403"}, {404, "404"},
                 {409, "409"}, {413, "413"}, {420, "420"}, {429, "429"},
                 {500, "500"}, {502, "502"}, {503, "503"}, {504, "504"}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (code == known[i].code) return known[i].label;
    if (code >= 400 && code <= 499) return "4xx";
    if (code >= 500 && code <= 599) return "5xx";
    return "other";
}

static const char *json_str(const cJSON *obj, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static int json_true(const cJSON *obj, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

/* Copies at most dstsz-1 bytes of a UTF-8 string, cutting at a character
 * boundary. */
static void copy_utf8(char *dst, size_t dstsz, const char *src) {
    size_t n = src ? strlen(src) : 0;
    if (n >= dstsz) {
        n = dstsz - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    if (n) memcpy(dst, src, n);
    dst[n] = 0;
}

int tg_resp_parse(const char *body, size_t len, tg_resp *r) {
    memset(r, 0, sizeof *r);
    cJSON *root = tg_json_parse(body, len);
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(root, "ok");
    if (!cJSON_IsObject(root) || !cJSON_IsBool(ok)) {
        cJSON_Delete(root);
        return -1;
    }
    r->root = root;
    r->ok = cJSON_IsTrue(ok);
    r->result = cJSON_GetObjectItemCaseSensitive(root, "result");
    /* An error code is an HTTP status; anything else reads as absent. */
    if (tg_json_i64(root, "error_code", &r->error_code) &&
        (r->error_code < 100 || r->error_code > 599))
        r->error_code = 0;
    copy_utf8(r->description, sizeof r->description, json_str(root, "description"));
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    if (cJSON_IsObject(p)) {
        if (tg_json_i64(p, "retry_after", &r->retry_after_raw))
            r->retry_after = tg_clamp(r->retry_after_raw, 0, TG_RETRY_AFTER_MAX_S);
        /* Groups become supergroups, whose ids are negative. */
        if (tg_json_i64(p, "migrate_to_chat_id", &r->migrate_to) &&
            !(tg_valid_chat_id(r->migrate_to) && r->migrate_to < 0))
            r->migrate_to = 0;
    }
    return 0;
}

void tg_resp_free(tg_resp *r) {
    cJSON_Delete(r->root);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------------ */
/* Updates                                                                   */

static const char *const kind_names[TG_UPD__COUNT] = {
    "message", "edited_message", "channel_post", "edited_channel_post", "callback_query", "other"};

const char *tg_kind_name(tg_kind k) {
    return k >= 0 && k < TG_UPD__COUNT ? kind_names[k] : "other";
}

const char *tg_chat_type_name(tg_chat_type t) {
    switch (t) {
    case TG_CHAT_PRIVATE:
        return "private";
    case TG_CHAT_GROUP:
        return "group";
    case TG_CHAT_SUPERGROUP:
        return "supergroup";
    case TG_CHAT_CHANNEL:
        return "channel";
    default:
        return "unknown";
    }
}

static tg_chat_type chat_type_of(const char *s) {
    if (!s) return TG_CHAT_UNKNOWN;
    if (!strcmp(s, "private")) return TG_CHAT_PRIVATE;
    if (!strcmp(s, "group")) return TG_CHAT_GROUP;
    if (!strcmp(s, "supergroup")) return TG_CHAT_SUPERGROUP;
    if (!strcmp(s, "channel")) return TG_CHAT_CHANNEL;
    return TG_CHAT_UNKNOWN;
}

static void parse_message(const cJSON *m, tg_update *out) {
    const cJSON *chat = cJSON_GetObjectItemCaseSensitive(m, "chat");
    if (!cJSON_IsObject(m) || !tg_json_i64(chat, "id", &out->chat_id) ||
        !tg_valid_chat_id(out->chat_id)) {
        out->invalid = 1;
        out->chat_id = 0;
        return;
    }
    out->chat_type = chat_type_of(json_str(chat, "type"));
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(m, "from");
    if (!tg_json_i64(from, "id", &out->user_id))
        tg_json_i64(cJSON_GetObjectItemCaseSensitive(m, "sender_chat"), "id", &out->user_id);
    if (cJSON_IsObject(from)) {
        out->from_is_bot = json_true(from, "is_bot");
        copy_utf8(out->username, sizeof out->username, json_str(from, "username"));
        copy_utf8(out->first_name, sizeof out->first_name, json_str(from, "first_name"));
        copy_utf8(out->language, sizeof out->language, json_str(from, "language_code"));
    }
    tg_json_i64(m, "message_id", &out->message_id);
    /* Thread ids of plain replies are not topics; copying them gives
     * "message thread not found". */
    if (json_true(m, "is_topic_message")) tg_json_i64(m, "message_thread_id", &out->thread_id);
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(m, "reply_to_message");
    tg_json_i64(cJSON_GetObjectItemCaseSensitive(rt, "from"), "id", &out->reply_to_user_id);
    tg_json_i64(rt, "message_id", &out->reply_to_id);
    /* Out of range reads as none. */
    if (!tg_valid_chat_id(out->user_id)) out->user_id = 0;
    if (!tg_valid_pos_id(out->message_id)) out->message_id = 0;
    if (!tg_valid_pos_id(out->thread_id)) out->thread_id = 0;
    if (!tg_valid_chat_id(out->reply_to_user_id)) out->reply_to_user_id = 0;
    if (!tg_valid_pos_id(out->reply_to_id)) out->reply_to_id = 0;
    /* Group -> supergroup service messages: both ids are groups (< 0) and
     * differ. */
    int64_t mig = 0;
    if (tg_json_i64(m, "migrate_to_chat_id", &mig) && tg_valid_chat_id(mig) && mig < 0 &&
        mig != out->chat_id && out->chat_id < 0)
        out->migrate_to = mig;
    mig = 0;
    if (tg_json_i64(m, "migrate_from_chat_id", &mig) && tg_valid_chat_id(mig) && mig < 0 &&
        mig != out->chat_id && out->chat_id < 0)
        out->migrate_from = mig;
    out->media = tg_media_parse(m);
    const char *text = json_str(m, "text");
    if (!text) {
        text = json_str(m, "caption");
        out->is_caption = text != NULL;
    }
    if (text) {
        out->text_len = strlen(text);
        out->text = malloc(out->text_len + 1);
        if (out->text)
            memcpy(out->text, text, out->text_len + 1);
        else
            out->text_len = 0;
    }
}

/* Copies s when it fits dst whole (ids and data are not cut). */
static void copy_whole(char *dst, size_t dstsz, const char *s) {
    if (s && strlen(s) < dstsz) strcpy(dst, s);
}

/* A button press: who pressed, and the message (chat, id) holding the
 * button. Its text is not the user's: none is kept. */
static void parse_callback(const cJSON *cq, tg_update *out) {
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(cq, "message");
    parse_message(msg, out);
    free(out->text);
    out->text = NULL;
    out->text_len = 0;
    out->is_caption = 0;
    out->migrate_to = out->migrate_from = 0;
    out->reply_to_user_id = 0;
    out->reply_to_id = out->message_id; /* the press answers the message with the button */
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(cq, "from");
    int64_t uid = 0;
    out->user_id = tg_json_i64(from, "id", &uid) && tg_valid_chat_id(uid) ? uid : 0;
    out->from_is_bot = json_true(from, "is_bot");
    out->username[0] = out->first_name[0] = out->language[0] = 0;
    if (cJSON_IsObject(from)) {
        copy_utf8(out->username, sizeof out->username, json_str(from, "username"));
        copy_utf8(out->first_name, sizeof out->first_name, json_str(from, "first_name"));
        copy_utf8(out->language, sizeof out->language, json_str(from, "language_code"));
    }
    copy_whole(out->cb_id, sizeof out->cb_id, json_str(cq, "id"));
    const char *data = json_str(cq, "data");
    if (data && strlen(data) <= 64) copy_whole(out->cb_data, sizeof out->cb_data, data);
}

int tg_update_parse(const cJSON *u, tg_update *out) {
    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(u) || !tg_json_i64(u, "update_id", &out->update_id) ||
        !tg_valid_update_id(out->update_id)) {
        out->update_id = 0;
        return -1;
    }
    out->kind = TG_UPD_OTHER;
    const cJSON *payload = NULL;
    for (const cJSON *c = u->child; c; c = c->next) {
        if (!c->string || !strcmp(c->string, "update_id")) continue;
        payload = c;
        break;
    }
    if (!payload) {
        strcpy(out->payload, "empty");
        return 0;
    }
    copy_utf8(out->payload, sizeof out->payload, payload->string);
    for (int k = 0; k < TG_UPD_OTHER; k++) {
        if (!strcmp(payload->string, kind_names[k])) {
            out->kind = (tg_kind)k;
            if (k == TG_UPD_CALLBACK_QUERY)
                parse_callback(payload, out);
            else
                parse_message(payload, out);
            break;
        }
    }
    return 0;
}

void tg_update_free(tg_update *u) {
    free(u->media);
    u->media = NULL;
    free(u->text);
    u->text = NULL;
    u->text_len = 0;
}

/* ------------------------------------------------------------------------ */
/* Addressing                                                                */

static int is_word(unsigned char c) {
    return isalnum(c) || c == '_';
}

/* Length of "@username" at t[i] when it is a whole-word mention, else 0. */
static size_t mention_at(const char *t, size_t len, size_t i, const char *user, size_t ulen) {
    if (t[i] != '@' || i + 1 + ulen > len) return 0;
    if (i > 0 && is_word((unsigned char)t[i - 1])) return 0;
    if (strncasecmp(t + i + 1, user, ulen) != 0) return 0;
    if (i + 1 + ulen < len && is_word((unsigned char)t[i + 1 + ulen])) return 0;
    return 1 + ulen;
}

int tg_mentions(const char *text, size_t len, const char *username) {
    size_t ulen = username ? strlen(username) : 0;
    if (!text || !ulen) return 0;
    for (size_t i = 0; i < len; i++)
        if (mention_at(text, len, i, username, ulen)) return 1;
    return 0;
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Removes whole-word @user mentions and tidies the spacing around them;
 * writes into out (capacity >= len + 1) and returns the new length. */
static size_t strip_mentions(const char *t, size_t len, const char *user, char *out) {
    size_t ulen = user ? strlen(user) : 0, o = 0;
    for (size_t i = 0; i < len;) {
        size_t m = ulen ? mention_at(t, len, i, user, ulen) : 0;
        if (!m) {
            out[o++] = t[i++];
            continue;
        }
        size_t j = i + m;
        size_t lead = 0;
        while (lead < o && is_space(out[lead]))
            lead++;
        if (lead == o) {
            /* "@bot, question" / "@bot: question" -> "question" */
            if (j < len && (t[j] == ',' || t[j] == ':')) j++;
            while (j < len && is_space(t[j]))
                j++;
        } else if (o > 0 && out[o - 1] == ' ') {
            if (j < len && t[j] == ' ')
                j++;
            else if (j < len && strchr(",.!?:;", t[j]))
                o--;
        }
        i = j;
    }
    size_t b = 0;
    while (b < o && is_space(out[b]))
        b++;
    while (o > b && is_space(out[o - 1]))
        o--;
    memmove(out, out + b, o - b);
    return o - b;
}

/* Parses a leading "/command[@target]". Returns 0 when text is no command;
 * otherwise sets *at (offset of '@' or 0) and *tlen (target length). */
static int parse_command(const char *t, size_t len, size_t *at, size_t *tlen) {
    *at = 0;
    *tlen = 0;
    if (len < 2 || t[0] != '/' || !is_word((unsigned char)t[1])) return 0;
    size_t i = 1;
    while (i < len && is_word((unsigned char)t[i]))
        i++;
    if (i < len && t[i] == '@') {
        size_t j = i + 1;
        while (j < len && is_word((unsigned char)t[j]))
            j++;
        if (j > i + 1) {
            *at = i;
            *tlen = j - i - 1;
        }
    }
    return 1;
}

/* Whether the command at the start of t is one registered for this bot
 * (any, when the list is not known). */
static int known_command(const char *t, size_t len, const tg_route_cfg *c) {
    if (!c->commands) return 1;
    size_t n = 1;
    while (n < len && is_word((unsigned char)t[n]))
        n++;
    for (const char *const *k = c->commands; *k; k++)
        if (strlen(*k) == n - 1 && !strncasecmp(*k, t + 1, n - 1)) return 1;
    return 0;
}

const char *tg_route(const tg_update *u, const tg_route_cfg *c, tg_routed *out) {
    memset(out, 0, sizeof *out);
    if (u->kind == TG_UPD_OTHER || u->kind == TG_UPD_CALLBACK_QUERY) return "unsupported";
    if (u->invalid) return "invalid";
    if ((u->kind == TG_UPD_CHANNEL_POST || u->kind == TG_UPD_EDITED_CHANNEL_POST) &&
        !c->channel_posts)
        return "channel_posts_off";
    int edited = u->kind == TG_UPD_EDITED_MESSAGE || u->kind == TG_UPD_EDITED_CHANNEL_POST;
    if (edited && !c->edited_messages) return "edits_off";
    if (c->bot_id && u->user_id == c->bot_id) return "own_message";
    /* A file without caption still goes on (telegram_media.c takes it). */
    if ((!u->text || tg_is_blank(u->text, u->text_len)) && !u->media) return "no_text";

    const char *t = u->text ? u->text : "";
    size_t len = u->text ? u->text_len : 0;
    int group = u->chat_type != TG_CHAT_PRIVATE;
    const char *bot = c->bot_username && *c->bot_username ? c->bot_username : NULL;
    size_t blen = bot ? strlen(bot) : 0;

    size_t at, tlen;
    int command = parse_command(t, len, &at, &tlen);
    int for_us = 0;
    if (command && at) {
        if (!bot || tlen != blen || strncasecmp(t + at + 1, bot, blen) != 0)
            return "other_bot_command";
        for_us = 1;
    }
    int addressed = !group || c->group_all || (command && (for_us || known_command(t, len, c))) ||
                    (c->bot_id && u->reply_to_user_id == c->bot_id) ||
                    (bot && tg_mentions(t, len, bot));
    if (!addressed) return "not_addressed";

    char *buf = malloc(len + 1);
    if (!buf) return "no_memory";
    size_t n;
    if (for_us) {
        /* "/cmd@bot args" -> "/cmd args" */
        memcpy(buf, t, at);
        memcpy(buf + at, t + at + 1 + tlen, len - at - 1 - tlen);
        n = len - 1 - tlen;
    } else {
        memcpy(buf, t, len);
        n = len;
    }
    if (group && bot) {
        char *tmp = malloc(n + 1);
        if (!tmp) {
            free(buf);
            return "no_memory";
        }
        size_t m = strip_mentions(buf, n, bot, tmp);
        if (m > 0) {
            memcpy(buf, tmp, m);
            n = m;
        } /* a bare "@bot" keeps its text rather than becoming empty */
        free(tmp);
    }
    buf[n] = 0;
    out->text = buf;
    out->len = n;
    out->flags =
        (group ? RD_MSG_GROUP : 0) | (edited ? RD_MSG_EDITED : 0) | (command ? RD_MSG_COMMAND : 0);
    return NULL;
}

/* The meta names the Telegram update the core's id stands for. */
char *tg_inbound_meta(const tg_update *u, int64_t update_id) {
    /* One per message: written as text, without a JSON tree. */
    sbuf b = {0};
    sbuf_puts(&b, "{\"telegram\":{\"update_id\":");
    sbuf_i64(&b, update_id);
    sbuf_puts(&b, ",\"kind\":");
    sbuf_json_str(&b, tg_kind_name(u->kind));
    sbuf_json_field(&b, ",\"chat_type\":", tg_chat_type_name(u->chat_type));
    if (u->username[0]) sbuf_json_field(&b, ",\"username\":", u->username);
    if (u->first_name[0]) sbuf_json_field(&b, ",\"first_name\":", u->first_name);
    if (u->language[0]) sbuf_json_field(&b, ",\"language_code\":", u->language);
    if (u->is_caption) sbuf_puts(&b, ",\"caption\":true");
    sbuf_puts(&b, "}}");
    return sbuf_take(&b, NULL);
}

/* ------------------------------------------------------------------------ */
/* UTF-8 / UTF-16                                                            */

/* Decodes the code point at s[i]: returns its byte length and sets *cp, or
 * returns 1 with *cp = -1 for an invalid byte. */
static size_t u8_next(const unsigned char *s, size_t len, size_t i, int32_t *cp) {
    unsigned char c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    int32_t v;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *cp = -1;
        return 1;
    }
    if (i + n > len) {
        *cp = -1;
        return 1;
    }
    for (size_t k = 1; k < n; k++) {
        unsigned char d = s[i + k];
        if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF)) {
            *cp = -1;
            return 1;
        }
        v = (v << 6) | (d & 0x3F);
    }
    *cp = v;
    return n;
}

static size_t cp_units(int32_t cp) {
    return cp >= 0x10000 ? 2 : 1;
}

char *tg_utf8_sanitize(const char *s, size_t len, size_t *out_len) {
    const unsigned char *u = (const unsigned char *)s;
    /* Each invalid byte grows to 3 bytes at most. */
    char *out = malloc(len * 3 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        int32_t cp;
        size_t n = u8_next(u, len, i, &cp);
        if (cp <= 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        } else {
            memcpy(out + o, s + i, n);
            o += n;
        }
        i += n;
    }
    out[o] = 0;
    if (out_len) *out_len = o;
    return out;
}

size_t tg_utf16_len(const char *s, size_t len) {
    size_t units = 0;
    for (size_t i = 0; i < len;) {
        int32_t cp;
        i += u8_next((const unsigned char *)s, len, i, &cp);
        units += cp_units(cp);
    }
    return units;
}

int tg_is_blank(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (!is_space(s[i])) return 0;
    return 1;
}

/* Code points that attach to the one before (no grapheme break before
 * them): combining marks, variation selectors, ZWJ, emoji modifiers, tags. */
static int is_extend(int32_t cp) {
    return (cp >= 0x0300 && cp <= 0x036F) || (cp >= 0x1AB0 && cp <= 0x1AFF) ||
           (cp >= 0x1DC0 && cp <= 0x1DFF) || (cp >= 0x20D0 && cp <= 0x20FF) ||
           (cp >= 0xFE00 && cp <= 0xFE0F) || (cp >= 0xFE20 && cp <= 0xFE2F) || cp == 0x200D ||
           (cp >= 0x1F3FB && cp <= 0x1F3FF) || (cp >= 0xE0020 && cp <= 0xE007F) ||
           (cp >= 0xE0100 && cp <= 0xE01EF);
}

static int is_regional(int32_t cp) {
    return cp >= 0x1F1E6 && cp <= 0x1F1FF;
}

/* Start of the code point that ends just before byte p (p > 0). */
static size_t u8_prev(const unsigned char *s, size_t len, size_t p, int32_t *cp) {
    size_t b = p - 1, k = 0;
    while (b > 0 && k < 3 && (s[b] & 0xC0) == 0x80) {
        b--;
        k++;
    }
    size_t n = u8_next(s, len, b, cp);
    if (b + n != p) {
        *cp = -1;
        return p - 1;
    }
    return b;
}

/* Whether cutting between the code points around byte p keeps grapheme
 * clusters whole (approximation of UAX #29 for emoji and marks). */
static int cluster_boundary(const unsigned char *s, size_t len, size_t start, size_t p) {
    if (p <= start || p >= len) return 1;
    int32_t a, b;
    size_t pa = u8_prev(s, len, p, &a);
    u8_next(s, len, p, &b);
    if (a == '\r' && b == '\n') return 0;
    if (is_extend(b) || a == 0x200D) return 0;
    if (is_regional(a) && is_regional(b)) {
        /* Flags are pairs: break only after an even run of indicators. */
        size_t run = 1;
        while (pa > start) {
            int32_t x;
            size_t q = u8_prev(s, len, pa, &x);
            if (!is_regional(x)) break;
            run++;
            pa = q;
        }
        return run % 2 == 0;
    }
    return 1;
}

size_t tg_split(const char *text, size_t len, size_t max_units, tg_chunk **out) {
    *out = NULL;
    if (!text || len == 0) return 0;
    if (max_units < 2) max_units = 2;
    const unsigned char *s = (const unsigned char *)text;
    size_t cap = 4, n = 0;
    tg_chunk *v = malloc(cap * sizeof *v);
    if (!v) return 0;
    size_t start = 0;
    while (start < len) {
        size_t i = start, units = 0;
        size_t para = 0, line = 0, sent = 0, space = 0;
        size_t min_units = max_units / 2;
        int32_t prev = -1;
        while (i < len) {
            int32_t cp;
            size_t nb = u8_next(s, len, i, &cp);
            size_t u = cp_units(cp);
            if (units + u > max_units) break;
            units += u;
            i += nb;
            if (units >= min_units) {
                if (cp == '\n') {
                    line = i;
                    if (prev == '\n') para = i;
                }
                if ((cp == ' ' && (prev == '.' || prev == '!' || prev == '?')) || cp == 0x3002 ||
                    cp == 0xFF01 || cp == 0xFF1F || cp == 0xFF0E)
                    sent = i;
                if (cp == ' ' || cp == '\t' || cp == 0x3000) space = i;
            }
            prev = cp;
        }
        size_t end;
        if (i >= len) {
            end = len;
        } else if (para) {
            end = para;
        } else if (line) {
            end = line;
        } else if (sent) {
            end = sent;
        } else if (space) {
            end = space;
        } else {
            end = i;
            for (int k = 0; k < 32 && end > start && !cluster_boundary(s, len, start, end); k++) {
                int32_t cp;
                end = u8_prev(s, len, end, &cp);
            }
            if (end <= start) end = i;
        }
        if (end <= start) {
            /* One code point wider than the limit: take it anyway. */
            int32_t cp;
            end = start + u8_next(s, len, start, &cp);
        }
        if (n == cap) {
            cap *= 2;
            tg_chunk *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                return 0;
            }
            v = nv;
        }
        v[n].off = start;
        v[n].len = end - start;
        n++;
        start = end;
    }
    *out = v;
    return n;
}

/* ------------------------------------------------------------------------ */
/* Escaping                                                                  */

char *tg_escape_markdown_v2(const char *s, size_t len, size_t *out_len) {
    char *out = malloc(len * 2 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (strchr("_*[]()~`>#+-=|{}.!\\", s[i]) && s[i]) out[o++] = '\\';
        out[o++] = s[i];
    }
    out[o] = 0;
    if (out_len) *out_len = o;
    return out;
}

char *tg_escape_html(const char *s, size_t len, size_t *out_len) {
    char *out = malloc(len * 6 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        default:
            out[o++] = s[i];
            continue;
        }
        size_t rl = strlen(rep);
        memcpy(out + o, rep, rl);
        o += rl;
    }
    out[o] = 0;
    if (out_len) *out_len = o;
    return out;
}

int tg_secret_equal(const char *a, const char *b) {
    /* Hash first so neither the content nor the length leaks by timing. */
    unsigned char ha[SHA256_DIGEST_LENGTH], hb[SHA256_DIGEST_LENGTH];
    if (!a || !b) return 0;
    SHA256((const unsigned char *)a, strlen(a), ha);
    SHA256((const unsigned char *)b, strlen(b), hb);
    return CRYPTO_memcmp(ha, hb, sizeof ha) == 0;
}
