/*
 * Buttons: the choices a reply offers become an inline keyboard, and a
 * press (callback_query) comes back to the router as a message whose text
 * is the chosen value (RD_MSG_CHOICE).
 *
 * Callback data cannot be trusted: any client can send any bytes for a
 * button. Each button carries "b1.<expiry>.<ref>.<index>.<mac>", where mac
 * is HMAC-SHA256 (cut to 128 bits) over the chat the keyboard was sent to,
 * the expiry, the ref and the index, under a random key kept in the state
 * store (so it survives restarts and replicas share it; it is not derived
 * from the bot token). The choice texts stay in the store under
 * b/<expiry>/<ref>, bound to the chat and the message showing them, and
 * are deleted once expired, so the data only names them.
 *
 * The same file runs the calls made beside the intake, on a thread of its
 * own so that neither the intake nor a reply waits for them:
 * answerCallbackQuery, removing a pressed keyboard, the edits notice and
 * setMyCommands at start.
 */
#include "telegram.h"
#include "telegram_format.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_ROW "buttons_key"
#define REF_LEN 8       /* base64url characters of 6 random bytes */
#define MAC_LEN 22      /* base64url characters of 16 MAC bytes */
#define CHOICE_MAX 4096 /* bytes of one stored choice */
#define SIDE_MAX 1024   /* side calls waiting; past it new ones are dropped */

typedef struct side_call {
    char method[32];
    char *body;
    int64_t chat;
    struct side_call *next;
} side_call;

struct tg_btn {
    unsigned char key[32];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    side_call *head, *tail;
    size_t n;
    pthread_t th;
    int running;
    atomic_llong swept_ms; /* replies on several threads sweep */
    atomic_llong refused;
};

/* ------------------------------------------------------------------------ */
/* Signing                                                                   */

