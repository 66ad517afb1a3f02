/* Fake Telegram Bot API server: see fake_telegram.h. */
#include "fake_telegram.h"
#include "http_stub.h"
#include "tg_entity_check.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

typedef struct upd {
    int64_t id;
    char *json;
} upd;

typedef struct fault {
    char method[32]; /* "" = any */
    ftg_fault kind;
    int arg, left;
    char *body; /* FTG_FAULT_BODY */
} fault;

#define FTG_FAULT_BODY 1000

typedef struct chat_err {
    int64_t chat;
    int code;
    char desc[200];
    int64_t migrate_to;
} chat_err;

typedef struct ffile {
    char id[128];
    unsigned char *data;
    size_t len;
    long long claimed;
} ffile;

typedef struct stored_msg {
    int64_t chat, id;
    char *text;
    char *ents; /* entities JSON; NULL = none */
} stored_msg;

struct ftg {
    hs *srv;
    char token[256];
    int64_t bot_id;
    char bot_username[64];
    int max_hold_ms;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;

    upd *q;
    size_t nq, capq;
    int64_t next_id;
    int64_t confirmed; /* highest offset seen */
    long long out_us;  /* when a getUpdates last handed out updates (monotonic) */
    int polls;         /* held right now */
    unsigned poll_gen;
    int held_fds[64]; /* sockets of the long polls held right now */
    int nheld;
    int overlaps; /* long polls that arrived while another client's was held */
    int64_t next_msg_id;

    fault *faults;
    size_t nfaults;
    chat_err *cerr;
    size_t ncerr;
    stored_msg *msgs;
    size_t nmsgs, capmsgs;

    ftg_rec *recs;
    size_t nrecs, caprecs;
    /* ftg_count() resumes where it last stopped: records are only ever
     * appended, and a benchmark polls the count every few milliseconds
     * while tens of thousands of records pile up. */
    struct {
        char method[32];
        int ok_only, used;
        size_t upto, count;
    } counted[8];

    char webhook_url[512];
    char webhook_secret[300];

    int64_t flood_chat;
    long long flood_end;

    ffile *files;
    size_t nfiles;
    size_t bytes_served;
    /* The uploads of the request being dispatched (mu held). */
    const ftg_part *cur_parts;
    size_t cur_nparts;
};

static long long mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long mono_ms(void) {
    return mono_us() / 1000;
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

static int get_i64(const cJSON *o, const char *key, int64_t *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNumber(it)) {
        *out = (int64_t)it->valuedouble;
        return 1;
    }
    if (cJSON_IsString(it) && it->valuestring[0]) {
        char *end;
        errno = 0;
        long long v = strtoll(it->valuestring, &end, 10);
        if (errno || *end) return 0;
        *out = v;
        return 1;
    }
    return 0;
}

static const char *get_str(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* UTF-16 length of UTF-8 text, or -1 when it is not valid UTF-8. */
static long utf16_len(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;
    while (*p) {
        unsigned char c = *p;
        int len;
        unsigned cp;
        if (c < 0x80) {
            len = 1;
            cp = c;
        } else if ((c & 0xE0) == 0xC0 && c >= 0xC2) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return -1;
        }
        for (int i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80) return -1;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((cp >= 0xD800 && cp <= 0xDFFF) || (len == 3 && cp < 0x800) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return -1;
        n += cp >= 0x10000 ? 2 : 1;
        p += len;
    }
    return n;
}

static int blank(const char *s) {
    for (; *s; s++)
        if (!strchr(" \t\r\n\v\f", *s)) return 0;
    return 1;
}

/* MarkdownV2 as the fake understands it: every reserved character escaped
 * (no entities). Returns the first offending character or 0. */
static char mdv2_bad(const char *s) {
    for (; *s; s++) {
        if (*s == '\\') {
            if (!s[1]) return '\\';
            s++;
            continue;
        }
        if (strchr("_*[]()~`>#+-=|{}.!", *s)) return *s;
    }
    return 0;
}

static int html_bad(const char *s) {
    static const char *const ok[] = {"<b>",     "</b>",   "<i>",    "</i>",  "<code>",
                                     "</code>", "<pre>",  "</pre>", "&amp;", "&lt;",
                                     "&gt;",    "&quot;", NULL};
    for (; *s; s++) {
        if (*s != '<' && *s != '&') continue;
        int good = 0;
        for (int i = 0; ok[i]; i++)
            if (!strncmp(s, ok[i], strlen(ok[i]))) good = 1;
        if (!good) return 1;
    }
    return 0;
}

static char *err_json(int code, const char *desc, int retry_after, int64_t migrate_to) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", 0);
    cJSON_AddNumberToObject(o, "error_code", code);
    cJSON_AddStringToObject(o, "description", desc);
    if (retry_after || migrate_to) {
        cJSON *p = cJSON_AddObjectToObject(o, "parameters");
        if (retry_after) cJSON_AddNumberToObject(p, "retry_after", retry_after);
        if (migrate_to) {
            char num[32];
            snprintf(num, sizeof num, "%lld", (long long)migrate_to);
            cJSON_AddRawToObject(p, "migrate_to_chat_id", num);
        }
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static char *ok_json(cJSON *result, const char *description) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", 1);
    cJSON_AddItemToObject(o, "result", result ? result : cJSON_CreateTrue());
    if (description) cJSON_AddStringToObject(o, "description", description);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Replies                                                                   */

typedef struct reply {
    int status;
    char *body;
    int retry_after; /* header */
    int drop, cut, html;
    int fd; /* the client's socket, to see whether it is still there */
} reply;

static void set_err(reply *r, int code, const char *desc, int retry_after, int64_t migrate_to) {
    r->status = code;
    r->body = err_json(code, desc, retry_after, migrate_to);
    if (code == 429) r->retry_after = retry_after;
}

/* The "entities" parameter as JSON text (malloc), NULL when absent. Form
 * encoding sends it as a JSON string. */
static char *entities_text(const cJSON *p) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(p, "entities");
    if (!e) e = cJSON_GetObjectItemCaseSensitive(p, "caption_entities");
    if (cJSON_IsString(e)) return strdup(e->valuestring);
    return e ? cJSON_PrintUnformatted(e) : NULL;
}

static void record(ftg *f, const char *method, int status, const cJSON *p, const char *body,
                   int64_t message_id) {
    if (f->nrecs == f->caprecs) {
        f->caprecs = f->caprecs ? f->caprecs * 2 : 256;
        f->recs = realloc(f->recs, f->caprecs * sizeof *f->recs);
    }
    ftg_rec *r = &f->recs[f->nrecs++];
    memset(r, 0, sizeof *r);
    snprintf(r->method, sizeof r->method, "%s", method);
    r->status = status;
    r->t_us = mono_us();
    r->t_ms = r->t_us / 1000;
    r->message_id = message_id;
    r->body = strdup(body ? body : "");
    if (f->cur_nparts) {
        r->parts = calloc(f->cur_nparts, sizeof *r->parts);
        r->nparts = f->cur_nparts;
        for (size_t i = 0; i < f->cur_nparts; i++) {
            r->parts[i] = f->cur_parts[i];
            r->parts[i].data = malloc(f->cur_parts[i].len + 1);
            memcpy(r->parts[i].data, f->cur_parts[i].data, f->cur_parts[i].len);
        }
    }
    if (!p) return;
    get_i64(p, "chat_id", &r->chat_id);
    get_i64(p, "message_thread_id", &r->thread_id);
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(p, "reply_parameters");
    if (cJSON_IsString(rp)) {
        /* Form encoding sends nested objects as JSON strings. */
        cJSON *x = cJSON_Parse(rp->valuestring);
        get_i64(x, "message_id", &r->reply_to);
        r->allow_without_reply =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "allow_sending_without_reply"));
        cJSON_Delete(x);
    } else if (cJSON_IsObject(rp)) {
        get_i64(rp, "message_id", &r->reply_to);
        r->allow_without_reply =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rp, "allow_sending_without_reply"));
    } else {
        get_i64(p, "reply_to_message_id", &r->reply_to);
        r->allow_without_reply =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "allow_sending_without_reply"));
    }
    const char *text = get_str(p, "text");
    if (!text) text = get_str(p, "caption");
    if (text) r->text = strdup(text);
    const char *media = get_str(p, "media");
    if (media) r->media = strdup(media);
    const char *pm = get_str(p, "parse_mode");
    if (pm) r->parse_mode = strdup(pm);
    r->entities = entities_text(p);
    const cJSON *mk = cJSON_GetObjectItemCaseSensitive(p, "reply_markup");
    if (cJSON_IsString(mk))
        r->reply_markup = strdup(mk->valuestring);
    else if (mk)
        r->reply_markup = cJSON_PrintUnformatted(mk);
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(p, "link_preview_options");
    cJSON *lpx = cJSON_IsString(lp) ? cJSON_Parse(lp->valuestring) : NULL;
    r->link_preview_disabled =
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(lpx ? lpx : lp, "is_disabled"));
    cJSON_Delete(lpx);
}

