/* A backend that checks what the host promises a request (valid UTF-8
 * without NUL, the transport's name, the attachments) and counts how many
 * handle() calls overlap. Built as "probe" and, with RD_PF_SERIAL, as
 * "probe_serial". Its answer is one line of findings, so the transport
 * probe (or the console) shows them; at stop() it prints the overlap. */
#include <routerd/plugin.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "utf8_check.h"

typedef struct {
    int64_t hold_ms;
    int bad_reply;
    int64_t reply_files;
} conf;

static const rd_option opts[] = {
    {.key = "hold_ms",
     .type = RD_OPT_INT,
     .def = "40",
     .help = "time inside handle()",
     RD_BIND(conf, hold_ms)},
    {.key = "bad_reply",
     .type = RD_OPT_BOOL,
     .def = "false",
     .help = "end the answer with invalid UTF-8 and a NUL byte",
     RD_BIND(conf, bad_reply)},
    {.key = "reply_files",
     .type = RD_OPT_INT,
     .def = "0",
     .help = "files attached to each answer (their reply_attach statuses are shown)",
     RD_BIND(conf, reply_files)},
    {0}};

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    conf cf;
    atomic_int now, max;
} probe;

static rd_status create(const rd_host *h, rd_ctx *c, void **self, rd_error *e) {
    probe *p = calloc(1, sizeof *p);
    p->h = h;
    p->ctx = c;
    *self = p;
    return h->cfg_bind(c, &p->cf, sizeof p->cf, e);
}

static void stop(void *self) {
    probe *p = self;
    printf("backend %s max_handle_overlap=%d\n", PROBE_NAME, atomic_load(&p->max));
    fflush(stdout);
}

static void destroy(void *self) {
    free(self);
}

static rd_status handle(void *self, const rd_request *rq, rd_reply *rp, rd_error *e) {
    probe *p = self;
    (void)e;
    int n = atomic_fetch_add(&p->now, 1) + 1, m = atomic_load(&p->max);
    while (n > m && !atomic_compare_exchange_weak(&p->max, &m, n))
        ;
    struct timespec ts = {0, (long)p->cf.hold_ms * 1000000L};
    nanosleep(&ts, NULL);
    char line[512];
    int valid = utf8_check(rq->text, rq->text_len) && strlen(rq->text) == rq->text_len;
    int off = snprintf(line, sizeof line, "rq transport=%s valid=%d natt=%zu",
                       RD_HAS(rq, transport) && rq->transport ? rq->transport : "-", valid,
                       RD_HAS(rq, nattachments) ? rq->nattachments : 0);
    for (size_t i = 0; RD_HAS(rq, nattachments) && i < rq->nattachments; i++) {
        const rd_attachment *a = rq->attachments[i];
        off += snprintf(line + off, sizeof line - (size_t)off, " [%s %s %zu]",
                        a->name ? a->name : "-", a->mime ? a->mime : "-", a->len);
    }
    static const char blob[1024];
    for (int64_t i = 0; i < p->cf.reply_files; i++) {
        rd_attachment a = {.size = sizeof a, .name = "f.bin", .data = blob, .len = sizeof blob};
        off += snprintf(line + off, sizeof line - (size_t)off, "%s%d",
                        i ? "," : " attach=", (int)p->h->reply_attach(rp, &a));
    }
    p->h->reply_append(rp, line, strlen(line));
    if (p->cf.bad_reply) p->h->reply_append(rp, " \xff\xc0\x80\0z", 6);
    atomic_fetch_sub(&p->now, 1);
    return RD_OK;
}

static const rd_ops ops = {
    .size = sizeof ops, .create = create, .stop = stop, .destroy = destroy, .handle = handle};
RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = PROBE_NAME, .version = "1", .options = opts,
                 .ops = &ops, .flags = PROBE_FLAGS);
