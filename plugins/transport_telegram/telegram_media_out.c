/*
 * Files out: a reply's attachments go by kind and MIME type to sendPhoto,
 * sendDocument, sendVoice, sendAudio, sendVideo or sendAnimation, uploaded
 * as multipart/form-data (bytes) or passed as the URL string. Several that
 * Telegram can show as one album (photos and videos, or all documents, or
 * all audio) go in one sendMediaGroup per ten. The reply text becomes the
 * caption of the first file when it fits one caption (1024 UTF-16 units
 * after formatting); otherwise it is sent first as a message.
 *
 * Retries, 429 waits and pacing are those of text replies, within
 * send_retry_budget_s. The outbox stores text only: file bytes (up to the
 * core's max_attachment_bytes each) are not written to the state store.
 * When Telegram does not take a file within the budget, or the chat has
 * replies waiting in the outbox, the text goes through the outbox with a
 * line saying how many files could not be delivered; the files are dropped,
 * logged and counted (send_failures_total{reason="file_not_kept"}).
 */
#include "telegram.h"
#include "telegram_attach.h"
#include "telegram_format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Telegram's caption limit, UTF-16 units after entity parsing. */
#define CAPTION_UNITS 1024
#define GROUP_MAX 10

typedef struct form_args {
    int64_t chat, thread, reply_to;
    const char *caption, *ents; /* ents: JSON array text */
    const rd_attachment *const *a;
    const tg_out_kind *k;
    size_t n;
    int group; /* sendMediaGroup */
} form_args;

static void add_field(curl_mime *m, const char *name, const char *value) {
    curl_mimepart *p = curl_mime_addpart(m);
    curl_mime_name(p, name);
    curl_mime_data(p, value, CURL_ZERO_TERMINATED);
}

static void add_i64_field(curl_mime *m, const char *name, int64_t v) {
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)v);
    add_field(m, name, num);
}

/* A file part, or the URL as a plain field. */
static void add_file(curl_mime *m, const char *name, const rd_attachment *a) {
    curl_mimepart *p = curl_mime_addpart(m);
    curl_mime_name(p, name);
    if (!a->data) {
        curl_mime_data(p, a->url, CURL_ZERO_TERMINATED);
        return;
    }
    curl_mime_data(p, a->data, a->len);
    curl_mime_filename(p, a->name && *a->name ? a->name : "file");
    curl_mime_type(p, a->mime && tg_mime_ok(a->mime) ? a->mime : "application/octet-stream");
}

static curl_mime *build_form(void *arg, CURL *c) {
    form_args *f = arg;
    curl_mime *m = curl_mime_init(c);
    if (!m) return NULL;
    add_i64_field(m, "chat_id", f->chat);
    if (f->thread) add_i64_field(m, "message_thread_id", f->thread);
    if (f->reply_to) {
        char rp[96];
        snprintf(rp, sizeof rp, "{\"message_id\":%lld,\"allow_sending_without_reply\":true}",
                 (long long)f->reply_to);
        add_field(m, "reply_parameters", rp);
    }
    if (!f->group) {
        add_file(m, tg_out_field(f->k[0]), f->a[0]);
        if (f->caption) add_field(m, "caption", f->caption);
        if (f->caption && f->ents) add_field(m, "caption_entities", f->ents);
        return m;
    }
    cJSON *media = cJSON_CreateArray();
    for (size_t i = 0; i < f->n; i++) {
        cJSON *o = cJSON_CreateObject();
        char ref[48];
        snprintf(ref, sizeof ref, "attach://file%zu", i);
        cJSON_AddStringToObject(o, "type", tg_out_media_type(f->k[i]));
        cJSON_AddStringToObject(o, "media", f->a[i]->data ? ref : f->a[i]->url);
        if (i == 0 && f->caption) {
            cJSON_AddStringToObject(o, "caption", f->caption);
            if (f->ents) cJSON_AddRawToObject(o, "caption_entities", f->ents);
        }
        cJSON_AddItemToArray(media, o);
    }
    char *json = cJSON_PrintUnformatted(media);
    cJSON_Delete(media);
    add_field(m, "media", json ? json : "[]");
    free(json);
    for (size_t i = 0; i < f->n; i++) {
        if (!f->a[i]->data) continue;
        char name[32];
        snprintf(name, sizeof name, "file%zu", i);
        add_file(m, name, f->a[i]);
    }
    return m;
}