static stored_msg *find_msg(ftg *f, int64_t chat, int64_t id) {
    for (size_t i = 0; i < f->nmsgs; i++)
        if (f->msgs[i].chat == chat && f->msgs[i].id == id) return &f->msgs[i];
    return NULL;
}

static const chat_err *find_chat_err(ftg *f, int64_t chat) {
    for (size_t i = 0; i < f->ncerr; i++)
        if (f->cerr[i].chat == chat) return &f->cerr[i];
    return NULL;
}

/* Checks text and parse_mode the way the server does; 0 ok. */
static int check_text(const cJSON *p, reply *r) {
    const char *text = get_str(p, "text");
    if (!text || blank(text)) {
        set_err(r, 400, "Bad Request: message text is empty", 0, 0);
        return -1;
    }
    long units = utf16_len(text);
    if (units < 0) {
        set_err(r, 400, "Bad Request: strings must be encoded in UTF-8", 0, 0);
        return -1;
    }
    const char *pm = get_str(p, "parse_mode");
    if (pm && !strcasecmp(pm, "MarkdownV2")) {
        char bad = mdv2_bad(text);
        if (bad) {
            char d[200];
            snprintf(d, sizeof d,
                     "Bad Request: can't parse entities: Character '%c' is reserved and must be "
                     "escaped with the preceding '\\'",
                     bad);
            set_err(r, 400, d, 0, 0);
            return -1;
        }
    } else if (pm && !strcasecmp(pm, "HTML") && html_bad(text)) {
        set_err(r, 400, "Bad Request: can't parse entities: Unsupported start tag", 0, 0);
        return -1;
    }
    /* Entities parsing removes escapes; the limit applies after it. The
     * fake only sees escaped text, so it checks raw length without markup. */
    if (!pm && units > 4096) {
        set_err(r, 400, "Bad Request: message is too long", 0, 0);
        return -1;
    }
    /* Explicit entities: refused unless they follow Telegram's rules. */
    char *ents = entities_text(p);
    const char *why = ents ? tgc_check(text, strlen(text), ents, 4096) : NULL;
    free(ents);
    if (why) {
        char d[200];
        snprintf(d, sizeof d, "Bad Request: can't parse entities: %s", why);
        set_err(r, 400, d, 0, 0);
        return -1;
    }
    return 0;
}

static cJSON *message_obj(int64_t chat, int64_t id, const char *text) {
    cJSON *m = cJSON_CreateObject();
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)id);
    cJSON_AddRawToObject(m, "message_id", num);
    cJSON_AddNumberToObject(m, "date", (double)time(NULL));
    cJSON *c = cJSON_AddObjectToObject(m, "chat");
    snprintf(num, sizeof num, "%lld", (long long)chat);
    cJSON_AddRawToObject(c, "id", num);
    cJSON_AddStringToObject(c, "type", chat > 0 ? "private" : "supergroup");
    cJSON_AddStringToObject(m, "text", text);
    return m;
}

static void do_send(ftg *f, const cJSON *p, const char *body, reply *r) {
    int64_t chat = 0;
    if (!get_i64(p, "chat_id", &chat)) {
        set_err(r, 400, "Bad Request: chat not found", 0, 0);
        record(f, "sendMessage", r->status, p, body, 0);
        return;
    }
    const chat_err *ce = find_chat_err(f, chat);
    if (ce) {
        set_err(r, ce->code, ce->desc, 0, ce->migrate_to);
    } else if (check_text(p, r) == 0) {
        int64_t id = ++f->next_msg_id;
        const char *text = get_str(p, "text");
        if (f->nmsgs == f->capmsgs) {
            f->capmsgs = f->capmsgs ? f->capmsgs * 2 : 256;
            f->msgs = realloc(f->msgs, f->capmsgs * sizeof *f->msgs);
        }
        f->msgs[f->nmsgs++] = (stored_msg){chat, id, strdup(text), entities_text(p)};
        r->status = 200;
        r->body = ok_json(message_obj(chat, id, text), NULL);
        record(f, "sendMessage", 200, p, body, id);
        return;
    }
    record(f, "sendMessage", r->status, p, body, 0);
}

static void do_edit(ftg *f, const cJSON *p, const char *body, reply *r) {
    int64_t chat = 0, id = 0;
    get_i64(p, "chat_id", &chat);
    get_i64(p, "message_id", &id);
    const chat_err *ce = find_chat_err(f, chat);
    stored_msg *m = find_msg(f, chat, id);
    if (ce) {
        set_err(r, ce->code, ce->desc, 0, ce->migrate_to);
    } else if (!m) {
        set_err(r, 400, "Bad Request: message to edit not found", 0, 0);
    } else if (check_text(p, r) == 0) {
        const char *text = get_str(p, "text");
        char *ents = entities_text(p);
        int same_ents = (!ents && !m->ents) || (ents && m->ents && !strcmp(ents, m->ents));
        if (!strcmp(text, m->text) && same_ents) {
            free(ents);
            set_err(r, 400,
                    "Bad Request: message is not modified: specified new message content and "
                    "reply markup are exactly the same as a current content and reply markup of "
                    "the message",
                    0, 0);
        } else {
            free(m->text);
            m->text = strdup(text);
            free(m->ents);
            m->ents = ents;
            r->status = 200;
            r->body = ok_json(message_obj(chat, id, text), NULL);
        }
    }
    record(f, "editMessageText", r->status, p, body, id);
}