static void b64url(const unsigned char *in, size_t n, char *out, size_t outlen) {
    unsigned char tmp[64];
    int l = EVP_EncodeBlock(tmp, in, (int)n);
    size_t o = 0;
    for (int i = 0; i < l && o + 1 < outlen && tmp[i] != '='; i++)
        out[o++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
    out[o] = 0;
}

static void mac_of(const tg_btn *b, int64_t chat, int64_t exp, const char *ref, unsigned idx,
                   char *out) {
    char msg[128];
    int ml = snprintf(msg, sizeof msg, "b1|%" PRId64 "|%" PRId64 "|%s|%u", chat, exp, ref, idx);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdl = 0;
    HMAC(EVP_sha256(), b->key, sizeof b->key, (const unsigned char *)msg, (size_t)ml, md, &mdl);
    b64url(md, 16, out, MAC_LEN + 1);
}

static void row_key(char *buf, size_t n, int64_t exp, const char *ref) {
    snprintf(buf, n, "b/%010" PRId64 "/%s", exp, ref);
}

static int64_t wall_s(tg *t) {
    return t->h->wall_ns() / 1000000000;
}

/* Loads the signing key, or makes one that every replica then reads. */
void tg_buttons_load_key(tg *t) {
    tg_btn *b = t->btn;
    char *v = NULL;
    size_t vl = 0;
    for (int round = 0; round < 2; round++) {
        if (t->h->kv_get(t->ctx, KEY_ROW, &v, &vl) == RD_OK && v && vl == 2 * sizeof b->key) {
            int ok = 1;
            for (size_t i = 0; i < sizeof b->key && ok; i++) {
                unsigned x;
                ok = sscanf(v + 2 * i, "%2x", &x) == 1;
                b->key[i] = (unsigned char)x;
            }
            free(v);
            if (ok) return;
        } else {
            free(v);
        }
        v = NULL;
        char hex[2 * sizeof b->key + 1];
        unsigned char k[sizeof b->key];
        if (RAND_bytes(k, sizeof k) != 1) break;
        for (size_t i = 0; i < sizeof k; i++)
            snprintf(hex + 2 * i, 3, "%02x", k[i]);
        /* Two replicas starting at once: the first key stored wins. */
        rd_status st = RD_HAS(t->h, kv_add) && t->h->kv_add
                           ? t->h->kv_add(t->ctx, KEY_ROW, hex, strlen(hex))
                           : t->h->kv_put(t->ctx, KEY_ROW, hex, strlen(hex));
        OPENSSL_cleanse(hex, sizeof hex);
        if (st == RD_OK) {
            memcpy(b->key, k, sizeof k);
            OPENSSL_cleanse(k, sizeof k);
            return;
        }
        OPENSSL_cleanse(k, sizeof k);
        if (st != RD_E_DUPLICATE) break;
    }
    /* The store failed: buttons still work until the next restart. */
    t->h->log(t->ctx, RD_LOG_WARN,
              "cannot keep the button signing key in the state store; buttons of earlier runs "
              "and of other replicas will be refused");
    RAND_bytes(b->key, sizeof b->key);
}

/* ------------------------------------------------------------------------ */
/* Side calls                                                                */

static void side_queue(tg *t, const char *method, char *body, int64_t chat) {
    tg_btn *b = t->btn;
    side_call *c = body ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        free(body);
        return;
    }
    snprintf(c->method, sizeof c->method, "%s", method);
    c->body = body;
    c->chat = chat;
    pthread_mutex_lock(&b->mu);
    if (b->n >= SIDE_MAX) {
        pthread_mutex_unlock(&b->mu);
        t->h->log(t->ctx, RD_LOG_WARN, "%s dropped: %d calls are already waiting", method,
                  SIDE_MAX);
        free(c->body);
        free(c);
        return;
    }
    if (b->tail)
        b->tail->next = c;
    else
        b->head = c;
    b->tail = c;
    b->n++;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void set_commands(tg *t) {
    char *body = tg_cmds_body(t);
    if (!body) return;
    tg_call call;
    tg_api_call(t, "setMyCommands", body, 0, tg_now(t) + t->c.request_timeout_ms, &call);
    free(body);
    if (call.cls == TG_C_OK)
        t->h->log(t->ctx, RD_LOG_INFO, "bot commands registered (setMyCommands)");
    else if (call.cls != TG_C_ABORTED)
        t->h->log(t->ctx, RD_LOG_WARN,
                  "setMyCommands: %s; the command menu stays as it was (groups still address "
                  "the configured commands)",
                  call.detail);
    tg_call_free(&call);
}

static void *side_loop(void *arg) {
    tg *t = arg;
    tg_btn *b = t->btn;
    int commands_set = 0;
    while (!atomic_load(&t->closing)) {
        if (!commands_set && atomic_load(&t->have_me)) {
            commands_set = 1;
            set_commands(t);
        }
        pthread_mutex_lock(&b->mu);
        if (!b->head && !atomic_load(&t->closing)) {
            /* until getMe, a look every 200 ms for the commands to set;
             * then only work or the stop wakes it */
            if (commands_set) {
                pthread_cond_wait(&b->cv, &b->mu);
            } else {
                struct timespec dl = tg_deadline(200);
                pthread_cond_timedwait(&b->cv, &b->mu, &dl);
            }
        }
        side_call *c = b->head;
        if (c) {
            b->head = c->next;
            if (!b->head) b->tail = NULL;
            b->n--;
        }
        pthread_mutex_unlock(&b->mu);
        if (!c) continue;
        /* answerCallbackQuery is useless after Telegram's ~15 s. */
        tg_call call;
        tg_api_call(t, c->method, c->body, c->chat, tg_now(t) + 10000, &call);
        if (call.cls == TG_C_OK)
            tg_count(t, t->m_sent, c->method, NULL, 1);
        else if (call.cls != TG_C_ABORTED)
            t->h->log(t->ctx, RD_LOG_WARN, "%s: %s", c->method, call.detail);
        tg_call_free(&call);
        free(c->body);
        free(c);
    }
    return NULL;
}

rd_status tg_buttons_create(tg *t, rd_error *err) {
    tg_btn *b = calloc(1, sizeof *b);
    if (!b) {
        t->h->error(err, RD_E_INTERNAL, "fatal", "out of memory");
        return RD_E_INTERNAL;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    t->btn = b;
    return RD_OK;
}

rd_status tg_buttons_start(tg *t) {
    if (pthread_create(&t->btn->th, NULL, side_loop, t) == 0) {
        t->btn->running = 1;
        pthread_setname_np(t->btn->th, "tg-buttons");
    }
    return RD_OK;
}

void tg_buttons_stop(tg *t) {
    tg_btn *b = t->btn;
    if (!b || !b->running) return;
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->th, NULL);
    b->running = 0;
}

void tg_buttons_free(tg *t) {
    tg_btn *b = t->btn;
    if (!b) return;
    for (side_call *c = b->head, *n; c; c = n) {
        n = c->next;
        free(c->body);
        free(c);
    }
    OPENSSL_cleanse(b->key, sizeof b->key);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
    t->btn = NULL;
}

/* ------------------------------------------------------------------------ */
/* Keyboards                                                                 */

/* Deletes the rows of expired choices, at most once a minute. */
static void sweep(tg *t) {
    int64_t now = tg_now(t);
    long long last = atomic_load(&t->btn->swept_ms);
    if ((last && now - last < 60000) ||
        !atomic_compare_exchange_strong(&t->btn->swept_ms, &last, now))
        return;
    char end[48];
    row_key(end, sizeof end, wall_s(t), "");
    rd_kv_op op = {.op = RD_KV_DEL_RANGE, .key = "b/", .key_end = end};
    t->h->kv_txn(t->ctx, &op, 1);
}

/* The label shown: the choice, cut at button_label_max characters. */
static char *label_of(tg *t, const char *s, size_t n) {
    size_t max = (size_t)t->c.button_label_max, chars = 0, cut = n;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) == 0x80) continue;
        if (chars == max - 1) cut = i;
        chars++;
    }
    size_t keep = chars > max ? cut : n;
    char *l = malloc(keep + 4);
    if (!l) return NULL;
    memcpy(l, s, keep);
    if (keep < n) memcpy(l + keep, "\xE2\x80\xA6", 3);
    l[keep + (keep < n ? 3 : 0)] = 0;
    return l;
}