/* One upload with the fallbacks Telegram's 400s call for. */
static rd_status upload(tg *t, form_args *f, const char *cid, int64_t deadline, rd_error *err) {
    const char *method = f->group ? "sendMediaGroup" : tg_out_method(f->k[0]);
    int migrated = 0;
    for (int round = 0; round < 5; round++) {
        if (tg_pace(t, f->chat)) {
            t->h->error(err, RD_E_RETRY, "transient", "telegram %s: aborted at shutdown", method);
            return RD_E_RETRY;
        }
        tg_call call;
        tg_api_call_form(t, method, NULL, build_form, f, f->chat, deadline, &call);
        if (call.cls == TG_C_OK || call.cls == TG_C_UNPARSED) {
            tg_count(t, t->m_sent, method, NULL, 1);
            tg_call_free(&call);
            return RD_OK;
        }
        int retry = 0;
        if (call.cls == TG_C_PERMANENT) {
            if (call.parsed && call.resp.migrate_to && !migrated) {
                tg_mig_record(t, f->chat, call.resp.migrate_to, method);
                f->chat = call.resp.migrate_to;
                migrated = retry = 1;
            } else if (f->ents && (tg_desc_has(&call, "entit") || tg_desc_has(&call, "url"))) {
                f->ents = NULL, retry = 1;
            } else if (f->thread && tg_desc_has(&call, "thread not found")) {
                f->thread = 0, retry = 1;
            } else if (!f->group && f->k[0] == TG_OUT_PHOTO) {
                /* Not a photo Telegram can show (dimensions, format): a file. */
                t->h->log(t->ctx, RD_LOG_WARN, "%s: %s; sending it as a document", method,
                          call.detail);
                static const tg_out_kind doc = TG_OUT_DOCUMENT;
                f->k = &doc;
                method = tg_out_method(doc);
                retry = 1;
            }
        }
        if (retry) {
            tg_call_free(&call);
            continue;
        }
        rd_status st = call.cls == TG_C_PERMANENT ? RD_E_FATAL : RD_E_RETRY;
        tg_count(t, t->m_send_fail, st == RD_E_FATAL ? call.code : "retries_exhausted", NULL, 1);
        t->h->log(t->ctx, st == RD_E_FATAL ? RD_LOG_ERROR : RD_LOG_WARN, "%s failed%s%s: %s",
                  method, cid ? " for " : "", cid ? cid : "", call.detail);
        t->h->error(err, st, st == RD_E_FATAL ? "fatal" : "transient", "telegram %s: %s", method,
                    call.detail);
        tg_call_free(&call);
        return st;
    }
    t->h->error(err, RD_E_FATAL, "fatal", "telegram %s: refused", method);
    return RD_E_FATAL;
}

/* The text part of out as a reply to deliver or keep. */
static tg_reply text_reply(tg *t, const rd_outbound *out, const char *text, size_t len) {
    return (tg_reply){.chat = out->chat_id,
                      .thread = out->thread_id,
                      .reply_to = out->reply_to,
                      .edit_of = out->edit_of,
                      .text = text,
                      .len = len,
                      .literal = (out->flags & RD_OUT_NOTICE) || t->c.escape_replies,
                      .cid = out->correlation_id,
                      .deadline = tg_now(t) + t->c.send_budget_ms};
}

static void lost_files(tg *t, const rd_outbound *out, size_t lost) {
    tg_count(t, t->m_send_fail, "file_not_kept", NULL, (double)lost);
    t->h->log(t->ctx, RD_LOG_WARN,
              "%s%s: %zu file%s not delivered (Telegram refused for longer than the send budget, "
              "or replies wait in the outbox; files are not kept in the store)",
              out->correlation_id ? "reply " : "reply",
              out->correlation_id ? out->correlation_id : "", lost, lost == 1 ? "" : "s");
}

/* What is left when files cannot go now: the text, if not yet sent, and a
 * line saying how many files were lost, through the outbox. */
static rd_status keep_text(tg *t, const rd_outbound *out, const char *text, size_t len, size_t lost,
                           int after_refusal, rd_error *err) {
    lost_files(t, out, lost);
    char note[96];
    snprintf(note, sizeof note, "%s(%zu file%s could not be delivered.)", len ? "\n\n" : "", lost,
             lost == 1 ? "" : "s");
    size_t nl = strlen(note);
    char *all = malloc(len + nl + 1);
    if (!all) {
        t->h->error(err, RD_E_INTERNAL, "fatal", "out of memory");
        return RD_E_INTERNAL;
    }
    memcpy(all, text, len);
    memcpy(all + len, note, nl + 1);
    tg_reply r = text_reply(t, out, all, len + nl);
    r.edit_of = 0;
    rd_status st = tg_outbox_put(t, &r, after_refusal, err);
    free(all);
    return st;
}