static void do_get_updates(ftg *f, const cJSON *p, const char *body, reply *r) {
    int64_t offset = 0, limit = 100, timeout = 0;
    int has_offset = get_i64(p, "offset", &offset);
    get_i64(p, "limit", &limit);
    get_i64(p, "timeout", &timeout);
    if (limit < 1) limit = 1;
    if (limit > 100) limit = 100;
    if (timeout < 0) timeout = 0;
    if (timeout > 50) timeout = 50;
    record(f, "getUpdates", 200, p, body, 0);
    size_t rec = f->nrecs - 1;
    if (f->webhook_url[0]) {
        set_err(r, 409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
                0, 0);
        f->recs[rec].status = 409;
        return;
    }
    /* One bot, one poller: a long poll while another client still waits
     * in one is what replicas must never do. */
    if (timeout > 0)
        for (int i = 0; i < f->nheld; i++)
            if (f->held_fds[i] != r->fd && !hs_gone(f->held_fds[i])) f->overlaps++;
    unsigned gen = ++f->poll_gen;
    pthread_cond_broadcast(&f->cv);
    if (has_offset && offset > f->next_id + 10) {
        /* The real server treats an offset far past its queue as invalid
         * and answers from the head (an id-space change). */
        has_offset = 0;
    }
    if (has_offset && offset > 0) {
        if (offset > f->confirmed) f->confirmed = offset;
        size_t k = 0;
        for (size_t i = 0; i < f->nq; i++) {
            if (f->q[i].id < offset)
                free(f->q[i].json);
            else
                f->q[k++] = f->q[i];
        }
        f->nq = k;
    } else if (has_offset && offset < 0) {
        size_t keep = (size_t)(-offset);
        if (f->nq > keep) {
            size_t drop = f->nq - keep;
            for (size_t i = 0; i < drop; i++)
                free(f->q[i].json);
            memmove(f->q, f->q + drop, keep * sizeof *f->q);
            f->nq = keep;
        }
    }
    long long hold = timeout * 1000;
    if (f->max_hold_ms >= 0 && hold > f->max_hold_ms) hold = f->max_hold_ms;
    long long end = mono_ms() + hold;
    f->polls++;
    int slot = timeout > 0 && f->nheld < 64 ? f->nheld++ : -1;
    if (slot >= 0) f->held_fds[slot] = r->fd;
    while (f->nq == 0 && !f->stopping && mono_ms() < end && gen == f->poll_gen && !hs_gone(r->fd)) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        long long left = end - mono_ms();
        if (left > 100) left = 100;
        dl.tv_sec += left / 1000;
        dl.tv_nsec += (left % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&f->cv, &f->mu, &dl);
    }
    f->polls--;
    for (int i = 0; i < f->nheld; i++)
        if (f->held_fds[i] == r->fd) {
            f->held_fds[i] = f->held_fds[--f->nheld];
            break;
        }
    if (gen != f->poll_gen) {
        set_err(r, 409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot "
                "instance is running",
                0, 0);
        f->recs[rec].status = 409;
        return;
    }
    size_t n = f->nq < (size_t)limit ? f->nq : (size_t)limit;
    size_t cap = 64;
    for (size_t i = 0; i < n; i++)
        cap += strlen(f->q[i].json) + 1;
    char *out = malloc(cap);
    size_t o = (size_t)sprintf(out, "{\"ok\":true,\"result\":[");
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(out + o, "%s%s", i ? "," : "", f->q[i].json);
    sprintf(out + o, "]}");
    r->status = 200;
    r->body = out;
    if (n) f->out_us = mono_us();
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */

static ffile *find_file(ftg *f, const char *id) {
    for (size_t i = 0; id && i < f->nfiles; i++)
        if (!strcmp(f->files[i].id, id)) return &f->files[i];
    return NULL;
}

static void do_get_file(ftg *f, const cJSON *p, const char *body, reply *r) {
    ffile *x = find_file(f, get_str(p, "file_id"));
    if (!x) {
        set_err(r, 400, "Bad Request: invalid file_id", 0, 0);
    } else {
        cJSON *o = cJSON_CreateObject();
        char buf[160];
        cJSON_AddStringToObject(o, "file_id", x->id);
        snprintf(buf, sizeof buf, "u%s", x->id);
        cJSON_AddStringToObject(o, "file_unique_id", buf);
        if (x->claimed != -2)
            cJSON_AddNumberToObject(o, "file_size",
                                    (double)(x->claimed < 0 ? (long long)x->len : x->claimed));
        snprintf(buf, sizeof buf, "files/%s", x->id);
        cJSON_AddStringToObject(o, "file_path", buf);
        r->status = 200;
        r->body = ok_json(o, NULL);
    }
    record(f, "getFile", r->status, p, body, 0);
}

static const ftg_part *find_part(ftg *f, const char *field) {
    for (size_t i = 0; i < f->cur_nparts; i++)
        if (!strcmp(f->cur_parts[i].field, field)) return &f->cur_parts[i];
    return NULL;
}

/* Caption rules: at most 1024 UTF-16 units, entities valid. 0 ok. */
static int check_caption(const char *caption, const char *ents, reply *r) {
    if (!caption) return 0;
    long units = utf16_len(caption);
    if (units < 0 || units > 1024) {
        set_err(r, 400, "Bad Request: message caption is too long", 0, 0);
        return -1;
    }
    const char *why = ents ? tgc_check(caption, strlen(caption), ents, 1024) : NULL;
    if (why) {
        char d[200];
        snprintf(d, sizeof d, "Bad Request: can't parse entities: %s", why);
        set_err(r, 400, d, 0, 0);
        return -1;
    }
    return 0;
}

static const char *file_field(const char *method) {
    static const char *const m[][2] = {{"sendPhoto", "photo"}, {"sendDocument", "document"},
                                       {"sendVoice", "voice"}, {"sendAudio", "audio"},
                                       {"sendVideo", "video"}, {"sendAnimation", "animation"}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (!strcasecmp(method, m[i][0])) return m[i][1];
    return NULL;
}

/* One InputMedia list of sendMediaGroup; 0 ok. */
static int check_group(ftg *f, const char *media, reply *r) {
    cJSON *a = media ? cJSON_Parse(media) : NULL;
    int n = cJSON_GetArraySize(a), docs = 0, audio = 0, visual = 0, bad = !cJSON_IsArray(a);
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        const char *type = get_str(it, "type"), *ref = get_str(it, "media");
        if (!type || !ref) bad = 1;
        if (type && !strcmp(type, "document"))
            docs++;
        else if (type && !strcmp(type, "audio"))
            audio++;
        else if (type && (!strcmp(type, "photo") || !strcmp(type, "video")))
            visual++;
        else
            bad = 1;
        if (ref && !strncmp(ref, "attach://", 9) && !find_part(f, ref + 9)) bad = 1;
        const cJSON *ce = cJSON_GetObjectItemCaseSensitive(it, "caption_entities");
        char *ents = ce ? cJSON_PrintUnformatted(ce) : NULL;
        if (!bad && check_caption(get_str(it, "caption"), ents, r)) bad = 2;
        free(ents);
    }
    cJSON_Delete(a);
    if (bad == 2) return -1;
    if (bad || n < 2 || n > 10 || (docs && docs != n) || (audio && audio != n)) {
        set_err(r, 400, "Bad Request: wrong media group", 0, 0);
        return -1;
    }
    return 0;
}

static void do_send_file(ftg *f, const char *method, const cJSON *p, const char *body, reply *r) {
    int64_t chat = 0;
    const char *field = file_field(method);
    const char *caption = get_str(p, "caption");
    char *ents = entities_text(p);
    const chat_err *ce = get_i64(p, "chat_id", &chat) ? find_chat_err(f, chat) : NULL;
    int group = !strcasecmp(method, "sendMediaGroup");
    if (!chat) {
        set_err(r, 400, "Bad Request: chat not found", 0, 0);
    } else if (ce) {
        set_err(r, ce->code, ce->desc, 0, ce->migrate_to);
    } else if (!group && !find_part(f, field) && !get_str(p, field)) {
        char d[96];
        snprintf(d, sizeof d, "Bad Request: there is no %s in the request", field);
        set_err(r, 400, d, 0, 0);
    } else if (group ? check_group(f, get_str(p, "media"), r) == 0
                     : check_caption(caption, ents, r) == 0) {
        cJSON *media = group ? cJSON_Parse(get_str(p, "media")) : NULL;
        int n = group ? cJSON_GetArraySize(media) : 1;
        cJSON_Delete(media);
        cJSON *res = group ? cJSON_CreateArray() : NULL;
        int64_t first = 0;
        for (int i = 0; i < n; i++) {
            int64_t id = ++f->next_msg_id;
            if (!first) first = id;
            cJSON *m = message_obj(chat, id, caption && i == 0 ? caption : "");
            if (group)
                cJSON_AddItemToArray(res, m);
            else
                res = m;
        }
        r->status = 200;
        r->body = ok_json(res, NULL);
        free(ents);
        record(f, method, 200, p, body, first);
        return;
    }
    free(ents);
    record(f, method, r->status, p, body, 0);
}

