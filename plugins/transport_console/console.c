/* console transport: each line of standard input is a message, replies go
 * to standard output. "@42 hello" comes from chat 42; other lines from
 * chat_id. Empty and blank lines (also after "@42") are ignored; an "@N"
 * that is not a 64-bit integer is refused with a warning, never read as
 * another chat. "<file:PATH>" in a line attaches that file; "#N" picks
 * choice N of the last reply to that chat that offered choices. At end of
 * input the router drains and exits. For development and tests. */
#include <routerd/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FILE_MAX (64L << 20) /* bytes read for one <file:PATH> */
#define FILES_MAX 16

typedef struct {
    int64_t chat_id;
    const char *input;
} console_conf;

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    console_conf cf;
    int fd;
    atomic_int quit; /* quiesce/stop tell the reader thread */
    pthread_t th;
    int started;
    pthread_mutex_t out_mu;
    /* under out_mu: the choices of the last reply that offered some */
    int64_t choice_chat;
    char **choices;
} console;

static const rd_option opts[] = {
    {"chat_id", RD_OPT_INT, 0, "1", "chat id of lines without an @N prefix", 0, 0, NULL,
     RD_BIND(console_conf, chat_id)},
    {"input", RD_OPT_STRING, 0, "-", "file to read messages from; - is standard input", 0, 0, NULL,
     RD_BIND(console_conf, input)},
    {0},
};

static rd_status c_create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    if (!RD_HAS(h, cfg_bind)) {
        h->error(err, RD_E_CONFIG, "fatal", "needs a routerd speaking plugin ABI 1.2");
        return RD_E_CONFIG;
    }
    console *c = calloc(1, sizeof *c);
    if (!c) return RD_E_INTERNAL;
    c->h = h;
    c->ctx = ctx;
    c->fd = -1;
    if (h->cfg_bind(ctx, &c->cf, sizeof c->cf, err) != RD_OK) {
        free(c);
        return RD_E_CONFIG;
    }
    pthread_mutex_init(&c->out_mu, NULL);
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

static void free_strs(char **l) {
    for (size_t i = 0; l && l[i]; i++)
        free(l[i]);
    free(l);
}

/* A few common types; the rest is application/octet-stream. */
static const char *mime_of(const char *path) {
    static const char *const map[][2] = {{".txt", "text/plain"},       {".png", "image/png"},
                                         {".jpg", "image/jpeg"},       {".jpeg", "image/jpeg"},
                                         {".pdf", "application/pdf"},  {".ogg", "audio/ogg"},
                                         {".json", "application/json"}};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof map / sizeof *map; i++)
        if (!strcasecmp(dot, map[i][0])) return map[i][1];
    return NULL;
}

typedef struct {
    rd_attachment a[FILES_MAX];
    const rd_attachment *p[FILES_MAX];
    char *data[FILES_MAX];
    size_t n;
} files;

