/* console transport: each line of standard input is a message, replies go
 * to standard output. "@42 hello" comes from chat 42; other lines from
 * chat_id. Empty and blank lines (also after "@42") are ignored; an "@N"
 * that is not a 64-bit integer is refused with a warning, never read as
 * another chat. At end of input the router drains and exits. For
 * development and tests. */
#include <routerd/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    int64_t chat_id;
    int fd;
    volatile int quit;
    pthread_t th;
    int started;
    pthread_mutex_t out_mu;
} console;

static const rd_option opts[] = {
    {"chat_id", RD_OPT_INT, 0, "1", "chat id of lines without an @N prefix", 0, 0, NULL, 0, 0},
    {"input", RD_OPT_STRING, 0, "-", "file to read messages from; - is standard input", 0, 0, NULL,
     0, 0},
    {0},
};

static rd_status c_create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    console *c = calloc(1, sizeof *c);
    if (!c) return RD_E_INTERNAL;
    c->h = h;
    c->ctx = ctx;
    c->chat_id = h->cfg_int(ctx, "chat_id");
    c->fd = -1;
    pthread_mutex_init(&c->out_mu, NULL);
    (void)err;
    *self = c;
    return RD_OK;
}

static void sleep_ms(int ms) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

static bool blank(const char *s) {
    return s[strspn(s, " \t\r\f\v")] == 0;
}

/* "@N" then a blank or the end: the chat id prefix. Returns the text after
 * it, or NULL when N is not a 64-bit integer. Lines not of that form (an
 * "@name" mention) are text as they are. */
static const char *chat_prefix(const char *line, int64_t *chat) {
    const char *p = line + 1;
    size_t digits = strspn(p + (*p == '-'), "0123456789");
    const char *end = p + (*p == '-') + digits;
    if (!digits || (*end && *end != ' ' && *end != '\t')) return line;
    errno = 0;
    long long v = strtoll(p, NULL, 10);
    if (errno == ERANGE) return NULL;
    *chat = v;
    return *end ? end + 1 : end;
}

static void submit_line(console *c, char *line, int64_t id) {
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        line[--len] = 0;
    int64_t chat = c->chat_id;
    const char *text = line[0] == '@' ? chat_prefix(line, &chat) : line;
    if (!text) {
        size_t n = strcspn(line, " \t");
        c->h->log(c->ctx, RD_LOG_WARN,
                  "line %lld not sent: '%.*s' is not a chat id (a 64-bit integer, as in @42 hi)",
                  (long long)id, (int)(n > 40 ? 40 : n), line);
        c->h->skip(c->ctx, id, "bad chat id");
        return;
    }
    /* Empty, blank, or a chat id alone: nothing to send, told the same way. */
    if (blank(text)) {
        c->h->log(c->ctx, RD_LOG_DEBUG, "line %lld ignored: no text", (long long)id);
        c->h->skip(c->ctx, id, "empty line");
        return;
    }
    rd_inbound in = {.size = sizeof in,
                     .update_id = id,
                     .chat_id = chat,
                     .user_id = chat,
                     .message_id = id,
                     .text = text,
                     .text_len = strlen(text)};
    for (;;) {
        rd_status st = c->h->submit(c->ctx, &in);
        if (st != RD_E_FULL || c->quit) return;
        sleep_ms(2); /* back-pressure: wait for the queue to drain */
    }
}

static void *reader(void *arg) {
    console *c = arg;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int64_t id = 0;
    while (!c->quit) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int r = poll(&p, 1, 100);
        if (r < 0 && errno != EINTR) break;
        if (r <= 0) continue;
        if (cap - len < 4096) buf = realloc(buf, cap = cap * 2 + 8192);
        ssize_t n = read(c->fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = 0;
        char *start = buf, *nl;
        while (!c->quit && (nl = memchr(start, '\n', len - (size_t)(start - buf)))) {
            *nl = 0;
            submit_line(c, start, ++id);
            start = nl + 1;
        }
        len -= (size_t)(start - buf);
        memmove(buf, start, len);
    }
    if (!c->quit && len) {
        buf[len] = 0;
        submit_line(c, buf, ++id);
    }
    free(buf);
    if (!c->quit) c->h->request_stop(c->ctx);
    return NULL;
}

static rd_status c_start(void *self, rd_error *err) {
    console *c = self;
    const char *in = c->h->cfg_str(c->ctx, "input");
    if (in && strcmp(in, "-")) {
        c->fd = open(in, O_RDONLY | O_CLOEXEC);
        if (c->fd < 0) {
            c->h->error(err, RD_E_CONFIG, "fatal", "input %s: %s", in, strerror(errno));
            return RD_E_CONFIG;
        }
    } else {
        c->fd = dup(0);
    }
    if (pthread_create(&c->th, NULL, reader, c)) {
        c->h->error(err, RD_E_INTERNAL, "fatal", "cannot start the reader thread");
        return RD_E_INTERNAL;
    }
    c->started = 1;
    c->h->ready(c->ctx, 1, NULL);
    return RD_OK;
}

static void c_quiesce(void *self) {
    console *c = self;
    c->quit = 1;
}

static void c_stop(void *self) {
    console *c = self;
    c->quit = 1;
    if (c->started) pthread_join(c->th, NULL);
    c->started = 0;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static void c_destroy(void *self) {
    console *c = self;
    pthread_mutex_destroy(&c->out_mu);
    free(c);
}

static rd_status c_send(void *self, const rd_outbound *out, rd_error *err) {
    console *c = self;
    (void)err;
    pthread_mutex_lock(&c->out_mu);
    if (out->chat_id != c->chat_id) printf("@%" PRId64 " ", out->chat_id);
    fwrite(out->text, 1, out->text_len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&c->out_mu);
    return RD_OK;
}

static const rd_ops ops = {
    .size = sizeof(rd_ops),
    .create = c_create,
    .start = c_start,
    .quiesce = c_quiesce,
    .stop = c_stop,
    .destroy = c_destroy,
    .send = c_send,
};

RD_PLUGIN_DEFINE(.kind = RD_KIND_TRANSPORT, .name = "console", .version = "1.0.0",
                 .summary = "stdin/stdout chat for development: '@42 hi' comes from chat 42",
                 .options = opts, .ops = &ops);