char *tg_buttons_markup(tg *t, int64_t chat, const char *const *choices, char *ref) {
    ref[0] = 0;
    if (!choices || !choices[0] || !t->btn) return NULL;
    sweep(t);
    unsigned char rnd[6];
    if (RAND_bytes(rnd, sizeof rnd) != 1) return NULL;
    char r[REF_LEN + 1];
    b64url(rnd, sizeof rnd, r, sizeof r);
    int64_t exp = wall_s(t) + t->c.buttons_expiry_s;
    cJSON *row = cJSON_CreateObject(), *stored = cJSON_AddArrayToObject(row, "choices");
    cJSON *mk = cJSON_CreateObject(), *kb = cJSON_AddArrayToObject(mk, "inline_keyboard");
    char num[32];
    snprintf(num, sizeof num, "%" PRId64, chat);
    cJSON_AddRawToObject(row, "chat", num);
    unsigned idx = 0;
    size_t left_out = 0;
    for (size_t i = 0; choices[i]; i++) {
        size_t n = 0;
        char *s = tg_utf8_sanitize(choices[i], strlen(choices[i]), &n);
        if (!s || tg_is_blank(s, n) || n > CHOICE_MAX || idx >= (unsigned)t->c.buttons_max) {
            left_out++;
            free(s);
            continue;
        }
        char *label = label_of(t, s, n);
        char mac[MAC_LEN + 1], data[72];
        mac_of(t->btn, chat, exp, r, idx, mac);
        snprintf(data, sizeof data, "b1.%" PRId64 ".%s.%u.%s", exp, r, idx, mac);
        cJSON *btn = cJSON_CreateObject();
        cJSON_AddStringToObject(btn, "text", label ? label : "?");
        cJSON_AddStringToObject(btn, "callback_data", data);
        cJSON *line = cJSON_CreateArray();
        cJSON_AddItemToArray(line, btn);
        cJSON_AddItemToArray(kb, line);
        cJSON_AddItemToArray(stored, cJSON_CreateString(s));
        free(label);
        free(s);
        idx++;
    }
    if (left_out)
        t->h->log(t->ctx, RD_LOG_WARN,
                  "%zu offered choices left out (blank, over %d bytes, or past buttons_max %lld)",
                  left_out, CHOICE_MAX, (long long)t->c.buttons_max);
    char *val = idx ? cJSON_PrintUnformatted(row) : NULL;
    char *markup = idx ? cJSON_PrintUnformatted(mk) : NULL;
    cJSON_Delete(row);
    cJSON_Delete(mk);
    char k[48];
    row_key(k, sizeof k, exp, r);
    if (val && markup && t->h->kv_put(t->ctx, k, val, strlen(val)) != RD_OK) {
        t->h->log(t->ctx, RD_LOG_WARN,
                  "cannot store the choices of a reply; it is sent without buttons");
        free(markup);
        markup = NULL;
    }
    free(val);
    if (markup) snprintf(ref, 48, "%s", k);
    return markup;
}

