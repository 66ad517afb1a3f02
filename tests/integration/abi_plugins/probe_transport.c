/* A transport that submits `messages` messages over `chats` chats from its
 * own thread and checks every send(): text valid UTF-8 without NUL,
 * update_id the update answered, attachments and choices; it counts how
 * many send() calls overlap. One line per send on standard output, a
 * summary at the end, then it asks the router to stop. Built as "probe" and,
 * with RD_PF_SERIAL, as "probe_serial". */
#include <routerd/plugin.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "utf8_check.h"

typedef struct {
    int64_t messages, chats, hold_ms, files;
    int hostile, broken_file;
} conf;

static const rd_option opts[] = {
    {.key = "messages",
     .type = RD_OPT_INT,
     .def = "16",
     .help = "messages submitted",
     RD_BIND(conf, messages)},
    {.key = "chats",
     .type = RD_OPT_INT,
     .def = "8",
     .help = "distinct chats",
     RD_BIND(conf, chats)},
    {.key = "hold_ms",
     .type = RD_OPT_INT,
     .def = "40",
     .help = "time inside send()",
     RD_BIND(conf, hold_ms)},
    {.key = "hostile",
     .type = RD_OPT_BOOL,
     .def = "false",
     .help = "message text with invalid UTF-8 and NUL bytes",
     RD_BIND(conf, hostile)},
    {.key = "files",
     .type = RD_OPT_INT,
     .def = "0",
     .help = "attachments per message",
     RD_BIND(conf, files)},
    {.key = "broken_file",
     .type = RD_OPT_BOOL,
     .def = "false",
     .help = "the first message carries an attachment without data and url",
     RD_BIND(conf, broken_file)},
    {0}};

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    conf cf;
    pthread_t th;
    int started;
    atomic_int now, max, sent, bad;
    pthread_mutex_t mu;
} probe;

static const char hostile[] = "bad \xc0\x80 \xed\xa0\x80 \xf4\x90\x80\x80 \0nul \xf0\x9f\x98";

static void sleep_ms(int64_t ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *feeder(void *arg) {
    probe *p = arg;
    static const char data[] = "abc";
    for (int64_t i = 0; i < p->cf.messages && !p->h->stopping(p->ctx); i++) {
        char text[64];
        snprintf(text, sizeof text, "message %" PRId64, i + 1);
        rd_attachment a[4], broken = {.size = sizeof broken, .name = "nothing"};
        const rd_attachment *ap[4];
        size_t n = p->cf.files > 4 ? 4 : (size_t)p->cf.files;
        for (size_t k = 0; k < n; k++) {
            a[k] = (rd_attachment){.size = sizeof a[k],
                                   .kind = "document",
                                   .mime = "text/plain",
                                   .name = "a.txt",
                                   .data = data,
                                   .len = 3};
            ap[k] = &a[k];
        }
        if (p->cf.broken_file && i == 0) ap[n++] = &broken;
        rd_inbound in = {.size = sizeof in,
                         .update_id = i + 1,
                         .chat_id = 100 + i % p->cf.chats,
                         .user_id = 7,
                         .message_id = i + 1,
                         .text = p->cf.hostile ? hostile : text,
                         .text_len = p->cf.hostile ? sizeof hostile - 1 : strlen(text),
                         .attachments = n ? ap : NULL,
                         .nattachments = n};
        rd_status st;
        while ((st = p->h->submit(p->ctx, &in)) == RD_E_FULL)
            sleep_ms(2);
        if (st != RD_OK) {
            printf("submit update=%" PRId64 " status=%d\n", in.update_id, (int)st);
            fflush(stdout);
            p->h->skip(p->ctx, in.update_id, "refused");
            atomic_fetch_add(&p->sent, 1); /* nothing will come back for it */
        }
    }
    while (atomic_load(&p->sent) < p->cf.messages && !p->h->stopping(p->ctx))
        sleep_ms(10);
    printf("transport %s max_send_overlap=%d bad=%d\n", PROBE_NAME, atomic_load(&p->max),
           atomic_load(&p->bad));
    fflush(stdout);
    p->h->request_stop(p->ctx);
    return NULL;
}

static rd_status create(const rd_host *h, rd_ctx *c, void **self, rd_error *e) {
    probe *p = calloc(1, sizeof *p);
    p->h = h;
    p->ctx = c;
    pthread_mutex_init(&p->mu, NULL);
    *self = p;
    return h->cfg_bind(c, &p->cf, sizeof p->cf, e);
}

static rd_status start(void *self, rd_error *e) {
    probe *p = self;
    (void)e;
    p->started = pthread_create(&p->th, NULL, feeder, p) == 0;
    p->h->ready(p->ctx, 1, NULL);
    return RD_OK;
}

static void stop(void *self) {
    probe *p = self;
    if (p->started) pthread_join(p->th, NULL);
    p->started = 0;
}

static void destroy(void *self) {
    probe *p = self;
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static rd_status send(void *self, const rd_outbound *out, rd_error *e) {
    probe *p = self;
    (void)e;
    int n = atomic_fetch_add(&p->now, 1) + 1, m = atomic_load(&p->max);
    while (n > m && !atomic_compare_exchange_weak(&p->max, &m, n))
        ;
    sleep_ms(p->cf.hold_ms);
    int valid = utf8_check(out->text, out->text_len) && strlen(out->text) == out->text_len;
    /* The update answered is the one submitted for this chat. */
    int answers = out->update_id >= 1 && out->update_id <= p->cf.messages &&
                  out->chat_id == 100 + (out->update_id - 1) % p->cf.chats;
    if (!valid || !answers) atomic_fetch_add(&p->bad, 1);
    pthread_mutex_lock(&p->mu);
    printf("send update=%" PRId64 " chat=%" PRId64 " valid=%d answers=%d natt=%zu text=%s\n",
           out->update_id, out->chat_id, valid, answers, out->nattachments,
           valid ? out->text : "(invalid)");
    fflush(stdout);
    pthread_mutex_unlock(&p->mu);
    atomic_fetch_sub(&p->now, 1);
    atomic_fetch_add(&p->sent, 1);
    return RD_OK;
}

static const rd_ops ops = {.size = sizeof ops,
                           .create = create,
                           .start = start,
                           .stop = stop,
                           .destroy = destroy,
                           .send = send};
RD_PLUGIN_DEFINE(.kind = RD_KIND_TRANSPORT, .name = PROBE_NAME, .version = "1", .options = opts,
                 .ops = &ops, .flags = PROBE_FLAGS);
