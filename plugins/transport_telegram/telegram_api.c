/* Bot API client: libcurl requests, classification, retries. */
#include "telegram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* getUpdates batches are cut at ~4 MiB; anything far larger is not the
 * Bot API talking. */
#define TG_MAX_BODY (64u << 20)

int tg_api_init(tg *t) {
    if (!t->share.ready) {
        curl_share_locked_init(&t->share);
        easy_pool_share(&t->pool, t->share.sh);
    }
    t->json_hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (t->json_hdr) t->json_hdr = curl_slist_append(t->json_hdr, "Expect:");
    t->multi = curl_multi_init();
    t->poll_easy = curl_easy_init();
    if (t->poll_easy && t->share.sh) curl_easy_setopt(t->poll_easy, CURLOPT_SHARE, t->share.sh);
    return t->json_hdr && t->multi && t->poll_easy ? 0 : -1;
}

void tg_api_cleanup(tg *t) {
    if (t->poll_easy) curl_easy_cleanup(t->poll_easy);
    t->poll_easy = NULL;
    if (t->multi) curl_multi_cleanup(t->multi);
    t->multi = NULL;
    curl_slist_free_all(t->json_hdr);
    t->json_hdr = NULL;
}

/* Handles are reused so connections stay alive between requests. */
CURL *tg_easy_get(tg *t) {
    return easy_pool_get(&t->pool);
}

void tg_easy_put(tg *t, CURL *c) {
    easy_pool_put(&t->pool, c);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
    tg_buf *b = ud;
    size_t n = size * nmemb;
    if (b->len + n + 1 > TG_MAX_BODY) return 0;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, ptr, n);
    b->len += n;
    b->p[b->len] = 0;
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud) {
    tg_call *out = ud;
    int64_t max_s = out->retry_after_max_s > 0 ? out->retry_after_max_s : 1;
    size_t n = size * nmemb;
    if (n > 12 && strncasecmp(ptr, "Retry-After:", 12) == 0) {
        char tmp[32];
        size_t m = n - 12 < sizeof tmp - 1 ? n - 12 : sizeof tmp - 1;
        memcpy(tmp, ptr + 12, m);
        tmp[m] = 0;
        long v = strtol(tmp, NULL, 10);
        if (v > 0) out->wait_ms = tg_secs_to_ms(v, max_s, NULL);
    }
    return n;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)dn, (void)ut, (void)un;
    tg *t = ud;
    return atomic_load(&t->closing) && !atomic_load(&t->final_call) ? 1 : 0;
}

void tg_easy_setup(tg *t, CURL *c, const char *method, const char *body, int64_t timeout_ms,
                   tg_buf *buf, tg_call *out) {
    out->retry_after_max_s = t->c.retry_after_max_s;
    char url[2048];
    snprintf(url, sizeof url, "%s%s", t->url_prefix, method);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, t->json_hdr);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "{}");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body ? body : "{}"));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, buf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : 1));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 10000 ? timeout_ms : 10000));
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    if (t->c.ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, t->c.ca_file);
    /* No User-Agent or Accept-Encoding: the answers are small JSON, and
     * libcurl 7.88 formats such header lines a byte at a time, twice
     * (about 300 instructions per byte, every request). */
}

void tg_classify(tg *t, const char *method, tg_buf *buf, tg_call *out) {
    out->parsed = 0;
    if (out->cc != CURLE_OK) {
        if (out->cc == CURLE_ABORTED_BY_CALLBACK) {
            out->cls = TG_C_ABORTED;
            snprintf(out->code, sizeof out->code, "aborted");
            snprintf(out->detail, sizeof out->detail, "aborted at shutdown");
            return;
        }
        out->cls = TG_C_TRANSIENT;
        snprintf(out->code, sizeof out->code, "network");
        snprintf(out->detail, sizeof out->detail, "%s", curl_easy_strerror(out->cc));
    } else if (tg_resp_parse(buf->p ? buf->p : "", buf->len, &out->resp) == 0) {
        out->parsed = 1;
        tg_resp *r = &out->resp;
        int64_t code = r->error_code ? r->error_code : out->http;
        if (r->ok) {
            out->cls = TG_C_OK;
            return;
        }
        snprintf(out->code, sizeof out->code, "%s", tg_code_label(code));
        snprintf(out->detail, sizeof out->detail, "%lld %s", (long long)code,
                 r->description[0] ? r->description : "(no description)");
        if (code == 429) {
            out->cls = TG_C_RETRY_AFTER;
            int clamped = 0;
            if (r->retry_after > 0)
                out->wait_ms = tg_secs_to_ms(r->retry_after, t->c.retry_after_max_s, &clamped);
            if (clamped || r->retry_after_raw != r->retry_after)
                t->h->log(t->ctx, RD_LOG_WARN,
                          "%s: retry_after %lld s is out of range; waiting %lld s instead", method,
                          (long long)r->retry_after_raw, (long long)(out->wait_ms / 1000));
            if (out->wait_ms <= 0) out->wait_ms = 1000;
        } else if (code >= 500 || code == 0) {
            out->cls = TG_C_TRANSIENT;
        } else if (code == 409) {
            out->cls = TG_C_CONFLICT;
        } else {
            out->cls = TG_C_PERMANENT;
        }
    } else if (out->http == 200) {
        out->cls = TG_C_UNPARSED;
        snprintf(out->code, sizeof out->code, "malformed");
        snprintf(out->detail, sizeof out->detail,
                 "HTTP 200 with a body that is not Bot API JSON "
                 "(%zu bytes)",
                 buf->len);
    } else {
        /* Proxy pages (502/504 HTML) and the like. */
        snprintf(out->code, sizeof out->code, "%s", tg_code_label(out->http));
        snprintf(out->detail, sizeof out->detail, "HTTP %ld with a non-JSON body", out->http);
        if (out->http == 429) {
            out->cls = TG_C_RETRY_AFTER;
            if (out->wait_ms <= 0) out->wait_ms = 1000;
        } else if (out->http >= 500 || out->http == 0 || out->http == 408) {
            out->cls = TG_C_TRANSIENT;
        } else if (out->http == 409) {
            out->cls = TG_C_CONFLICT;
        } else {
            out->cls = TG_C_PERMANENT;
        }
    }
    tg_count(t, t->m_api_err, method, out->code, 1);
}