void tg_buttons_shown(tg *t, const char *ref, int64_t msg_id) {
    if (!ref || !*ref || !msg_id) return;
    char *v = NULL;
    size_t vl = 0;
    if (t->h->kv_get(t->ctx, ref, &v, &vl) != RD_OK) return;
    cJSON *o = tg_json_parse(v, vl);
    free(v);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return;
    }
    char num[32];
    snprintf(num, sizeof num, "%" PRId64, msg_id);
    cJSON_DeleteItemFromObjectCaseSensitive(o, "msg");
    cJSON_AddRawToObject(o, "msg", num);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s) t->h->kv_put(t->ctx, ref, s, strlen(s));
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Presses                                                                   */

/* The choice a press names (malloc), or NULL with *why saying why not. */
static char *verify(tg *t, const tg_update *u, const char **why) {
    *why = "callback_forged";
    const char *d = u->cb_data;
    if (strncmp(d, "b1.", 3) || d[3] < '0' || d[3] > '9') return NULL;
    char *end = NULL;
    long long exp = strtoll(d + 3, &end, 10);
    if (!end || *end != '.' || exp <= 0 || end - (d + 3) > 12) return NULL;
    const char *r = end + 1;
    if (strlen(r) < REF_LEN + 1 || r[REF_LEN] != '.') return NULL;
    char ref[REF_LEN + 1];
    memcpy(ref, r, REF_LEN);
    ref[REF_LEN] = 0;
    for (size_t i = 0; i < REF_LEN; i++) {
        char c = ref[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return NULL;
    }
    const char *ip = r + REF_LEN + 1;
    unsigned long idx = strtoul(ip, &end, 10);
    if (!end || end == ip || *end != '.' || end - ip > 3 || idx >= 100) return NULL;
    const char *mac = end + 1;
    if (strlen(mac) != MAC_LEN) return NULL;
    char want[MAC_LEN + 1];
    mac_of(t->btn, u->chat_id, exp, ref, (unsigned)idx, want);
    if (CRYPTO_memcmp(want, mac, MAC_LEN) != 0) return NULL;
    *why = "callback_expired";
    if (exp < wall_s(t)) return NULL;
    char k[48], *v = NULL;
    size_t vl = 0;
    row_key(k, sizeof k, exp, ref);
    if (t->h->kv_get(t->ctx, k, &v, &vl) != RD_OK) return NULL;
    cJSON *o = tg_json_parse(v, vl);
    free(v);
    int64_t chat = 0, msg = 0;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "choices");
    const cJSON *c = cJSON_GetArrayItem(arr, (int)idx);
    char *choice = NULL;
    *why = "callback_forged";
    if (tg_json_i64(o, "chat", &chat) && chat == u->chat_id &&
        (!tg_json_i64(o, "msg", &msg) || msg == u->message_id) && cJSON_IsString(c))
        choice = strdup(c->valuestring);
    cJSON_Delete(o);
    return choice;
}

static void answer(tg *t, const tg_update *u, const char *text) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "callback_query_id", u->cb_id);
    if (text) cJSON_AddStringToObject(o, "text", text);
    side_queue(t, "answerCallbackQuery", cJSON_PrintUnformatted(o), 0);
    cJSON_Delete(o);
}

/* The keyboard goes once a choice is taken: no second press of it. */
static void remove_keyboard(tg *t, const tg_update *u) {
    if (!u->message_id) return;
    char body[160];
    snprintf(body, sizeof body,
             "{\"chat_id\":%" PRId64 ",\"message_id\":%" PRId64
             ",\"reply_markup\":{\"inline_keyboard\":[]}}",
             u->chat_id, u->message_id);
    side_queue(t, "editMessageReplyMarkup", strdup(body), u->chat_id);
}

