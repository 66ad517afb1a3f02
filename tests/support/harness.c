/* Test harness implementation: see harness.h. */
#include "harness.h"
#include "fake_otlp.h"
#include "fake_telegram.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct {
    char *buf; /* grown by the reader thread, under mu */
    size_t len, cap;
    int fd;
    pthread_t th;
    char **snaps; /* what rt_stdout()/rt_stderr() returned: valid until rt_free */
    size_t nsnaps, snap_len;
} rt_stream;

struct rt_proc {
    pid_t pid;
    int in_fd;
    int exited, status;
    rt_stream out, err;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

long long rt_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rt_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

char *rt_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/routerd-test-XXXXXX", base && *base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

void rt_rmtree(const char *dir) {
    if (dir) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *rt_write_file(const char *dir, const char *name, const char *text) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    snprintf(path, n, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        free(path);
        return NULL;
    }
    fputs(text, f);
    fclose(f);
    return path;
}

/* A port the kernel hands out with bind(port 0) is in the ephemeral range,
 * where any outgoing connection of a parallel test may take it before the
 * daemon binds it. Ports are drawn below that range instead, at random. */
static int ephemeral_low(void) {
    int lo = 32768, hi;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d %d", &lo, &hi) != 2) lo = 32768;
        fclose(f);
    }
    return lo;
}

static int bind_ok(int port, int *got) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    socklen_t len = sizeof a;
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
             getsockname(fd, (struct sockaddr *)&a, &len) == 0;
    if (ok) *got = ntohs(a.sin_port);
    close(fd);
    return ok;
}

/* A port drawn here is free when probed but bound later, by a daemon the
 * test starts; two tests running at once could draw the same one in
 * between. Each port drawn is reserved until this process exits: a
 * one-byte lock at the port's offset in a file every test shares, and a
 * bit for the ports this process has already handed out. */
static int reserve(int port) {
    static int fd = -2;
    static unsigned char mine[65536 / 8];
    if (mine[port / 8] & (1u << (port % 8))) return 0;
    if (fd == -2) {
        const char *dir = getenv("TMPDIR");
        char path[512];
        snprintf(path, sizeof path, "%s/routerd-test-ports.lock", dir && *dir ? dir : "/tmp");
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    }
    if (fd >= 0) {
        struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = port, .l_len = 1};
        if (fcntl(fd, F_SETLK, &l) != 0) return 0;
    }
    mine[port / 8] |= (unsigned char)(1u << (port % 8));
    return 1;
}

int rt_free_port(void) {
    static unsigned seed;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    int lo = ephemeral_low(), port = -1;
    pthread_mutex_lock(&mu);
    if (!seed) seed = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    for (int i = 0; lo > 12000 && i < 256; i++) {
        int p = 10000 + (int)(rand_r(&seed) % (unsigned)(lo - 10000));
        if (reserve(p) && bind_ok(p, &port)) break;
        port = -1;
    }
    pthread_mutex_unlock(&mu);
    if (port < 0 && !bind_ok(0, &port)) port = -1;
    return port;
}