rd_status tg_media_send(tg *t, const rd_outbound *out, int *text_rest, rd_error *err) {
    /* With choices the text goes last, through the text path that shows
     * them as buttons: only the files go here. */
    int files_only = RD_HAS(out, choices) && out->choices && out->choices[0];
    *text_rest = files_only;
    size_t len = 0;
    char *text = tg_utf8_sanitize(out->text ? out->text : "", out->text ? out->text_len : 0, &len);
    const rd_attachment **a = calloc(out->nattachments, sizeof *a);
    tg_out_kind *k = calloc(out->nattachments, sizeof *k);
    if (!text || !a || !k) {
        free(text), free(a), free(k);
        t->h->error(err, RD_E_INTERNAL, "fatal", "out of memory");
        return RD_E_INTERNAL;
    }
    size_t n = 0;
    for (size_t i = 0; i < out->nattachments; i++) {
        const rd_attachment *x = out->attachments[i];
        if (!x || !(x->data || (x->url && *x->url))) continue; /* nothing to send */
        a[n] = x;
        k[n++] = tg_out_kind_of(x->kind, x->mime, x->data ? x->len : 0);
    }
    int blank = files_only || tg_is_blank(text, len);
    rd_status st = RD_OK;
    if (!n && blank && !files_only) {
        st = RD_E_FATAL;
        t->h->error(err, st, "fatal", "telegram: a reply without text nor a usable file");
        goto done;
    }
    int64_t deadline = tg_now(t) + t->c.send_budget_ms;
    if (tg_outbox_has(t, out->chat_id)) {
        /* Behind replies waiting in the outbox: the chat keeps its order. */
        if (files_only)
            lost_files(t, out, n);
        else
            st = keep_text(t, out, text, blank ? 0 : len, n, 0, err);
        goto done;
    }
    /* The caption: the text when it fits one, formatted like a message. */
    tg_part *parts = NULL;
    size_t np = 0;
    int as_caption = 0;
    if (!blank && !out->edit_of && n) {
        np = tg_format(text, len, t->c.format_markdown && t->c.parse_mode == TG_PM_NONE,
                       CAPTION_UNITS, &parts);
        as_caption = np == 1;
    }
    int text_sent = blank;
    if (!blank && !as_caption) {
        tg_reply r = text_reply(t, out, text, len);
        r.deadline = deadline;
        size_t done = 0;
        st = tg_deliver(t, &r, &done, err);
        if (st == RD_E_RETRY) {
            tg_parts_free(parts, np);
            st = keep_text(t, out, text, len, n, 1, err);
            goto done;
        }
        text_sent = st == RD_OK;
    }
    char *ents = as_caption ? tg_entities_json(&parts[0]) : NULL;
    int64_t chat = tg_mig_forward(t, out->chat_id);
    int replied = text_sent && !blank;
    size_t delivered = 0;
    rd_status worst = RD_OK;
    int groupable = tg_out_groupable(k, n < GROUP_MAX ? n : GROUP_MAX) ||
                    (n > GROUP_MAX && tg_out_groupable(k, GROUP_MAX));
    for (size_t i = 0; i < n;) {
        size_t take = 1;
        if (groupable) {
            take = n - i < GROUP_MAX ? n - i : GROUP_MAX;
            if (take > 1 && !tg_out_groupable(k + i, take)) take = 1;
        }
        form_args f = {.chat = chat,
                       .thread = out->thread_id,
                       .reply_to = !replied && t->c.reply_to_message ? out->reply_to : 0,
                       .caption = i == 0 && as_caption ? parts[0].text : NULL,
                       .ents = i == 0 && as_caption ? ents : NULL,
                       .a = a + i,
                       .k = k + i,
                       .n = take,
                       .group = take > 1};
        rd_error e = {0};
        rd_status s = upload(t, &f, out->correlation_id, deadline, &e);
        chat = f.chat;
        if (s == RD_E_RETRY && files_only) {
            lost_files(t, out, n - i);
            break;
        }
        if (s == RD_E_RETRY) {
            /* Out of budget: the caption (if not delivered) and a note wait. */
            st = keep_text(t, out, i == 0 && as_caption ? text : "", i == 0 && as_caption ? len : 0,
                           n - i, 1, err);
            free(ents);
            tg_parts_free(parts, np);
            goto done;
        }
        if (s == RD_OK) {
            delivered += take;
            replied = 1;
        } else {
            worst = s;
            *err = e;
        }
        i += take;
    }
    free(ents);
    tg_parts_free(parts, np);
    /* Some files (or the text) went out: a refused file is logged and
     * counted, the reply as a whole is delivered. */
    st = delivered || (text_sent && !blank) ? RD_OK : worst != RD_OK ? worst : st;
    if (st == RD_OK || files_only) memset(err, 0, sizeof *err);
done:
    if (files_only)
        st = RD_OK; /* the text path reports the reply */
    else if (st == RD_OK || st == RD_E_FATAL)
        tg_replied_mark(t, out->chat_id, out->reply_to);
    free(text);
    free(a);
    free(k);
    return st;
}
