/* Attachments and choices crossing the router: copied in at submit() and
 * reply_attach()/reply_choices(), bounded by [router] max_attachments and
 * max_attachment_bytes, freed with their job. */
#include "router.h"

#include <stdlib.h>
#include <string.h>

#define ATT_STR_MAX 1024 /* kind, mime, name */
#define ATT_URL_MAX 8192

/* One allocation: the struct, then the strings, then the bytes. */
static rd_attachment *att_copy(const rd_attachment *src, char *why, size_t whysz) {
    rd_attachment a = {0};
    /* Members beyond the sender's size read as absent. */
    memcpy(&a, src, src->size < sizeof a ? src->size : sizeof a);
    if (!a.data) a.len = 0;
    if (!a.data && !(a.url && *a.url)) {
        snprintf(why, whysz, "an attachment has neither data nor url");
        return NULL;
    }
    const char *s[4] = {a.kind, a.mime, a.name, a.url};
    size_t n[4], total = sizeof a;
    for (int i = 0; i < 4; i++) {
        size_t l = s[i] ? strlen(s[i]) : 0;
        if (l > (i == 3 ? ATT_URL_MAX : ATT_STR_MAX)) {
            snprintf(why, whysz, "an attachment's %s is longer than %d bytes",
                     (const char *[]){"kind", "mime", "name", "url"}[i],
                     i == 3 ? ATT_URL_MAX : ATT_STR_MAX);
            return NULL;
        }
        n[i] = s[i] ? utf8_clean(s[i], l, NULL) + 1 : 0;
        total += n[i];
    }
    rd_attachment *c = xmalloc(total + a.len);
    char *p = (char *)(c + 1);
    const char **dst[4] = {&c->kind, &c->mime, &c->name, &c->url};
    for (int i = 0; i < 4; i++) {
        *dst[i] = NULL;
        if (!s[i]) continue;
        utf8_clean(s[i], strlen(s[i]), p);
        *dst[i] = p;
        p += n[i];
    }
    c->size = sizeof *c;
    c->len = a.len;
    c->data = a.data ? p : NULL;
    if (a.len) memcpy(p, a.data, a.len);
    return c;
}

rd_status att_add(att_list *l, const rd_attachment *a, char *why, size_t whysz) {
    if (!a || a->size < sizeof a->size) {
        snprintf(why, whysz, "an attachment is NULL or has no size");
        return RD_E_FATAL;
    }
    if (l->n >= R.max_attachments) {
        snprintf(why, whysz, "more than [router] max_attachments = %zu attachments",
                 R.max_attachments);
        return RD_E_FULL;
    }
    size_t len = RD_HAS(a, len) && RD_HAS(a, data) && a->data ? a->len : 0;
    if (len > R.max_attachment_bytes - l->bytes || l->bytes > R.max_attachment_bytes) {
        snprintf(why, whysz, "attachments larger than [router] max_attachment_bytes = %zu",
                 R.max_attachment_bytes);
        return RD_E_FULL;
    }
    rd_attachment *c = att_copy(a, why, whysz);
    if (!c) return RD_E_FATAL;
    l->v = xrealloc(l->v, (l->n + 2) * sizeof *l->v);
    l->v[l->n++] = c;
    l->v[l->n] = NULL;
    l->bytes += c->len;
    return RD_OK;
}

rd_status att_copy_in(att_list *l, const rd_inbound *in, char *why, size_t whysz) {
    if (!RD_HAS(in, nattachments) || !in->nattachments) return RD_OK;
    if (!in->attachments) {
        snprintf(why, whysz, "nattachments is %zu but attachments is NULL", in->nattachments);
        return RD_E_FATAL;
    }
    for (size_t i = 0; i < in->nattachments; i++) {
        rd_status st = att_add(l, in->attachments[i], why, whysz);
        if (st != RD_OK) {
            att_free(l);
            return RD_E_FATAL;
        }
    }
    return RD_OK;
}

void att_free(att_list *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

char **choices_copy(const char *const *in, const char *source) {
    if (!in || !in[0]) return NULL;
    char **out = xcalloc(RD_CHOICES_MAX + 1, sizeof *out);
    size_t n = 0, dropped = 0;
    for (size_t i = 0; in[i]; i++) {
        size_t l = strlen(in[i]);
        if (!l || l > RD_CHOICE_MAX_BYTES || n == RD_CHOICES_MAX) {
            dropped++;
            continue;
        }
        out[n++] = utf8_clean_dup(in[i], l, NULL);
    }
    if (dropped)
        log_msg(source, RD_LOG_WARN,
                "reply_choices: %zu choice(s) dropped (empty, longer than %d bytes, or past "
                "%d)",
                dropped, RD_CHOICE_MAX_BYTES, RD_CHOICES_MAX);
    if (!n) {
        free(out);
        return NULL;
    }
    return out;
}

void choices_free(char **c) {
    free_list(c);
}

rd_status router_reply_attach(rd_reply *r, const rd_attachment *a) {
    if (!r || !r->job) return RD_E_INTERNAL;
    char why[160];
    pthread_mutex_lock(&r->mu);
    rd_status st = att_add(&r->att, a, why, sizeof why);
    pthread_mutex_unlock(&r->mu);
    if (st != RD_OK)
        log_msg(r->job->p->backend->name, RD_LOG_WARN, "correlation %s: reply_attach: %s",
                r->job->corr, why);
    return st;
}

void router_reply_choices(rd_reply *r, const char *const *choices) {
    if (!r || !r->job) return;
    char **c = choices_copy(choices, r->job->p->backend->name);
    pthread_mutex_lock(&r->mu);
    char **old = r->choices;
    r->choices = c;
    pthread_mutex_unlock(&r->mu);
    choices_free(old);
}
