/*
 * Files in: photos, documents, voice notes, audio, video, video notes,
 * stickers and animations are fetched (getFile, then the download from
 * <api_base>/file/bot<token>/<file_path>) and handed to the core as
 * attachments of the message, the caption as its text.
 *
 * Downloads run on the fetcher thread (tg_fetch_loop in telegram_queue.c)
 * through tg_media_take(), outside in_mu, and the file waits on its queued
 * item. Until it is there tg_media_ready() says no and the intake holds
 * back that chat only (telegram_queue.c); other chats go on. A download
 * that fails transiently is tried again with the usual back-off; what
 * cannot be handled (media off, too large, an unsupported kind, a file
 * Telegram will not give) gets the unsupported_notice reply, a log line
 * and a count. With a shared store there is no fetcher: files are fetched
 * inline when the update is submitted, as one claimed chat at a time.
 *
 * Albums: parts sharing a media_group_id arrive as separate updates. The
 * first part waits up to album_wait_ms for the others (holding back its
 * chat), then goes to the core as one message with every part's file; the
 * other parts are marked absorbed and skipped when the intake reaches
 * them, after that submit. A crash before then leaves all parts in the
 * journal, and the album is collected again.
 *
 * The file URL holds the bot token: it is built in a local buffer for
 * libcurl only, never logged, stored or handed on (attachments carry the
 * bytes, url stays NULL), and libcurl's error texts do not contain it.
 */
#include "telegram.h"
#include "telegram_attach.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALBUM_MAX TG_ALBUM_MAX

/* With a shared store the files are fetched inline, when the update is
 * submitted: a part's file waits here until its message is. */
typedef struct fetched {
    int64_t seq, tg_id; /* tg_id 0 = free slot */
    tg_file f;
} fetched;

struct tg_media_state {
    int64_t head_seq; /* the update being worked on inline */
    int64_t first_ms; /* when it reached the head */
    int attempts;
    int64_t retry_at; /* monotonic ms of the next download attempt */
    fetched cache[ALBUM_MAX];
};

rd_status tg_media_config(tg *t, rd_error *err) {
    const rd_host *h = t->h;
    tg_media_cfg *c = &t->c.media;
    const tg_keys *k = &t->c.k; /* bound by read_config() */
    c->on = k->media;
    c->max_bytes = tg_clamp(k->max_media_bytes, 1, TG_FILE_SIZE_MAX);
    c->album_wait_ms = k->album_wait_ms;
    const char *n = k->unsupported_notice;
    c->notice = strdup(n && *n ? n : "Sorry, I can't take this kind of message.");
    t->media = calloc(1, sizeof *t->media);
    if (!c->notice || !t->media) {
        h->error(err, RD_E_INTERNAL, "fatal", "out of memory");
        return RD_E_INTERNAL;
    }
    t->media->head_seq = -1;
    return RD_OK;
}

void tg_media_metrics(tg *t) {
    static const char *const l_reason[] = {"reason", NULL};
    static const char *const l_kind[] = {"kind", NULL};
    t->m_media_refused =
        t->h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_media_refused_total",
                     "Files answered with unsupported_notice instead of being passed on, by "
                     "reason (media_off, too_large, unsupported, invalid, unavailable, "
                     "download_failed)",
                     l_reason, NULL, 0);
    t->m_media_in =
        t->h->metric(t->ctx, RD_METRIC_COUNTER, "routerd_telegram_media_received_total",
                     "Files fetched from Telegram and passed on, by kind", l_kind, NULL, 0);
}

static void cache_clear(struct tg_media_state *ms) {
    for (size_t i = 0; i < ALBUM_MAX; i++) {
        free(ms->cache[i].f.data);
        memset(&ms->cache[i], 0, sizeof ms->cache[i]);
    }
}

void tg_media_free(tg *t) {
    if (t->media) cache_clear(t->media);
    free(t->c.media.notice);
    t->c.media.notice = NULL;
    free(t->media);
    t->media = NULL;
}

