/* An inbound instance (ABI 1.3) for the integration tests. A command
 * posted to its admin route (POST <route>, one per request:
 * "TAG TRANSPORT CHAT TIMEOUT_MS QUESTION TEXT...", QUESTION 0: a notice,
 * 1: a question, 2: a question with the choices Yes and No) is run by its own
 * thread through host->deliver(), which prints
 * "deliver TAG status=N sent_id=N" on standard output. intercept() prints
 * "offered ..." for every message it is offered and takes ("taken ...")
 * those quoting a question it delivered (kept in the store, so a restart
 * still knows them). quiesce() prints "quiesced". start() may run one
 * command itself and then take start_delay_ms. */
#include <routerd/plugin.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *route, *start_command;
    int64_t start_delay_ms;
} conf;

static const rd_option opts[] = {{.key = "route",
                                  .type = RD_OPT_STRING,
                                  .def = "/inbound_probe",
                                  .help = "admin route taking commands",
                                  RD_BIND(conf, route)},
                                 {.key = "start_command",
                                  .type = RD_OPT_STRING,
                                  .help = "a command run inside start()",
                                  RD_BIND(conf, start_command)},
                                 {.key = "start_delay_ms",
                                  .type = RD_OPT_INT,
                                  .def = "0",
                                  .help = "how long start() takes",
                                  RD_BIND(conf, start_delay_ms)},
                                 {0}};

typedef struct cmd {
    struct cmd *next;
    char text[];
} cmd;

#define MAXQ 64

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    conf cf;
    pthread_t th;
    int started, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cmd *head, *tail;
    int64_t questions[MAXQ]; /* sent ids of questions not answered yet */
    size_t nq;
} probe;

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&out_mu);
    vprintf(fmt, ap);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    va_end(ap);
}

static void run(probe *p, char *line) {
    char tag[32], transport[64];
    long long chat, timeout;
    int question, off = 0;
    if (sscanf(line, "%31s %63s %lld %lld %d %n", tag, transport, &chat, &timeout, &question,
               &off) < 5) {
        say("bad command: %s\n", line);
        return;
    }
    const char *text = line + off;
    static const char *const yes_no[] = {"Yes", "No", NULL};
    rd_outbound out = {.size = sizeof out,
                       .chat_id = chat,
                       .text = text,
                       .text_len = strlen(text),
                       .flags = question ? RD_OUT_QUESTION : 0,
                       .correlation_id = tag,
                       .choices = question == 2 ? yes_no : NULL};
    int64_t sent = -1;
    rd_error err = {0};
    say("calling %s\n", tag);
    rd_status st = p->h->deliver(p->ctx, transport, &out, timeout, &sent, &err);
    if (st == RD_OK && question) {
        char key[40];
        snprintf(key, sizeof key, "q/%" PRId64, sent);
        p->h->kv_put(p->ctx, key, "1", 1);
        pthread_mutex_lock(&p->mu);
        if (p->nq < MAXQ) p->questions[p->nq++] = sent;
        pthread_mutex_unlock(&p->mu);
    }
    say("deliver %s status=%d sent_id=%" PRId64 " err=%s\n", tag, (int)st, sent,
        err.msg[0] ? err.msg : "-");
}

static void *runner(void *arg) {
    probe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (!p->head) break;
        cmd *c = p->head;
        p->head = c->next;
        if (!p->head) p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        run(p, c->text);
        free(c);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void on_cmd(void *arg, const rd_http_req *req, rd_http_resp *resp) {
    probe *p = arg;
    cmd *c = malloc(sizeof *c + req->body_len + 1);
    memcpy(c->text, req->body, req->body_len);
    c->text[req->body_len] = 0;
    c->next = NULL;
    say("command %s\n", c->text);
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = c;
    else
        p->head = c;
    p->tail = c;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    resp->status = 202;
}

static rd_status create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *e) {
    if (!RD_HAS(h, deliver)) {
        h->error(e, RD_E_CONFIG, "fatal", "the host has no deliver()");
        return RD_E_CONFIG;
    }
    probe *p = calloc(1, sizeof *p);
    p->h = h;
    p->ctx = ctx;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    *self = p;
    rd_status st = h->cfg_bind(ctx, &p->cf, sizeof p->cf, e);
    if (st != RD_OK) return st;
    return h->http_route(ctx, "POST", p->cf.route, on_cmd, p);
}

static int load_question(void *arg, const char *key, const void *val, size_t len) {
    probe *p = arg;
    (void)val, (void)len;
    if (p->nq < MAXQ) p->questions[p->nq++] = atoll(key + 2);
    return 0;
}

static rd_status start(void *self, rd_error *e) {
    probe *p = self;
    (void)e;
    p->h->kv_scan(p->ctx, "q/", load_question, p);
    if (p->cf.start_command) {
        char *c = strdup(p->cf.start_command);
        run(p, c);
        free(c);
    }
    struct timespec ts = {p->cf.start_delay_ms / 1000,
                          (long)(p->cf.start_delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    p->started = pthread_create(&p->th, NULL, runner, p) == 0;
    p->h->ready(p->ctx, 1, NULL);
    say("inbound started\n");
    return RD_OK;
}

static void quiesce(void *self) {
    (void)self;
    say("quiesced\n");
}

static void stop(void *self) {
    probe *p = self;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->started) pthread_join(p->th, NULL);
    p->started = 0;
    say("inbound stopped\n");
}

static void destroy(void *self) {
    probe *p = self;
    while (p->head) {
        cmd *c = p->head;
        p->head = c->next;
        free(c);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static int intercept(void *self, const rd_request *rq) {
    probe *p = self;
    int64_t reply_to = RD_HAS(rq, reply_to) ? rq->reply_to : -1;
    say("offered chat=%" PRId64 " reply_to=%" PRId64 " transport=%s text=%s\n", rq->chat_id,
        reply_to, rq->transport, rq->text);
    int taken = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->nq && reply_to > 0; i++)
        if (p->questions[i] == reply_to) {
            p->questions[i] = p->questions[--p->nq];
            taken = 1;
            break;
        }
    pthread_mutex_unlock(&p->mu);
    if (taken) {
        char key[40];
        snprintf(key, sizeof key, "q/%" PRId64, reply_to);
        p->h->kv_del(p->ctx, key);
    }
    if (taken)
        say("taken chat=%" PRId64 " reply_to=%" PRId64 " choice=%d text=%s\n", rq->chat_id,
            reply_to, (rq->flags & RD_MSG_CHOICE) != 0, rq->text);
    return taken;
}

static const rd_ops ops = {.size = sizeof ops,
                           .create = create,
                           .start = start,
                           .quiesce = quiesce,
                           .stop = stop,
                           .destroy = destroy,
                           .intercept = intercept};
RD_PLUGIN_DEFINE(.kind = RD_KIND_INBOUND, .name = "probe", .version = "1", .summary = "test probe",
                 .options = opts, .ops = &ops);