/* setMyCommands: 1-100 commands, names 1-32 of a-z 0-9 _, descriptions
 * 1-256 bytes or more (the server counts characters). */
static int commands_ok(const cJSON *p) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(p, "commands");
    cJSON *parsed = cJSON_IsString(c) ? cJSON_Parse(c->valuestring) : NULL;
    if (parsed) c = parsed;
    int n = cJSON_GetArraySize(c), ok = cJSON_IsArray(c) && n <= 100;
    for (const cJSON *e = ok ? c->child : NULL; e && ok; e = e->next) {
        const char *name = get_str(e, "command"), *d = get_str(e, "description");
        ok = name && d && strlen(name) >= 1 && strlen(name) <= 32 && *d;
        for (const char *q = name; ok && *q; q++)
            ok = (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_';
    }
    cJSON_Delete(parsed);
    return ok;
}

/* Handles one request (f->mu held). */
static void dispatch(ftg *f, const char *method, cJSON *p, const char *body, reply *r) {
    if (!strcasecmp(method, "getMe")) {
        cJSON *u = cJSON_CreateObject();
        char num[32];
        snprintf(num, sizeof num, "%lld", (long long)f->bot_id);
        cJSON_AddRawToObject(u, "id", num);
        cJSON_AddBoolToObject(u, "is_bot", 1);
        cJSON_AddStringToObject(u, "first_name", "Test Bot");
        cJSON_AddStringToObject(u, "username", f->bot_username);
        cJSON_AddBoolToObject(u, "can_join_groups", 1);
        cJSON_AddBoolToObject(u, "can_read_all_group_messages", 0);
        cJSON_AddBoolToObject(u, "supports_inline_queries", 0);
        r->status = 200;
        r->body = ok_json(u, NULL);
        record(f, "getMe", 200, p, body, 0);
    } else if (!strcasecmp(method, "getUpdates")) {
        do_get_updates(f, p, body, r);
    } else if (!strcasecmp(method, "sendMessage")) {
        do_send(f, p, body, r);
    } else if (!strcasecmp(method, "editMessageText")) {
        do_edit(f, p, body, r);
    } else if (!strcasecmp(method, "getFile")) {
        do_get_file(f, p, body, r);
    } else if (file_field(method) || !strcasecmp(method, "sendMediaGroup")) {
        do_send_file(f, method, p, body, r);
    } else if (!strcasecmp(method, "sendChatAction")) {
        r->status = 200;
        r->body = ok_json(NULL, NULL);
        record(f, "sendChatAction", 200, p, body, 0);
    } else if (!strcasecmp(method, "setWebhook")) {
        const char *url = get_str(p, "url");
        const char *sec = get_str(p, "secret_token");
        snprintf(f->webhook_url, sizeof f->webhook_url, "%s", url ? url : "");
        snprintf(f->webhook_secret, sizeof f->webhook_secret, "%s", sec ? sec : "");
        r->status = 200;
        r->body = ok_json(NULL, url && *url ? "Webhook was set" : "Webhook was deleted");
        record(f, "setWebhook", 200, p, body, 0);
    } else if (!strcasecmp(method, "deleteWebhook")) {
        int had = f->webhook_url[0] != 0;
        f->webhook_url[0] = f->webhook_secret[0] = 0;
        r->status = 200;
        r->body = ok_json(NULL, had ? "Webhook was deleted" : "Webhook is already deleted");
        record(f, "deleteWebhook", 200, p, body, 0);
    } else if (!strcasecmp(method, "answerCallbackQuery")) {
        const char *id = get_str(p, "callback_query_id");
        if (id && *id) {
            r->status = 200;
            r->body = ok_json(cJSON_CreateTrue(), NULL);
        } else {
            set_err(r, 400, "Bad Request: query is too old and response timeout expired", 0, 0);
        }
        record(f, "answerCallbackQuery", r->status, p, body, 0);
    } else if (!strcasecmp(method, "editMessageReplyMarkup")) {
        r->status = 200;
        r->body = ok_json(cJSON_CreateTrue(), NULL);
        record(f, "editMessageReplyMarkup", 200, p, body, 0);
    } else if (!strcasecmp(method, "setMyCommands")) {
        if (commands_ok(p)) {
            r->status = 200;
            r->body = ok_json(cJSON_CreateTrue(), NULL);
        } else {
            set_err(r, 400, "Bad Request: BOT_COMMAND_INVALID", 0, 0);
        }
        record(f, "setMyCommands", r->status, p, body, 0);
    } else if (!strcasecmp(method, "getWebhookInfo")) {
        cJSON *w = cJSON_CreateObject();
        cJSON_AddStringToObject(w, "url", f->webhook_url);
        cJSON_AddNumberToObject(w, "pending_update_count", (double)f->nq);
        r->status = 200;
        r->body = ok_json(w, NULL);
        record(f, "getWebhookInfo", 200, p, body, 0);
    } else {
        set_err(r, 404, "Not Found: method not found", 0, 0);
        record(f, method, 404, p, body, 0);
    }
}

/* Takes the first matching fault, if any (f->mu held). */
static int take_fault(ftg *f, const char *method, int *arg, const char **body) {
    for (size_t i = 0; i < f->nfaults; i++) {
        fault *x = &f->faults[i];
        if (x->left <= 0) continue;
        if (x->method[0] && strcasecmp(x->method, method)) continue;
        x->left--;
        *arg = x->arg;
        *body = x->body;
        return x->kind;
    }
    return 0;
}

/* Flood control for sends (f->mu held): 1 when answered with a 429. */
static int flooded(ftg *f, const char *method, const cJSON *p, const char *body, reply *r) {
    if (strcasecmp(method, "sendMessage") && strcasecmp(method, "editMessageText")) return 0;
    long long left = f->flood_end - mono_ms();
    if (left <= 0) return 0;
    int64_t chat = 0;
    get_i64(p, "chat_id", &chat);
    if (f->flood_chat && chat != f->flood_chat) return 0;
    int secs = (int)((left + 999) / 1000);
    char d[64];
    snprintf(d, sizeof d, "Too Many Requests: retry after %d", secs);
    set_err(r, 429, d, secs, 0);
    record(f, method, 429, p, body, 0);
    return 1;
}

static void apply_fault(ftg *f, int kind, int arg, const char *method, const cJSON *p,
                        const char *body, reply *r) {
    switch (kind) {
    case FTG_FAULT_429: {
        char d[64];
        snprintf(d, sizeof d, "Too Many Requests: retry after %d", arg);
        set_err(r, 429, d, arg, 0);
        break;
    }
    case FTG_FAULT_500:
        set_err(r, 500, "Internal Server Error: restart", 0, 0);
        break;
    case FTG_FAULT_502_HTML:
        r->status = 502;
        r->html = 1;
        r->body = strdup("<html><body><h1>502 Bad Gateway</h1></body></html>");
        break;
    case FTG_FAULT_409:
        set_err(r, 409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot "
                "instance is running",
                0, 0);
        break;
    case FTG_FAULT_401:
        set_err(r, 401, "Unauthorized", 0, 0);
        break;
    case FTG_FAULT_403:
        set_err(r, 403, "Forbidden: bot was blocked by the user", 0, 0);
        break;
    case FTG_FAULT_ENTITIES:
        set_err(r, 400, "Bad Request: can't parse entities: unsupported entity", 0, 0);
        break;
    case FTG_FAULT_MALFORMED:
        r->status = 200;
        r->body = strdup("{\"ok\":tru<<garbage");
        break;
    case FTG_FAULT_DROP:
        r->drop = 1;
        break;
    default:
        break;
    }
    record(f, method, r->drop ? 0 : r->status, p, body, 0);
}