rd_status tg_buttons_press(tg *t, tg_item *it, int64_t chat) {
    const tg_update *u = &it->u;
    const char *why = NULL;
    char *choice = NULL;
    if (u->invalid || !u->cb_id[0])
        why = "invalid";
    else if (t->bot_id && u->user_id == t->bot_id)
        why = "own_message";
    else
        choice = verify(t, u, &why);
    if (!choice) {
        if (u->cb_id[0])
            answer(t, u,
                   !strcmp(why, "callback_expired")
                       ? "This choice has expired; send a new message instead."
                       : "This button is not valid.");
        long long n = atomic_fetch_add(&t->btn->refused, 1);
        /* First and every 100th: a client pressing forged data cannot
         * flood the log. */
        if (n % 100 == 0)
            t->h->log(t->ctx, RD_LOG_WARN,
                      "update %lld: button press refused (%s; %lld refused so far)",
                      (long long)it->tg_id, why, n + 1);
        t->h->skip(t->ctx, it->seq, why);
        tg_count(t, t->m_ignored, why, NULL, 1);
        return RD_OK;
    }
    char *meta = tg_inbound_meta(u, it->tg_id);
    rd_inbound in = {.size = sizeof in,
                     .update_id = it->seq,
                     .chat_id = chat,
                     .user_id = u->user_id,
                     .message_id = u->message_id,
                     .thread_id = u->thread_id,
                     .text = choice,
                     .text_len = strlen(choice),
                     .flags = RD_MSG_CHOICE | (u->chat_type != TG_CHAT_PRIVATE ? RD_MSG_GROUP : 0),
                     .meta = meta,
                     .reply_to = u->reply_to_id};
    /* Registered before the core has it: its reply may be quick. */
    if (!t->shared) tg_replied_register(t, chat, u->message_id, it->seq);
    rd_status st = t->h->submit(t->ctx, &in);
    free(meta);
    free(choice);
    if (st != RD_OK && !t->shared) tg_replied_unregister(t, chat, u->message_id, it->seq);
    if (st == RD_E_FULL) return st; /* taken again later: answered then */
    answer(t, u, NULL);
    if (st == RD_OK) {
        remove_keyboard(t, u);
        return st;
    }
    if (st == RD_E_DUPLICATE) return st;
    t->h->log(t->ctx, RD_LOG_ERROR, "update %lld: the router refused it (status %d); skipped",
              (long long)it->tg_id, (int)st);
    t->h->skip(t->ctx, it->seq, "refused");
    tg_count(t, t->m_ignored, "refused", NULL, 1);
    return RD_OK;
}

/* ------------------------------------------------------------------------ */
/* Edits notice                                                              */

void tg_edit_notice(tg *t, int64_t chat, int64_t thread, int64_t reply_to) {
    const char *s = t->c.edits_notice;
    if (!s || !*s) return;
    /* Rendered like every reply and notice. */
    size_t n = 0;
    char *clean = tg_utf8_sanitize(s, strlen(s), &n);
    tg_part *p = NULL;
    size_t np = clean ? tg_format(clean, n, t->c.format_markdown && t->c.parse_mode == TG_PM_NONE,
                                  (size_t)t->c.max_units, &p)
                      : 0;
    free(clean);
    if (!np) return;
    int64_t to = tg_mig_forward(t, chat);
    cJSON *o = cJSON_CreateObject();
    char num[32];
    snprintf(num, sizeof num, "%" PRId64, to);
    cJSON_AddRawToObject(o, "chat_id", num);
    cJSON_AddStringToObject(o, "text", p[0].text);
    char *ents = tg_entities_json(&p[0]);
    if (ents) cJSON_AddRawToObject(o, "entities", ents);
    free(ents);
    if (thread) {
        snprintf(num, sizeof num, "%" PRId64, thread);
        cJSON_AddRawToObject(o, "message_thread_id", num);
    }
    if (reply_to && t->c.reply_to_message) {
        cJSON *rp = cJSON_AddObjectToObject(o, "reply_parameters");
        snprintf(num, sizeof num, "%" PRId64, reply_to);
        cJSON_AddRawToObject(rp, "message_id", num);
        cJSON_AddBoolToObject(rp, "allow_sending_without_reply", 1);
    }
    side_queue(t, "sendMessage", cJSON_PrintUnformatted(o), to);
    cJSON_Delete(o);
    tg_parts_free(p, np);
}