/* ------------------------------------------------------------------------ */
/* Download                                                                  */

typedef enum { DL_OK = 0, DL_RETRY, DL_REFUSE } dl_res;

typedef struct dl_buf {
    unsigned char *p;
    size_t len, cap;
    int64_t max;
    int over; /* the server sent more than max */
} dl_buf;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud) {
    dl_buf *b = ud;
    size_t n = size * nmemb;
    if ((int64_t)(b->len + n) > b->max) {
        b->over = 1;
        return 0; /* ends the transfer: the cap holds whatever the headers said */
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        while (cap < b->len + n)
            cap *= 2;
        if ((int64_t)cap > b->max) cap = (size_t)b->max;
        unsigned char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, ptr, n);
    b->len += n;
    return n;
}

static int on_xfer(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)dn, (void)ut, (void)un;
    tg *t = ud;
    /* quiesce() must not wait for a download: the update stays journaled. */
    return atomic_load(&t->closing) || atomic_load(&t->quiescing) ? 1 : 0;
}

/* Paths as Telegram gives them ("photos/file_1.jpg"): relative, no "..". */
static int file_path_ok(const char *s) {
    return tg_chars_ok(s, 1, 512, "_-./") && s[0] != '/' && !strstr(s, "..");
}

/* getFile then the download, at most max bytes. On DL_REFUSE *reason is a
 * metric label; detail says more for the log. */
static dl_res fetch(tg *t, const char *file_id, dl_buf *out, const char **reason, char *detail,
                    size_t dn) {
    int64_t max = t->c.media.max_bytes;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file_id", file_id);
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!body) return DL_RETRY;
    tg_call call;
    tg_api_call(t, "getFile", body, 0, tg_now(t) + t->c.request_timeout_ms, &call);
    free(body);
    if (call.cls != TG_C_OK) {
        snprintf(detail, dn, "getFile: %.300s", call.detail);
        dl_res r = DL_RETRY;
        if (call.cls == TG_C_PERMANENT) {
            *reason = tg_desc_has(&call, "too big") ? "too_large" : "unavailable";
            r = DL_REFUSE;
        }
        tg_call_free(&call);
        return r;
    }
    const cJSON *res = call.resp.result;
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(res, "file_path");
    int64_t size = 0;
    char path[520];
    int size_ok = !cJSON_GetObjectItemCaseSensitive(res, "file_size") ||
                  (tg_json_i64(res, "file_size", &size) && size >= 0 && size <= TG_FILE_SIZE_MAX);
    if (!cJSON_IsString(fp) || !file_path_ok(fp->valuestring) || !size_ok) {
        snprintf(detail, dn, "getFile: no usable file_path or file_size in the answer");
        *reason = "invalid";
        tg_call_free(&call);
        return DL_REFUSE;
    }
    snprintf(path, sizeof path, "%s", fp->valuestring);
    tg_call_free(&call);
    if (size > max) {
        snprintf(detail, dn, "getFile: %lld bytes, over max_media_bytes %lld", (long long)size,
                 (long long)max);
        *reason = "too_large";
        return DL_REFUSE;
    }

    /* The URL carries the token: it lives in this buffer and libcurl only. */
    size_t ul = strlen(t->c.api_base) + strlen(t->c.token) + strlen(path) + 16;
    char *url = malloc(ul);
    CURL *c = tg_easy_get(t);
    if (!url || !c) {
        free(url);
        tg_easy_put(t, c);
        snprintf(detail, dn, "download: out of memory");
        return DL_RETRY;
    }
    snprintf(url, ul, "%s/file/bot%s/%s", t->c.api_base, t->c.token, path);
    memset(out, 0, sizeof *out);
    out->max = max;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    if (t->c.ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, t->c.ca_file);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
    /* Large files take a while: give up on a stalled transfer, not a slow one. */
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(t->c.request_timeout_ms < 10000 ? t->c.request_timeout_ms : 10000));
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)(t->c.request_timeout_ms / 1000));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 600000L);
    CURLcode cc = curl_easy_perform(c);
    long http = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
    /* The handle goes back to the pool: no trace of the URL stays in it. */
    curl_easy_reset(c);
    tg_easy_put(t, c);
    memset(url, 0, ul);
    free(url);
    if (out->over || cc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(detail, dn, "download: over max_media_bytes %lld; cut", (long long)max);
        *reason = "too_large";
        return DL_REFUSE;
    }
    if (cc != CURLE_OK) {
        snprintf(detail, dn, "download: %s", curl_easy_strerror(cc));
        return DL_RETRY;
    }
    if (http == 200) return DL_OK;
    snprintf(detail, dn, "download: HTTP %ld", http);
    if (http == 429 || http == 408 || http >= 500) return DL_RETRY;
    *reason = "unavailable";
    return DL_REFUSE;
}