/* Reads the file into f; -1 with a warning when it cannot. */
static int read_file(console *c, files *f, const char *path) {
    if (f->n == FILES_MAX) {
        c->h->log(c->ctx, RD_LOG_WARN, "more than %d <file:...> in one line", FILES_MAX);
        return -1;
    }
    FILE *fp = fopen(path, "rb");
    struct stat st;
    if (!fp || fstat(fileno(fp), &st) || !S_ISREG(st.st_mode) || st.st_size > FILE_MAX) {
        c->h->log(c->ctx, RD_LOG_WARN, "<file:%s>: %s", path,
                  !fp ? strerror(errno) : "not a regular file of at most 64 MiB");
        if (fp) fclose(fp);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    char *d = malloc(len ? len : 1);
    size_t got = d ? fread(d, 1, len, fp) : 0;
    fclose(fp);
    if (!d || got != len) {
        free(d);
        return -1;
    }
    const char *slash = strrchr(path, '/');
    f->data[f->n] = d;
    f->a[f->n] = (rd_attachment){.size = sizeof(rd_attachment),
                                 .mime = mime_of(path),
                                 .name = slash ? slash + 1 : path,
                                 .data = d,
                                 .len = len};
    f->p[f->n] = &f->a[f->n];
    f->n++;
    return 0;
}

/* Moves every <file:PATH> out of text into f (text is edited in place). */
static int take_files(console *c, char *text, files *f) {
    char *at;
    while ((at = strstr(text, "<file:"))) {
        char *end = strchr(at, '>');
        if (!end) break;
        *end = 0;
        if (read_file(c, f, at + 6)) return -1;
        memmove(at, end + 1, strlen(end + 1) + 1);
    }
    return 0;
}

/* "#N" after the last choices offered to chat: that choice's text. */
static char *picked(console *c, int64_t chat, const char *text) {
    if (text[0] != '#' || !text[1] || strspn(text + 1, "0123456789") != strlen(text + 1))
        return NULL;
    long n = strtol(text + 1, NULL, 10);
    char *out = NULL;
    pthread_mutex_lock(&c->out_mu);
    for (long i = 0; c->choices && c->choice_chat == chat && c->choices[i]; i++)
        if (i + 1 == n) out = strdup(c->choices[i]);
    pthread_mutex_unlock(&c->out_mu);
    return out;
}

static void submit_line(console *c, char *line, int64_t id) {
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        line[--len] = 0;
    int64_t chat = c->cf.chat_id;
    char *text = line[0] == '@' ? (char *)chat_prefix(line, &chat) : line;
    if (!text) {
        size_t n = strcspn(line, " \t");
        c->h->log(c->ctx, RD_LOG_WARN,
                  "line %lld not sent: '%.*s' is not a chat id (a 64-bit integer, as in @42 hi)",
                  (long long)id, (int)(n > 40 ? 40 : n), line);
        c->h->skip(c->ctx, id, "bad chat id");
        return;
    }
    files f = {.n = 0};
    if (take_files(c, text, &f)) {
        c->h->skip(c->ctx, id, "unreadable file");
        goto out;
    }
    /* Empty, blank, or a chat id alone: nothing to send, told the same way. */
    if (blank(text) && !f.n) {
        c->h->log(c->ctx, RD_LOG_DEBUG, "line %lld ignored: no text", (long long)id);
        c->h->skip(c->ctx, id, "empty line");
        goto out;
    }
    char *choice = picked(c, chat, text);
    rd_inbound in = {.size = sizeof in,
                     .update_id = id,
                     .chat_id = chat,
                     .user_id = chat,
                     .message_id = id,
                     .text = choice ? choice : text,
                     .text_len = strlen(choice ? choice : text),
                     .flags = choice ? RD_MSG_CHOICE : 0,
                     .attachments = f.n ? f.p : NULL,
                     .nattachments = f.n};
    for (;;) {
        rd_status st = c->h->submit(c->ctx, &in);
        if (st == RD_E_FATAL) c->h->skip(c->ctx, id, "refused"); /* the host logged why */
        if (st != RD_E_FULL || c->quit) break;
        sleep_ms(2); /* back-pressure: wait for the queue to drain */
    }
    free(choice);
out:
    for (size_t i = 0; i < f.n; i++)
        free(f.data[i]);
}

static void *reader(void *arg) {
    pthread_setname_np(pthread_self(), "console-read");
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
    const char *in = c->cf.input;
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
    free_strs(c->choices);
    pthread_mutex_destroy(&c->out_mu);
    free(c);
}

static rd_status c_send(void *self, const rd_outbound *out, rd_error *err) {
    console *c = self;
    (void)err;
    bool v12 = RD_HAS(out, choices);
    size_t natt = v12 && out->attachments ? out->nattachments : 0;
    pthread_mutex_lock(&c->out_mu);
    if (out->chat_id != c->cf.chat_id) printf("@%" PRId64 " ", out->chat_id);
    fwrite(out->text, 1, out->text_len, stdout);
    fputc('\n', stdout);
    for (size_t i = 0; i < natt; i++) {
        const rd_attachment *a = out->attachments[i];
        printf("[file: %s (%s, ", a->name ? a->name : "unnamed",
               a->mime ? a->mime : "application/octet-stream");
        if (a->data)
            printf("%zu bytes)]\n", a->len);
        else
            printf("%s)]\n", a->url ? a->url : "no data");
    }
    if (v12 && out->choices && out->choices[0]) {
        size_t n = 0;
        while (out->choices[n])
            n++;
        char **copy = calloc(n + 1, sizeof *copy);
        printf("[choices:");
        for (size_t i = 0; i < n; i++) {
            printf(" %zu) %s", i + 1, out->choices[i]);
            if (copy) copy[i] = strdup(out->choices[i]);
        }
        printf("]\n");
        free_strs(c->choices);
        c->choices = copy;
        c->choice_chat = out->chat_id;
    }
    fflush(stdout);
    pthread_mutex_unlock(&c->out_mu);
    /* Standard output has no message ids: answers cannot quote one. */
    if (RD_HAS(out, sent_id) && out->sent_id) *out->sent_id = 0;
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