/* ------------------------------------------------------------------------ */
/* HTTP plumbing (http_stub.h)                                               */

/* GET /file/bot<token>/files/<file_id> */
static void serve_file(ftg *f, const char *url, hs_resp *rs) {
    size_t tl = strlen(f->token);
    int status = 404;
    pthread_mutex_lock(&f->mu);
    int arg = 0;
    const char *fbody = NULL;
    int fault = take_fault(f, "download", &arg, &fbody);
    if (fault == FTG_FAULT_SLOW) {
        /* A slow file server: other requests go on meanwhile. */
        pthread_mutex_unlock(&f->mu);
        usleep((useconds_t)arg * 1000);
        pthread_mutex_lock(&f->mu);
    }
    if (strncmp(url + 9, f->token, tl) || url[9 + tl] != '/') {
        status = 401;
    } else if (fault == FTG_FAULT_500) {
        status = 500;
    } else if (!strncmp(url + 10 + tl, "files/", 6)) {
        ffile *x = find_file(f, url + 16 + tl);
        if (x) {
            status = 200;
            rs->chunked = x->claimed == -2;
            rs->body = malloc(x->len + 1);
            memcpy(rs->body, x->data, x->len);
            rs->body[x->len] = 0;
            rs->body_len = x->len;
            f->bytes_served += x->len;
        }
    }
    record(f, "download", status, NULL, "", 0);
    pthread_mutex_unlock(&f->mu);
    rs->status = status;
    rs->content_type = "application/octet-stream";
    rs->drop = fault == FTG_FAULT_DROP;
}

static void add_arg(void *arg, const char *key, const char *value) {
    cJSON *p = arg;
    if (!cJSON_GetObjectItemCaseSensitive(p, key)) cJSON_AddStringToObject(p, key, value);
}

/* A multipart request's plain fields as a JSON object (the first of a
 * name wins) and its uploads as parts (data borrowed from rq). */
static cJSON *form_of(const hs_req *rq, ftg_part **parts, size_t *nparts) {
    cJSON *form = cJSON_CreateObject();
    *parts = calloc(rq->nparts ? rq->nparts : 1, sizeof **parts);
    *nparts = 0;
    for (size_t i = 0; i < rq->nparts; i++) {
        const hs_part *x = &rq->parts[i];
        if (!x->filename) {
            if (!cJSON_GetObjectItemCaseSensitive(form, x->name))
                cJSON_AddStringToObject(form, x->name, x->data);
            continue;
        }
        ftg_part *y = &(*parts)[(*nparts)++];
        snprintf(y->field, sizeof y->field, "%.31s", x->name);
        snprintf(y->filename, sizeof y->filename, "%s", x->filename);
        snprintf(y->type, sizeof y->type, "%s", x->content_type);
        y->data = (unsigned char *)x->data;
        y->len = x->len;
    }
    return form;
}

static void on_req(void *arg, const hs_req *rq, hs_resp *rs) {
    ftg *f = arg;
    const char *url = rq->url;
    if (!strncmp(url, "/file/bot", 9)) {
        serve_file(f, url, rs);
        return;
    }
    const char *body = rq->body;
    reply r = {0};
    r.fd = hs_fd(rq);
    char method[64] = "";
    size_t tl = strlen(f->token);
    if (strncmp(url, "/bot", 4) || strncmp(url + 4, f->token, tl) || url[4 + tl] != '/') {
        set_err(&r, strncmp(url, "/bot", 4) ? 404 : 401,
                strncmp(url, "/bot", 4) ? "Not Found" : "Unauthorized", 0, 0);
    } else {
        snprintf(method, sizeof method, "%s", url + 5 + tl);
        const char *ct = hs_header(rq, "Content-Type");
        cJSON *form = NULL;
        ftg_part *parts = NULL;
        size_t nparts = 0;
        char *form_text = NULL;
        if (ct && !strncasecmp(ct, "multipart/form-data", 19)) {
            /* Recorded as the body: the text fields, as JSON. */
            form = form_of(rq, &parts, &nparts);
            form_text = cJSON_PrintUnformatted(form);
            body = form_text;
        }
        cJSON *p = form ? form : cJSON_Parse(body);
        if (!cJSON_IsObject(p)) {
            cJSON_Delete(p);
            p = cJSON_CreateObject();
        }
        hs_args(rq, add_arg, p);
        pthread_mutex_lock(&f->mu);
        int arg = 0;
        const char *fbody = NULL;
        int kind = take_fault(f, method, &arg, &fbody);
        pthread_mutex_unlock(&f->mu);
        if (kind == FTG_FAULT_SLOW) {
            usleep((useconds_t)arg * 1000);
            kind = 0;
        }
        pthread_mutex_lock(&f->mu);
        f->cur_parts = parts;
        f->cur_nparts = nparts;
        if (kind == FTG_FAULT_BODY) {
            r.status = arg;
            r.body = strdup(fbody ? fbody : "");
            record(f, method, arg, p, body, 0);
        } else if (!kind && flooded(f, method, p, body, &r)) {
            /* answered */
        } else if (kind && kind != FTG_FAULT_TRUNCATED && kind != FTG_FAULT_CUT) {
            apply_fault(f, kind, arg, method, p, body, &r);
        } else {
            dispatch(f, method, p, body, &r);
            if (kind == FTG_FAULT_TRUNCATED && r.body) {
                r.body[strlen(r.body) / 2] = 0;
                r.status = 200;
            } else if (kind == FTG_FAULT_CUT) {
                r.cut = 1;
            }
        }
        f->cur_parts = NULL;
        f->cur_nparts = 0;
        pthread_mutex_unlock(&f->mu);
        cJSON_Delete(p);
        free(parts);
        free(form_text);
    }
    if (r.drop) {
        free(r.body);
        rs->drop = 1;
        return;
    }
    rs->status = r.status;
    rs->body = r.body ? r.body : strdup("");
    rs->content_type = r.html ? "text/html" : NULL;
    rs->retry_after = r.retry_after;
    /* The connection closes before Content-Length bytes. */
    if (r.cut && r.body) rs->cut_at = strlen(r.body) / 2;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

ftg *ftg_start(const char *token) {
    ftg *f = calloc(1, sizeof *f);
    snprintf(f->token, sizeof f->token, "%s", token);
    f->bot_id = strtoll(token, NULL, 10);
    snprintf(f->bot_username, sizeof f->bot_username, "routerd_test_bot");
    f->next_id = 100000;
    f->next_msg_id = 1000;
    f->max_hold_ms = -1;
    pthread_mutex_init(&f->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cv, &ca);
    pthread_condattr_destroy(&ca);
    f->srv = hs_start(on_req, f, 120);
    if (!f->srv) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        free(f);
        return NULL;
    }
    return f;
}