/* ------------------------------------------------------------------------ */
/* Submit                                                                    */

typedef struct part {
    tg_item *it;
    rd_attachment a;
    tg_file *f;
} part;

/* The album parts queued behind `it` (same chat, same media_group_id),
 * stopping at the chat's first other update so its order holds. */
static size_t collect(tg *t, tg_item *it, part *p) {
    size_t n = 0;
    p[n++].it = it;
    const char *g = it->u.media->group;
    if (!g[0] || t->shared) return n;
    for (tg_item *x = it->next; x && n < ALBUM_MAX; x = x->next) {
        if (x->state != TG_ITEM_READY || x->u.chat_id != it->u.chat_id) continue;
        if (x->u.kind != it->u.kind || !x->u.media || strcmp(x->u.media->group, g)) break;
        p[n++].it = x;
    }
    return n;
}

/* Whether an update of this album may still be on its way: one is being
 * journaled, or the window since the first part is open. */
static int album_open(tg *t, tg_item *it, int64_t now) {
    if (!it->u.media->group[0] || t->shared) return 0;
    if (now - it->seen_ms < t->c.media.album_wait_ms) return 1;
    for (tg_item *x = it->next; x; x = x->next)
        if (x->state == TG_ITEM_RESERVED) return 1;
    return 0;
}

static void notice(tg *t, int64_t chat, const tg_item *it) {
    tg_reply r = {.chat = chat,
                  .thread = it->u.thread_id,
                  .reply_to = it->u.message_id,
                  .text = t->c.media.notice,
                  .len = strlen(t->c.media.notice),
                  .literal = 1,
                  .deadline = tg_now(t) + t->c.send_budget_ms};
    rd_error e = {0};
    /* The outbox stores it before the update is marked handled, so a crash
     * does not lose it; without an outbox it is sent at once. */
    if (tg_outbox_put(t, &r, 0, &e) == RD_OK) return;
    size_t done = 0;
    if (tg_deliver(t, &r, &done, &e) != RD_OK)
        t->h->log(t->ctx, RD_LOG_WARN, "update %lld: the notice was not delivered: %s",
                  (long long)it->tg_id, e.msg);
}

/* The core's meta with what it should know of the files. */
static char *meta_with_files(const rd_inbound *in, const part *p, size_t n) {
    cJSON *o = in->meta ? cJSON_Parse(in->meta) : NULL;
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        o = cJSON_CreateObject();
    }
    cJSON *tgo = cJSON_GetObjectItemCaseSensitive(o, "telegram");
    if (!cJSON_IsObject(tgo)) tgo = cJSON_AddObjectToObject(o, "telegram");
    const tg_media *m0 = p[0].it->u.media;
    if (m0->group[0]) cJSON_AddStringToObject(tgo, "media_group_id", m0->group);
    cJSON *files = cJSON_AddArrayToObject(tgo, "files");
    for (size_t i = 0; i < n; i++) {
        const tg_media *m = p[i].it->u.media;
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "kind", m->what);
        if (p[i].f->refused) cJSON_AddStringToObject(f, "refused", p[i].f->refused);
        if (m->width) cJSON_AddNumberToObject(f, "width", (double)m->width);
        if (m->height) cJSON_AddNumberToObject(f, "height", (double)m->height);
        if (m->duration) cJSON_AddNumberToObject(f, "duration", (double)m->duration);
        cJSON_AddItemToArray(files, f);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Fetches the file of item `it` into f (bytes, or the reason it is
 * refused); 0 done, -1 try again later. */