static void *reader(void *arg) {
    rt_proc *p = arg;
    rt_stream *s = NULL;
    /* arg is the proc; the stream is found by comparing thread ids. */
    pthread_mutex_lock(&p->mu);
    s = pthread_equal(pthread_self(), p->out.th) ? &p->out : &p->err;
    pthread_mutex_unlock(&p->mu);
    char chunk[8192];
    for (;;) {
        ssize_t n = read(s->fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        pthread_mutex_lock(&p->mu);
        if (s->len + (size_t)n + 1 > s->cap) {
            size_t cap = s->cap ? s->cap : 65536;
            while (cap < s->len + (size_t)n + 1)
                cap *= 2;
            s->buf = realloc(s->buf, cap);
            s->cap = cap;
        }
        memcpy(s->buf + s->len, chunk, (size_t)n);
        s->len += (size_t)n;
        s->buf[s->len] = 0;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

rt_proc *rt_spawn(const char *const *argv, const char *const *env_extra) {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) return NULL;
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (env_extra && env_extra[m])
        m++;
    char **env = calloc(n + m + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int overridden = 0;
        for (size_t j = 0; j < m; j++) {
            const char *eq = strchr(env_extra[j], '=');
            size_t kl = eq ? (size_t)(eq - env_extra[j]) : strlen(env_extra[j]);
            if (strncmp(environ[i], env_extra[j], kl) == 0 && environ[i][kl] == '=') overridden = 1;
        }
        if (!overridden) env[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        env[k++] = (char *)env_extra[j];
    env[k] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    rt_proc *p = calloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    int rc = posix_spawn(&p->pid, argv[0], &fa, NULL, (char *const *)argv, env);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (rc != 0) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        free(p);
        errno = rc;
        return NULL;
    }
    signal(SIGPIPE, SIG_IGN);
    p->in_fd = in[1];
    p->out.fd = out[0];
    p->err.fd = err[0];
    pthread_mutex_lock(&p->mu);
    pthread_create(&p->out.th, NULL, reader, p);
    pthread_create(&p->err.th, NULL, reader, p);
    pthread_mutex_unlock(&p->mu);
    return p;
}

rt_proc *rt_start(const char *manifest, const char *const *extra_args,
                  const char *const *env_extra) {
    const char *argv[64];
    size_t n = 0;
    argv[n++] = ROUTERD_BIN;
    argv[n++] = "-c";
    argv[n++] = manifest;
    for (size_t i = 0; extra_args && extra_args[i] && n < 63; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;
    return rt_spawn(argv, env_extra);
}

int rt_pid(rt_proc *p) {
    return (int)p->pid;
}

int rt_write(rt_proc *p, const char *text) {
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(p->in_fd, text + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        off += (size_t)n;
    }
    return 0;
}

void rt_close_stdin(rt_proc *p) {
    if (p->in_fd >= 0) close(p->in_fd);
    p->in_fd = -1;
}

void rt_signal(rt_proc *p, int sig) {
    if (!p->exited) kill(p->pid, sig);
}

int rt_wait(rt_proc *p, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    while (!p->exited) {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->exited = 1;
            p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (rt_now_ms() >= end) return -1;
        rt_sleep_ms(10);
    }
    /* Let the readers collect the last output (once). */
    if (p->out.th) {
        pthread_join(p->out.th, NULL);
        pthread_join(p->err.th, NULL);
        p->out.th = p->err.th = 0;
    }
    return p->status;
}

/* A copy of what the stream holds: its reader thread may grow (move) the
 * buffer while the caller reads. A copy is made only when there is more. */
static const char *snapshot(rt_proc *p, rt_stream *s) {
    pthread_mutex_lock(&p->mu);
    if (!s->nsnaps || s->snap_len != s->len) {
        char *c = malloc(s->len + 1);
        if (s->len) memcpy(c, s->buf, s->len);
        c[s->len] = 0;
        s->snaps = realloc(s->snaps, (s->nsnaps + 1) * sizeof *s->snaps);
        s->snaps[s->nsnaps++] = c;
        s->snap_len = s->len;
    }
    const char *r = s->snaps[s->nsnaps - 1];
    pthread_mutex_unlock(&p->mu);
    return r;
}

const char *rt_stdout(rt_proc *p) {
    return snapshot(p, &p->out);
}

const char *rt_stderr(rt_proc *p) {
    return snapshot(p, &p->err);
}

static int wait_in(rt_proc *p, rt_stream *s, const char *needle, int timeout_ms) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&p->mu);
    int found = 0;
    for (;;) {
        if (s->buf && strstr(s->buf, needle)) {
            found = 1;
            break;
        }
        if (pthread_cond_timedwait(&p->cv, &p->mu, &dl) == ETIMEDOUT) {
            found = s->buf && strstr(s->buf, needle);
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return found;
}

int rt_wait_stdout(rt_proc *p, const char *needle, int timeout_ms) {
    return wait_in(p, &p->out, needle, timeout_ms);
}

int rt_count(const char *hay, const char *needle) {
    int n = 0;
    size_t len = strlen(needle);
    if (!hay || !len) return 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += len)
        n++;
    return n;
}

int rt_threads(int pid) {
    return rt_threads_named(pid, NULL);
}

/* Calls fn on each of pid's threads named name (all with NULL; pid 0:
 * this process) with its /proc directory; -1 when pid is gone, else how
 * many it called fn on. */
static int each_thread(int pid, const char *name, void (*fn)(const char *dir, void *arg),
                       void *arg) {
    char path[64];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/task", pid);
    else
        snprintf(path, sizeof path, "/proc/self/task");
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char dir[300], cpath[320], comm[32] = "";
        snprintf(dir, sizeof dir, "%s/%.200s", path, e->d_name);
        if (name) {
            snprintf(cpath, sizeof cpath, "%s/comm", dir);
            FILE *f = fopen(cpath, "r");
            if (!f) continue; /* the thread ended meanwhile */
            if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0;
            fclose(f);
            if (strcmp(comm, name)) continue;
        }
        if (fn) fn(dir, arg);
        n++;
    }
    closedir(d);
    return n;
}

int rt_threads_named(int pid, const char *name) {
    return each_thread(pid, name, NULL, NULL);
}

static void add_switches(const char *dir, void *arg) {
    char path[320], line[256];
    snprintf(path, sizeof path, "%s/status", dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    long v;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1) {
            *(long *)arg += v;
            break;
        }
    fclose(f);
}

long rt_thread_wakeups(int pid, const char *name) {
    long sum = 0;
    return each_thread(pid, name, add_switches, &sum) > 0 ? sum : -1;
}

int rt_wait_stderr(rt_proc *p, const char *needle, int timeout_ms) {
    return wait_in(p, &p->err, needle, timeout_ms);
}

static int count_lines(const rt_stream *s) {
    int n = 0;
    for (size_t i = 0; i < s->len; i++)
        n += s->buf[i] == '\n';
    return n;
}

int rt_wait_stdout_lines(rt_proc *p, int n, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    int have;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        have = count_lines(&p->out);
        pthread_mutex_unlock(&p->mu);
        if (have >= n || rt_now_ms() >= end) return have;
        rt_sleep_ms(10);
    }
}

void rt_free(rt_proc *p) {
    if (!p) return;
    if (!p->exited) {
        kill(p->pid, SIGKILL);
        rt_wait(p, 5000);
    } else if (p->out.th) {
        pthread_join(p->out.th, NULL);
        pthread_join(p->err.th, NULL);
    }
    /* A sanitizer report ends the child early; a test then fails somewhere
     * later, so show the report itself. */
    if (p->err.buf && (strstr(p->err.buf, "Sanitizer") || strstr(p->err.buf, "runtime error:")))
        fprintf(stderr, "routerd (pid %d) reported:\n%s\n", (int)p->pid, p->err.buf);
    rt_close_stdin(p);
    close(p->out.fd);
    close(p->err.fd);
    free(p->out.buf);
    free(p->err.buf);
    for (size_t i = 0; i < p->out.nsnaps; i++)
        free(p->out.snaps[i]);
    for (size_t i = 0; i < p->err.nsnaps; i++)
        free(p->err.snaps[i]);
    free(p->out.snaps);
    free(p->err.snaps);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

typedef struct {
    char *buf;
    size_t len;
} rt_buf;

static size_t collect(char *ptr, size_t size, size_t nmemb, void *ud) {
    rt_buf *b = ud;
    size_t n = size * nmemb;
    b->buf = realloc(b->buf, b->len + n + 1);
    memcpy(b->buf + b->len, ptr, n);
    b->len += n;
    b->buf[b->len] = 0;
    return n;
}

long rt_http(const char *method, const char *url, const char *body, const char *const *headers,
             char **resp_body) {
    CURL *c = curl_easy_init();
    if (!c) return -1;
    rt_buf b = {0};
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (hl) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    if (resp_body)
        *resp_body = b.buf ? b.buf : strdup("");
    else
        free(b.buf);
    return status;
}

int rt_wait_http(const char *url, long status, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    while (rt_now_ms() < end) {
        if (rt_http("GET", url, NULL, NULL, NULL) == status) return 1;
        rt_sleep_ms(50);
    }
    return 0;
}

/* printf into a malloc()ed string. */
static char *vfmt(const char *fmt, va_list ap) {
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *rt_write_filef(const char *dir, const char *name, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *text = vfmt(fmt, ap);
    va_end(ap);
    char *path = text ? rt_write_file(dir, name, text) : NULL;
    free(text);
    return path;
}

rt_proc *rt_start_ready(const char *manifest, const char *const *env_extra, int port,
                        int timeout_ms) {
    rt_proc *p = rt_start(manifest, NULL, env_extra);
    if (!p) return NULL;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    if (rt_wait_http(url, 200, timeout_ms)) return p;
    rt_signal(p, SIGKILL);
    rt_wait(p, 5000);
    fprintf(stderr, "routerd (%s) not ready in %d ms; its stderr:\n%s\n", manifest, timeout_ms,
            rt_stderr(p));
    rt_free(p);
    return NULL;
}

rt_fix *rt_fix_new(const char *tg_token) {
    rt_fix *fx = calloc(1, sizeof *fx);
    if (!fx) return NULL;
    fx->dir = rt_tmpdir();
    fx->port = rt_free_port();
    if (tg_token) fx->tg = ftg_start(tg_token);
    if (!fx->dir || fx->port < 0 || (tg_token && !fx->tg)) {
        rt_fix_free(fx);
        return NULL;
    }
    return fx;
}

fotlp *rt_fix_otlp(rt_fix *fx) {
    if (!fx->otlp) fx->otlp = fotlp_start();
    return fx->otlp;
}

void rt_fix_free(rt_fix *fx) {
    if (!fx) return;
    rt_free(fx->p);
    ftg_stop(fx->tg);
    fotlp_stop(fx->otlp);
    rt_rmtree(fx->dir);
    free(fx->dir);
    free(fx->manifest);
    free(fx);
}

/* The manifest rt_manifest and rt_fix_manifest write; name NULL: the
 * fixture's own (routerd.ini, state_dir = dir/state). */
static char *vmanifest(const char *dir, const char *name, int admin_port, const char *fmt,
                       va_list ap) {
    char *rest = vfmt(fmt, ap);
    if (!rest) return NULL;
    char listen[32] = "off", file[160], state[160] = "state";
    if (admin_port) snprintf(listen, sizeof listen, "127.0.0.1:%d", admin_port);
    snprintf(file, sizeof file, "%s.ini", name ? name : "routerd");
    if (name) snprintf(state, sizeof state, "state-%s", name);
    char *path =
        rt_write_filef(dir, file, "[router]\nenv = test\nadmin_listen = %s\nstate_dir = %s/%s\n%s",
                       listen, dir, state, rest);
    free(rest);
    return path;
}

char *rt_manifest(const char *dir, const char *name, int admin_port, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *path = vmanifest(dir, name, admin_port, fmt, ap);
    va_end(ap);
    return path;
}

const char *rt_fix_manifest(rt_fix *fx, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    free(fx->manifest);
    fx->manifest = vmanifest(fx->dir, NULL, fx->port, fmt, ap);
    va_end(ap);
    return fx->manifest;
}

rt_proc *rt_fix_start(rt_fix *fx, const char *const *env_extra, int ready_ms) {
    rt_free(fx->p);
    fx->p = NULL;
    if (!fx->manifest) return NULL;
    fx->p = ready_ms > 0 ? rt_start_ready(fx->manifest, env_extra, fx->port, ready_ms)
                         : rt_start(fx->manifest, NULL, env_extra);
    return fx->p;
}

int rt_fix_stop(rt_fix *fx, int timeout_ms) {
    if (!fx->p) return -1;
    rt_signal(fx->p, SIGTERM);
    return rt_wait(fx->p, timeout_ms);
}

int rt_fix_setup(void **state) {
    const rt_fix_spec *sp = *state;
    rt_fix *fx = *sp->fx = rt_fix_new(sp->tg_token);
    if (!fx) return -1;
    if (sp->tg) *sp->tg = fx->tg;
    if (sp->otlp && !(*sp->otlp = rt_fix_otlp(fx))) {
        rt_fix_free(fx);
        *sp->fx = NULL;
        return -1;
    }
    return 0;
}

int rt_fix_teardown(void **state) {
    const rt_fix_spec *sp = *state;
    rt_fix_free(*sp->fx);
    *sp->fx = NULL;
    if (sp->tg) *sp->tg = NULL;
    if (sp->otlp) *sp->otlp = NULL;
    return 0;
}

const char *rt_fix_url(rt_fix *fx, const char *path) {
    char *u = fx->url[fx->next_url++ % 4];
    snprintf(u, sizeof fx->url[0], "http://127.0.0.1:%d%s", fx->port, path);
    return u;
}

int rt_pg_reset(char *env, size_t n) {
    const char *url = getenv("ROUTERD_TEST_PG_URL");
    if (!url || !getenv("ROUTERD_TEST_PG_SH")) {
        fprintf(stderr, "run through tests/support/pg.sh\n");
        return -1;
    }
    snprintf(env, n, "PG_URL=%s", url);
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "psql -q -X '%s' -c 'DROP TABLE IF EXISTS routerd_kv, routerd_lease, "
             "routerd_schema' >/dev/null 2>&1",
             url);
    return system(cmd) == 0 ? 0 : -1;
}