void ftg_stop(ftg *f) {
    if (!f) return;
    pthread_mutex_lock(&f->mu);
    f->stopping = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    hs_stop(f->srv);
    for (size_t i = 0; i < f->nq; i++)
        free(f->q[i].json);
    free(f->q);
    for (size_t i = 0; i < f->nmsgs; i++) {
        free(f->msgs[i].text);
        free(f->msgs[i].ents);
    }
    free(f->msgs);
    ftg_recs_free(f->recs, f->nrecs);
    for (size_t i = 0; i < f->nfaults; i++)
        free(f->faults[i].body);
    free(f->faults);
    free(f->cerr);
    for (size_t i = 0; i < f->nfiles; i++)
        free(f->files[i].data);
    free(f->files);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

const char *ftg_base(ftg *f) {
    return hs_base(f->srv);
}

int ftg_connections(ftg *f) {
    return hs_connections(f->srv);
}

void ftg_set_bot(ftg *f, int64_t id, const char *username) {
    pthread_mutex_lock(&f->mu);
    f->bot_id = id;
    snprintf(f->bot_username, sizeof f->bot_username, "%s", username);
    pthread_mutex_unlock(&f->mu);
}

void ftg_set_max_hold(ftg *f, int ms) {
    pthread_mutex_lock(&f->mu);
    f->max_hold_ms = ms;
    pthread_mutex_unlock(&f->mu);
}

void ftg_fail(ftg *f, const char *method, ftg_fault kind, int arg, int count) {
    pthread_mutex_lock(&f->mu);
    f->faults = realloc(f->faults, (f->nfaults + 1) * sizeof *f->faults);
    fault *x = &f->faults[f->nfaults++];
    memset(x, 0, sizeof *x);
    snprintf(x->method, sizeof x->method, "%s", method ? method : "");
    x->kind = kind;
    x->arg = arg;
    x->left = count;
    pthread_mutex_unlock(&f->mu);
}

void ftg_fail_body(ftg *f, const char *method, int status, const char *body, int count) {
    ftg_fail(f, method, (ftg_fault)FTG_FAULT_BODY, status, count);
    pthread_mutex_lock(&f->mu);
    f->faults[f->nfaults - 1].body = strdup(body);
    pthread_mutex_unlock(&f->mu);
}

void ftg_flood(ftg *f, int64_t chat_id, int ms) {
    pthread_mutex_lock(&f->mu);
    f->flood_chat = chat_id;
    f->flood_end = mono_ms() + ms;
    pthread_mutex_unlock(&f->mu);
}

long long ftg_flood_end(ftg *f) {
    pthread_mutex_lock(&f->mu);
    long long v = f->flood_end;
    pthread_mutex_unlock(&f->mu);
    return v;
}

void ftg_clear_faults(ftg *f) {
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nfaults; i++)
        free(f->faults[i].body);
    f->nfaults = 0;
    pthread_mutex_unlock(&f->mu);
}

void ftg_chat_error(ftg *f, int64_t chat_id, int code, const char *description,
                    int64_t migrate_to) {
    pthread_mutex_lock(&f->mu);
    f->cerr = realloc(f->cerr, (f->ncerr + 1) * sizeof *f->cerr);
    chat_err *c = &f->cerr[f->ncerr++];
    c->chat = chat_id;
    c->code = code;
    snprintf(c->desc, sizeof c->desc, "%s", description);
    c->migrate_to = migrate_to;
    pthread_mutex_unlock(&f->mu);
}

/* Builds the update JSON; f->mu held. */
static char *build_locked(ftg *f, const ftg_msg *m, int64_t *id_out) {
    int64_t id = f->next_id++;
    cJSON *o = cJSON_CreateObject();
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)id);
    cJSON_AddRawToObject(o, "update_id", num);
    cJSON *msg = cJSON_AddObjectToObject(o, m->kind ? m->kind : "message");
    int64_t mid = m->message_id ? m->message_id : ++f->next_msg_id;
    snprintf(num, sizeof num, "%lld", (long long)mid);
    cJSON_AddRawToObject(msg, "message_id", num);
    const char *ctype = m->chat_type ? m->chat_type : m->chat_id > 0 ? "private" : "supergroup";
    int channel = !strcmp(ctype, "channel");
    if (!channel) {
        cJSON *from = cJSON_AddObjectToObject(msg, "from");
        int64_t uid = m->user_id ? m->user_id : m->chat_id > 0 ? m->chat_id : 1000;
        snprintf(num, sizeof num, "%lld", (long long)uid);
        cJSON_AddRawToObject(from, "id", num);
        cJSON_AddBoolToObject(from, "is_bot", 0);
        cJSON_AddStringToObject(from, "first_name", "Tester");
        if (m->username) cJSON_AddStringToObject(from, "username", m->username);
        cJSON_AddStringToObject(from, "language_code", "en");
    }
    cJSON *chat = cJSON_AddObjectToObject(msg, "chat");
    snprintf(num, sizeof num, "%lld", (long long)m->chat_id);
    cJSON_AddRawToObject(chat, "id", num);
    cJSON_AddStringToObject(chat, "type", ctype);
    if (m->chat_id < 0) cJSON_AddStringToObject(chat, "title", "Test group");
    cJSON_AddNumberToObject(msg, "date", (double)time(NULL));
    if (m->kind && strstr(m->kind, "edited"))
        cJSON_AddNumberToObject(msg, "edit_date", (double)time(NULL));
    if (m->thread_id) {
        snprintf(num, sizeof num, "%lld", (long long)m->thread_id);
        cJSON_AddRawToObject(msg, "message_thread_id", num);
        cJSON_AddBoolToObject(msg, "is_topic_message", 1);
    }
    if (m->reply_to_message_id) {
        /* Quoting the bot's own message, as the client sends it. */
        cJSON *rt = cJSON_AddObjectToObject(msg, "reply_to_message");
        snprintf(num, sizeof num, "%lld", (long long)m->reply_to_message_id);
        cJSON_AddRawToObject(rt, "message_id", num);
        cJSON *rf = cJSON_AddObjectToObject(rt, "from");
        snprintf(num, sizeof num, "%lld", (long long)f->bot_id);
        cJSON_AddRawToObject(rf, "id", num);
        cJSON_AddBoolToObject(rf, "is_bot", 1);
        cJSON_AddStringToObject(rf, "first_name", "Test Bot");
        cJSON_AddStringToObject(rf, "username", f->bot_username);
        cJSON *rc = cJSON_AddObjectToObject(rt, "chat");
        snprintf(num, sizeof num, "%lld", (long long)m->chat_id);
        cJSON_AddRawToObject(rc, "id", num);
        cJSON_AddStringToObject(rc, "type", ctype);
        cJSON_AddNumberToObject(rt, "date", (double)time(NULL));
        const stored_msg *q = find_msg(f, m->chat_id, m->reply_to_message_id);
        cJSON_AddStringToObject(rt, "text", q ? q->text : "earlier");
    } else if (m->reply_to_user_id) {
        cJSON *rt = cJSON_AddObjectToObject(msg, "reply_to_message");
        cJSON_AddNumberToObject(rt, "message_id", 1);
        cJSON *rf = cJSON_AddObjectToObject(rt, "from");
        snprintf(num, sizeof num, "%lld", (long long)m->reply_to_user_id);
        cJSON_AddRawToObject(rf, "id", num);
        cJSON_AddBoolToObject(rf, "is_bot", m->reply_to_user_id == f->bot_id);
        cJSON_AddStringToObject(rf, "first_name", "Someone");
        cJSON *rc = cJSON_AddObjectToObject(rt, "chat");
        snprintf(num, sizeof num, "%lld", (long long)m->chat_id);
        cJSON_AddRawToObject(rc, "id", num);
        cJSON_AddStringToObject(rc, "type", ctype);
        cJSON_AddNumberToObject(rt, "date", (double)time(NULL));
        cJSON_AddStringToObject(rt, "text", "earlier");
    }
    if (m->media_group_id) cJSON_AddStringToObject(msg, "media_group_id", m->media_group_id);
    if (m->media) {
        size_t n = strlen(m->media) + 3;
        char *wrap = malloc(n);
        snprintf(wrap, n, "{%s}", m->media);
        cJSON *x = cJSON_Parse(wrap);
        free(wrap);
        for (cJSON *c = x ? x->child : NULL; c;) {
            cJSON *next = c->next;
            cJSON_AddItemToObject(msg, c->string, cJSON_DetachItemViaPointer(x, c));
            c = next;
        }
        cJSON_Delete(x);
    }
    if (m->caption)
        cJSON_AddStringToObject(msg, "caption", m->caption);
    else if (m->text)
        cJSON_AddStringToObject(msg, "text", m->text);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (id_out) *id_out = id;
    return s;
}