static int take(tg *t, const tg_item *it, tg_file *f, int last_try) {
    const tg_media *m = it->u.media;
    int64_t max = t->c.media.max_bytes;
    const char *file_id = m->file_id, *reason = NULL;
    char detail[320] = "";
    dl_buf buf = {0};
    if (m->kind == TG_MK_UNSUPPORTED) {
        reason = "unsupported";
    } else if (!t->c.media.on) {
        reason = "media_off";
    } else if (m->invalid) {
        reason = "invalid";
    } else if (m->kind == TG_MK_PHOTO) {
        int i = tg_media_pick_photo(m, max);
        if (i < 0)
            reason = "too_large";
        else
            file_id = m->photo[i].file_id;
    } else if (m->file_size > max) {
        reason = "too_large";
    }
    if (!reason) {
        dl_res r = fetch(t, file_id, &buf, &reason, detail, sizeof detail);
        if (r == DL_RETRY && !last_try) {
            t->h->log(t->ctx, RD_LOG_WARN, "update %lld: %s; trying again", (long long)it->tg_id,
                      detail);
            free(buf.p);
            return -1;
        }
        if (r == DL_RETRY) reason = "download_failed";
    }
    f->state = TG_F_DONE;
    if (reason) {
        free(buf.p);
        f->refused = reason;
        t->h->log(t->ctx, RD_LOG_WARN, "update %lld: %s not passed on (%s)%s%s",
                  (long long)it->tg_id, m->what, reason, detail[0] ? ": " : "", detail);
        tg_count(t, t->m_media_refused, reason, NULL, 1);
        return 0;
    }
    f->data = buf.p;
    f->len = buf.len;
    tg_count(t, t->m_media_in, tg_media_kind_name(m->kind), NULL, 1);
    return 0;
}

int tg_media_take(tg *t, const tg_item *it, tg_file *f) {
    int last_try = tg_now(t) - f->first_ms >= t->c.send_budget_ms;
    return take(t, it, f, last_try);
}

/* The cached fetch of it, or a free slot for it (NULL: none left). */
static tg_file *slot_of(struct tg_media_state *ms, const tg_item *it, int *have) {
    fetched *free_slot = NULL;
    for (size_t i = 0; i < ALBUM_MAX; i++) {
        fetched *f = &ms->cache[i];
        if (f->tg_id && f->seq == it->seq && f->tg_id == it->tg_id + 1) {
            *have = f->f.state == TG_F_DONE; /* else a fetch to try again */
            return &f->f;
        }
        if (!f->tg_id && !free_slot) free_slot = f;
    }
    *have = 0;
    if (!free_slot) return NULL;
    free_slot->seq = it->seq;
    free_slot->tg_id = it->tg_id + 1; /* nonzero: the slot is used */
    return &free_slot->f;
}

int tg_media_ready(tg *t, tg_item *it) {
    if (t->shared) return 1;
    int64_t now = tg_now(t);
    if (!it->seen_ms) it->seen_ms = now;
    part p[ALBUM_MAX];
    size_t n = collect(t, it, p);
    /* Ten parts is a whole album: no need to wait for more. */
    if (n < ALBUM_MAX && album_open(t, it, now)) {
        t->album_hold = 1;
        return 0;
    }
    int ready = 1;
    for (size_t i = 0; i < n; i++) {
        /* A part routed on its own might be skipped (no caption in a
         * group): the fetcher takes it for the album all the same. */
        p[i].it->file.wanted = 1;
        ready &= p[i].it->file.state == TG_F_DONE;
    }
    if (!ready) pthread_cond_broadcast(&t->in_cv); /* the fetch thread takes them */
    return ready;
}