static void api_once(tg *t, CURL *c, const char *method, const char *body, tg_form_fn form,
                     void *arg, int64_t timeout_ms, tg_call *out) {
    memset(out, 0, sizeof *out);
    tg_buf buf = {0};
    tg_easy_setup(t, c, method, body, timeout_ms, &buf, out);
    curl_mime *mime = NULL;
    if (form) {
        /* multipart/form-data: curl sets the type; keep only "Expect:". */
        mime = form(arg, c);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, t->json_hdr->next);
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    }
    int64_t t0 = tg_now(t);
    out->cc = mime || !form ? curl_easy_perform(c) : CURLE_OUT_OF_MEMORY;
    curl_easy_setopt(c, CURLOPT_MIMEPOST, NULL);
    curl_mime_free(mime);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->http);
    tg_observe(t, t->m_api_seconds, method, (double)(tg_now(t) - t0) / 1000.0);
    tg_classify(t, method, &buf, out);
    free(buf.p);
}

void tg_api_once(tg *t, CURL *c, const char *method, const char *body, int64_t timeout_ms,
                 tg_call *out) {
    api_once(t, c, method, body, NULL, NULL, timeout_ms, out);
}

void tg_call_free(tg_call *call) {
    if (call->parsed) tg_resp_free(&call->resp);
    call->parsed = 0;
}

void tg_api_call(tg *t, const char *method, const char *body, int64_t chat_id, int64_t deadline_ms,
                 tg_call *out) {
    tg_api_call_form(t, method, body, NULL, NULL, chat_id, deadline_ms, out);
}

void tg_api_call_form(tg *t, const char *method, const char *body, tg_form_fn form, void *arg,
                      int64_t chat_id, int64_t deadline_ms, tg_call *out) {
    CURL *c = tg_easy_get(t);
    if (!c) {
        memset(out, 0, sizeof *out);
        out->cls = TG_C_TRANSIENT;
        snprintf(out->detail, sizeof out->detail, "cannot create a curl handle");
        return;
    }
    for (int attempt = 0;; attempt++) {
        int64_t left = deadline_ms - tg_now(t);
        int64_t timeout = t->c.request_timeout_ms < left ? t->c.request_timeout_ms : left;
        if (timeout < 1000) timeout = 1000;
        api_once(t, c, method, body, form, arg, timeout, out);
        int64_t wait;
        const char *why;
        if (out->cls == TG_C_RETRY_AFTER) {
            wait = out->wait_ms;
            why = "429";
            if (chat_id) {
                pthread_mutex_lock(&t->out_mu);
                tg_throttle_hold(t->thr, chat_id, tg_now(t) + wait);
                pthread_mutex_unlock(&t->out_mu);
            }
        } else if (out->cls == TG_C_TRANSIENT) {
            wait = tg_backoff(t, attempt);
            why = out->cc != CURLE_OK ? "network" : "5xx";
        } else {
            break;
        }
        if (tg_now(t) + wait > deadline_ms) {
            /* No time for another try in this call. Whether that is the
             * end is the caller's decision (getMe is retried, a reply is
             * reported undelivered), so the caller logs it, with the count. */
            size_t dl = strlen(out->detail);
            if (dl + 48 < sizeof out->detail)
                snprintf(out->detail + dl, sizeof out->detail - dl,
                         " (retry budget spent after %d attempt%s)", attempt + 1,
                         attempt ? "s" : "");
            break;
        }
        t->h->log(t->ctx, out->cls == TG_C_RETRY_AFTER ? RD_LOG_INFO : RD_LOG_WARN,
                  "%s: %s; retrying in %.1f s", method, out->detail, (double)wait / 1000.0);
        tg_count(t, t->m_retries, why, NULL, 1);
        tg_call_free(out);
        if (tg_sleep(t, wait, &t->closing)) {
            out->cls = TG_C_ABORTED;
            snprintf(out->detail, sizeof out->detail, "aborted at shutdown");
            break;
        }
    }
    tg_easy_put(t, c);
}

int tg_desc_has(const tg_call *call, const char *needle) {
    return call->parsed && strcasestr(call->resp.description, needle) != NULL;
}