static void push_locked(ftg *f, int64_t id, char *json) {
    if (f->nq == f->capq) {
        f->capq = f->capq ? f->capq * 2 : 256;
        f->q = realloc(f->q, f->capq * sizeof *f->q);
    }
    f->q[f->nq++] = (upd){id, json};
    pthread_cond_broadcast(&f->cv);
}

int64_t ftg_add_message(ftg *f, const ftg_msg *m) {
    pthread_mutex_lock(&f->mu);
    int64_t id;
    char *s = build_locked(f, m, &id);
    push_locked(f, id, s);
    pthread_mutex_unlock(&f->mu);
    return id;
}

int64_t ftg_add_text(ftg *f, int64_t chat_id, const char *text) {
    ftg_msg m = {.chat_id = chat_id, .text = text};
    return ftg_add_message(f, &m);
}

int64_t ftg_add_texts(ftg *f, int64_t chat_id, const char *const *texts, size_t n) {
    /* One lock for all: a held poll sees the whole batch at once. */
    pthread_mutex_lock(&f->mu);
    int64_t id = 0;
    for (size_t i = 0; i < n; i++) {
        ftg_msg m = {.chat_id = chat_id, .text = texts[i]};
        char *s = build_locked(f, &m, &id);
        push_locked(f, id, s);
    }
    pthread_mutex_unlock(&f->mu);
    return id;
}

int64_t ftg_add_raw(ftg *f, const char *payload) {
    pthread_mutex_lock(&f->mu);
    int64_t id = f->next_id++;
    size_t n = strlen(payload) + 64;
    char *s = malloc(n);
    snprintf(s, n, "{\"update_id\":%lld,%s}", (long long)id, payload);
    push_locked(f, id, s);
    pthread_mutex_unlock(&f->mu);
    return id;
}

int64_t ftg_add_callback(ftg *f, int64_t chat_id, int64_t user_id, int64_t message_id,
                         const char *data) {
    cJSON *cq = cJSON_CreateObject();
    pthread_mutex_lock(&f->mu);
    int64_t id = f->next_id;
    pthread_mutex_unlock(&f->mu);
    char num[48];
    snprintf(num, sizeof num, "cq%lld", (long long)id);
    cJSON_AddStringToObject(cq, "id", num);
    cJSON *from = cJSON_AddObjectToObject(cq, "from");
    snprintf(num, sizeof num, "%lld", (long long)user_id);
    cJSON_AddRawToObject(from, "id", num);
    cJSON_AddBoolToObject(from, "is_bot", 0);
    cJSON_AddStringToObject(from, "first_name", "Tester");
    cJSON *m = cJSON_AddObjectToObject(cq, "message");
    snprintf(num, sizeof num, "%lld", (long long)message_id);
    cJSON_AddRawToObject(m, "message_id", num);
    cJSON *chat = cJSON_AddObjectToObject(m, "chat");
    snprintf(num, sizeof num, "%lld", (long long)chat_id);
    cJSON_AddRawToObject(chat, "id", num);
    cJSON_AddStringToObject(chat, "type", chat_id > 0 ? "private" : "supergroup");
    cJSON_AddNumberToObject(m, "date", 1700000000);
    cJSON_AddStringToObject(m, "text", "a reply with buttons");
    cJSON_AddStringToObject(cq, "chat_instance", "42");
    if (data) cJSON_AddStringToObject(cq, "data", data);
    char *js = cJSON_PrintUnformatted(cq);
    cJSON_Delete(cq);
    size_t n = strlen(js) + 32;
    char *payload = malloc(n);
    snprintf(payload, n, "\"callback_query\":%s", js);
    free(js);
    int64_t got = ftg_add_raw(f, payload);
    free(payload);
    return got;
}

int64_t ftg_add_reply(ftg *f, int64_t chat_id, int64_t quoted_id, const char *text) {
    ftg_msg m = {.chat_id = chat_id, .text = text, .reply_to_message_id = quoted_id};
    return ftg_add_message(f, &m);
}

/* callback_data of the button labelled `label` in a reply_markup (malloc),
 * or NULL. */
static char *button_of(const char *markup, const char *label) {
    cJSON *mk = markup ? cJSON_Parse(markup) : NULL;
    char *data = NULL;
    const cJSON *row, *b;
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(mk, "inline_keyboard")) {
        cJSON_ArrayForEach(b, row) {
            const char *t = get_str(b, "text"), *d = get_str(b, "callback_data");
            if (!data && t && d && !strcmp(t, label)) data = strdup(d);
        }
    }
    cJSON_Delete(mk);
    return data;
}

int64_t ftg_press_button(ftg *f, int64_t chat_id, int64_t user_id, int64_t message_id,
                         const char *label) {
    char *data = NULL;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nrecs && !data; i++) {
        const ftg_rec *r = &f->recs[i];
        if (r->status == 200 && r->chat_id == chat_id && r->message_id == message_id &&
            !strcmp(r->method, "sendMessage"))
            data = button_of(r->reply_markup, label);
    }
    pthread_mutex_unlock(&f->mu);
    if (!data) return -1;
    int64_t id = ftg_add_callback(f, chat_id, user_id, message_id, data);
    free(data);
    return id;
}

void ftg_add_with_id(ftg *f, const char *id_text, const char *payload) {
    pthread_mutex_lock(&f->mu);
    size_t n = strlen(payload) + strlen(id_text) + 32;
    char *s = malloc(n);
    snprintf(s, n, "{\"update_id\":%s,%s}", id_text, payload);
    /* Its queue position is what matters; the id stored is only used for
     * offset confirmation, where an out-of-range id is never confirmed. */
    push_locked(f, INT64_MAX, s);
    pthread_mutex_unlock(&f->mu);
}

char *ftg_build_update(ftg *f, const ftg_msg *m, int64_t *update_id) {
    pthread_mutex_lock(&f->mu);
    char *s = build_locked(f, m, update_id);
    pthread_mutex_unlock(&f->mu);
    return s;
}

void ftg_set_next_update_id(ftg *f, int64_t id) {
    pthread_mutex_lock(&f->mu);
    f->next_id = id;
    pthread_mutex_unlock(&f->mu);
}

size_t ftg_unconfirmed(ftg *f) {
    pthread_mutex_lock(&f->mu);
    size_t n = f->nq;
    pthread_mutex_unlock(&f->mu);
    return n;
}

long long ftg_last_handout_us(ftg *f) {
    pthread_mutex_lock(&f->mu);
    long long v = f->out_us;
    pthread_mutex_unlock(&f->mu);
    return v;
}

int64_t ftg_confirmed_offset(ftg *f) {
    pthread_mutex_lock(&f->mu);
    int64_t v = f->confirmed;
    pthread_mutex_unlock(&f->mu);
    return v;
}

int ftg_poll_overlaps(ftg *f) {
    pthread_mutex_lock(&f->mu);
    int v = f->overlaps;
    pthread_mutex_unlock(&f->mu);
    return v;
}