rd_status tg_media_submit(tg *t, tg_item *it, rd_inbound *in) {
    struct tg_media_state *ms = t->media;
    int64_t now = tg_now(t);
    if (ms->head_seq != it->seq) {
        cache_clear(ms);
        ms->head_seq = it->seq;
        ms->first_ms = now;
        ms->attempts = 0;
        ms->retry_at = 0;
    }
    part p[ALBUM_MAX];
    memset(p, 0, sizeof p);
    size_t n = collect(t, it, p);
    int last_try = now - ms->first_ms >= t->c.send_budget_ms;
    for (size_t i = 0; i < n; i++) {
        int have;
        if (p[i].it->file.state == TG_F_DONE) { /* fetched ahead (tg_fetch_loop) */
            p[i].f = &p[i].it->file;
            continue;
        }
        if (now < ms->retry_at) return RD_E_FULL;
        p[i].f = slot_of(ms, p[i].it, &have);
        if (have) continue;
        if (!p[i].f || take(t, p[i].it, p[i].f, last_try) != 0) {
            ms->retry_at = now + tg_backoff(t, ms->attempts++);
            return RD_E_FULL;
        }
    }
    const rd_attachment *atts[ALBUM_MAX];
    size_t na = 0, refused = 0;
    for (size_t i = 0; i < n; i++) {
        const tg_media *m = p[i].it->u.media;
        if (p[i].f->refused) {
            refused++;
            continue;
        }
        p[i].a = (rd_attachment){.size = sizeof p[i].a,
                                 .kind = tg_media_kind_name(m->kind),
                                 .mime = m->mime,
                                 .name = m->name,
                                 .data = p[i].f->data ? (const void *)p[i].f->data : "",
                                 .len = p[i].f->len};
        atts[na++] = &p[i].a;
    }
    /* An album's caption sits on one of its parts, not always the first. */
    const char *text = in->text;
    size_t len = in->text_len;
    for (size_t i = 1; i < n && tg_is_blank(text, len); i++) {
        if (!p[i].it->u.text) continue;
        text = p[i].it->u.text;
        len = p[i].it->u.text_len;
    }
    rd_status st = RD_OK;
    if (na == 0 && tg_is_blank(text, len)) {
        /* Nothing left to hand on: the notice is the answer, stored
         * before the update counts as handled. */
        notice(t, in->chat_id, it);
        t->h->skip(t->ctx, it->seq, "media_refused");
        tg_count(t, t->m_ignored, "media_refused", NULL, 1);
    } else {
        char *meta = meta_with_files(in, p, n);
        rd_inbound m = *in;
        m.text = text;
        m.text_len = len;
        m.meta = meta ? meta : in->meta;
        m.attachments = na ? atts : NULL;
        m.nattachments = na;
        st = t->h->submit(t->ctx, &m);
        free(meta);
    }
    if ((st == RD_OK || st == RD_E_DUPLICATE) && n > 1) {
        /* The other parts are skipped at the head, answered with it. */
        int64_t parts[ALBUM_MAX - 1];
        for (size_t i = 1; i < n; i++) {
            p[i].it->state = TG_ITEM_ABSORBED;
            parts[i - 1] = p[i].it->seq;
        }
        tg_replied_album(t, it->seq, parts, n - 1);
    }
    if (st == RD_E_FULL) return st; /* the fetched files wait in the cache */
    if (refused && (na || !tg_is_blank(text, len))) notice(t, in->chat_id, it);
    cache_clear(ms);
    ms->head_seq = -1;
    return st;
}