int ftg_polls_active(ftg *f) {
    pthread_mutex_lock(&f->mu);
    int v = f->polls;
    pthread_mutex_unlock(&f->mu);
    return v;
}

static int match(const ftg_rec *r, const char *method, int ok_only) {
    return (!method || !strcasecmp(r->method, method)) && (!ok_only || r->status == 200);
}

size_t ftg_records(ftg *f, const char *method, int ok_only, ftg_rec **out) {
    pthread_mutex_lock(&f->mu);
    size_t n = 0;
    for (size_t i = 0; i < f->nrecs; i++)
        n += match(&f->recs[i], method, ok_only);
    ftg_rec *v = calloc(n ? n : 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < f->nrecs; i++) {
        const ftg_rec *r = &f->recs[i];
        if (!match(r, method, ok_only)) continue;
        v[k] = *r;
        v[k].text = r->text ? strdup(r->text) : NULL;
        v[k].parse_mode = r->parse_mode ? strdup(r->parse_mode) : NULL;
        v[k].entities = r->entities ? strdup(r->entities) : NULL;
        v[k].body = r->body ? strdup(r->body) : NULL;
        v[k].media = r->media ? strdup(r->media) : NULL;
        v[k].parts = r->nparts ? calloc(r->nparts, sizeof *v[k].parts) : NULL;
        for (size_t j = 0; j < r->nparts; j++) {
            v[k].parts[j] = r->parts[j];
            v[k].parts[j].data = malloc(r->parts[j].len + 1);
            memcpy(v[k].parts[j].data, r->parts[j].data, r->parts[j].len);
        }
        v[k].reply_markup = r->reply_markup ? strdup(r->reply_markup) : NULL;
        k++;
    }
    pthread_mutex_unlock(&f->mu);
    *out = v;
    return n;
}

void ftg_recs_free(ftg_rec *r, size_t n) {
    for (size_t i = 0; r && i < n; i++) {
        free(r[i].text);
        free(r[i].parse_mode);
        free(r[i].entities);
        free(r[i].body);
        free(r[i].media);
        for (size_t j = 0; j < r[i].nparts; j++)
            free(r[i].parts[j].data);
        free(r[i].parts);
        free(r[i].reply_markup);
    }
    free(r);
}

ftg_rec *ftg_wait_sent(ftg *f, int64_t chat, size_t nth, int timeout_ms) {
    long long end = mono_ms() + timeout_ms;
    for (;;) {
        ftg_rec *r;
        size_t n = ftg_records(f, "sendMessage", 1, &r), k = 0;
        for (size_t i = 0; i < n; i++) {
            if (r[i].chat_id != chat || k++ != nth) continue;
            ftg_rec *one = calloc(1, sizeof *one);
            *one = r[i];
            memset(&r[i], 0, sizeof r[i]); /* ownership moves to one */
            ftg_recs_free(r, n);
            return one;
        }
        ftg_recs_free(r, n);
        if (mono_ms() >= end) return NULL;
        usleep(20000);
    }
}

size_t ftg_count(ftg *f, const char *method, int ok_only) {
    const char *key = method ? method : "*"; /* no method is called "*" */
    pthread_mutex_lock(&f->mu);
    size_t slot = 0, n = 0, from = 0;
    for (; slot < 8 && f->counted[slot].used; slot++)
        if (f->counted[slot].ok_only == ok_only && !strcmp(f->counted[slot].method, key)) break;
    if (slot < 8 && f->counted[slot].used) {
        from = f->counted[slot].upto;
        n = f->counted[slot].count;
    }
    for (size_t i = from; i < f->nrecs; i++)
        n += match(&f->recs[i], method, ok_only);
    if (slot < 8 && strlen(key) < sizeof f->counted[slot].method) {
        snprintf(f->counted[slot].method, sizeof f->counted[slot].method, "%s", key);
        f->counted[slot].ok_only = ok_only;
        f->counted[slot].used = 1;
        f->counted[slot].upto = f->nrecs;
        f->counted[slot].count = n;
    }
    pthread_mutex_unlock(&f->mu);
    return n;
}

size_t ftg_wait_count(ftg *f, const char *method, size_t n, int timeout_ms) {
    long long end = mono_ms() + timeout_ms;
    size_t have;
    while ((have = ftg_count(f, method, 1)) < n && mono_ms() < end)
        usleep(5000);
    return have;
}

void ftg_tally_answers(ftg *f, int64_t base, int chats, int per_chat, const char *partial,
                       ftg_tally *t) {
    memset(t, 0, sizeof *t);
    t->order_ok = 1;
    unsigned char *seen = calloc((size_t)chats * (size_t)per_chat, 1);
    int *next = calloc((size_t)chats, sizeof *next);
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nrecs; i++) {
        const ftg_rec *r = &f->recs[i];
        if (r->status != 200 || (strcasecmp(r->method, "sendMessage") &&
                                 (!partial || strcasecmp(r->method, "editMessageText"))))
            continue;
        int c, k;
        if (partial && r->text && !strcmp(r->text, partial)) {
            t->partials++;
            continue;
        }
        if (!r->text || sscanf(r->text, "echo: c%d-m%d", &c, &k) != 2 || c < 0 || c >= chats ||
            k < 0 || k >= per_chat || r->chat_id != base + c) {
            t->foreign++;
            continue;
        }
        if (seen[c * per_chat + k]) {
            t->duplicates++;
            continue;
        }
        seen[c * per_chat + k] = 1;
        t->answered++;
        if (k != next[c]) t->order_ok = 0;
        next[c] = k + 1;
    }
    pthread_mutex_unlock(&f->mu);
    free(next);
    free(seen);
}

size_t ftg_count_text(ftg *f, const char *text) {
    pthread_mutex_lock(&f->mu);
    size_t n = 0;
    for (size_t i = 0; i < f->nrecs; i++)
        n += f->recs[i].status == 200 && f->recs[i].text && !strcmp(f->recs[i].text, text);
    pthread_mutex_unlock(&f->mu);
    return n;
}

void ftg_tally_echoes(ftg *f, int64_t base, int chats, int per_chat, ftg_tally *t) {
    ftg_tally_answers(f, base, chats, per_chat, NULL, t);
}

int ftg_wait_echoes(ftg *f, int64_t base, int chats, int per_chat, int n, int timeout_ms) {
    long long end = mono_ms() + timeout_ms;
    ftg_tally t;
    for (;;) {
        ftg_tally_echoes(f, base, chats, per_chat, &t);
        if (t.answered >= n || mono_ms() >= end) return t.answered;
        usleep(50000);
    }
}

void ftg_webhook_info(ftg *f, char *url, size_t un, char *secret, size_t sn) {
    pthread_mutex_lock(&f->mu);
    if (url) snprintf(url, un, "%s", f->webhook_url);
    if (secret) snprintf(secret, sn, "%s", f->webhook_secret);
    pthread_mutex_unlock(&f->mu);
}

void ftg_add_file(ftg *f, const char *file_id, const void *data, size_t len,
                  long long claimed_size) {
    pthread_mutex_lock(&f->mu);
    f->files = realloc(f->files, (f->nfiles + 1) * sizeof *f->files);
    ffile *x = &f->files[f->nfiles++];
    memset(x, 0, sizeof *x);
    snprintf(x->id, sizeof x->id, "%s", file_id);
    x->data = malloc(len + 1);
    memcpy(x->data, data, len);
    x->len = len;
    x->claimed = claimed_size;
    pthread_mutex_unlock(&f->mu);
}

size_t ftg_bytes_served(ftg *f) {
    pthread_mutex_lock(&f->mu);
    size_t n = f->bytes_served;
    pthread_mutex_unlock(&f->mu);
    return n;
}
