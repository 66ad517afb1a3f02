/* Small helpers shared by the core. */
#include "core.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>

static void oom(void) {
    fputs("routerd: out of memory\n", stderr);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom();
    return p;
}

void *xcalloc(size_t n, size_t m) {
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p) oom();
    return p;
}

void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) oom();
    return p;
}

char *xstrdup(const char *s) {
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n) {
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) oom();
    va_end(ap);
    return s;
}

char *str_trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

static ssize_t read_proc(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n >= 0) buf[n] = 0;
    return n;
}

thread_state thread_state_of(int tid) {
    char path[64], buf[192];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    if (read_proc(path, buf, sizeof buf) <= 0) return THREAD_ASLEEP;
    const char *p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
    if (p && p[1] == ' ' && p[2] == 'R') return THREAD_RUNNING;
    /* "nr arg1 arg2 arg3 ...": glibc's mutexes wait in futex(FUTEX_WAIT)
     * for the value 2 (locked, with waiters); its condition variables,
     * semaphores and timed waits use FUTEX_WAIT_BITSET. */
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
    if (read_proc(path, buf, sizeof buf) <= 0) return THREAD_ASLEEP;
    long nr;
    unsigned long addr, op, val;
    if (sscanf(buf, "%ld %lx %lx %lx", &nr, &addr, &op, &val) == 4 && nr == SYS_futex &&
        (op & ~(unsigned long)(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)) == FUTEX_WAIT &&
        val == 2)
        return THREAD_LOCK_WAIT;
    return THREAD_ASLEEP;
}

int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec deadline_in(clockid_t clock, int64_t us) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    ts.tv_sec += (time_t)(us / 1000000);
    ts.tv_nsec += (long)(us % 1000000) * 1000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void hex(const unsigned char *in, size_t n, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = 0;
}

void sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    hex(md, 32, out);
}

void hmac_sha256_hex(const void *key, size_t klen, const void *data, size_t len, char out[65]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    HMAC(EVP_sha256(), key, (int)klen, data, len, md, &mdlen);
    hex(md, 32, out);
}

void random_bytes(void *buf, size_t n) {
    if (RAND_bytes(buf, (int)n) != 1) {
        /* The kernel is the fallback; it does not fail for small reads. */
        if (getrandom(buf, n, 0) != (ssize_t)n) abort();
    }
}

void random_hex(char *out, size_t nbytes) {
    unsigned char b[64];
    if (nbytes > sizeof b) nbytes = sizeof b;
    random_bytes(b, nbytes);
    hex(b, nbytes, out);
}

/* Fast per-thread generator for ids and jitter; seeded from the CSPRNG. */
uint64_t rand_u64(void) {
    static _Thread_local uint64_t s;
    if (!s) {
        random_bytes(&s, sizeof s);
        s |= 1;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s * 0x2545F4914F6CDD1DULL;
}

/* Edit distance counting an adjacent swap as one edit (optimal string
 * alignment), so "nmae" suggests "name". Case-insensitive. */
size_t levenshtein(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return (size_t)-1;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        int ca = tolower((unsigned char)a[i - 1]);
        for (size_t j = 1; j <= lb; j++) {
            int cb = tolower((unsigned char)b[j - 1]);
            size_t best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

const char *suggest(const char *key, const char *const *cands, size_t n) {
    const char *best = NULL;
    size_t bestd = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = levenshtein(key, cands[i]);
        if (d < bestd) {
            bestd = d;
            best = cands[i];
        }
    }
    size_t len = strlen(key);
    size_t limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    if (best && bestd <= limit) return best;
    /* A prefix match also counts: "time" for "timeout_s". */
    for (size_t i = 0; i < n && len >= 3; i++)
        if (!strncmp(cands[i], key, len)) return cands[i];
    return NULL;
}

int parse_i64(const char *s, int64_t *out) {
    while (isspace((unsigned char)*s))
        s++;
    if (!*s) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s) return -1;
    while (isspace((unsigned char)*end))
        end++;
    if (*end) return -1;
    *out = v;
    return 0;
}

char **split_list(const char *s) {
    size_t cap = 4, n = 0;
    char **l = xcalloc(cap + 1, sizeof *l);
    const char *p = s ? s : "";
    while (*p) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        char *item = xstrndup(p, len);
        char *t = str_trim(item);
        if (*t) {
            if (n == cap) {
                cap *= 2;
                l = xrealloc(l, (cap + 1) * sizeof *l);
            }
            l[n++] = xstrdup(t);
        }
        free(item);
        if (!c) break;
        p = c + 1;
    }
    l[n] = NULL;
    return l;
}

void free_list(char **l) {
    if (!l) return;
    for (char **p = l; *p; p++)
        free(*p);
    free(l);
}

/* Length of the valid sequence at p (1..4), or 0 with *bad set to the
 * length of its maximal ill-formed prefix (Unicode 15, section 3.9). */
static size_t utf8_seq(const unsigned char *p, size_t left, size_t *bad) {
    unsigned char c = p[0];
    if (c >= 0x01 && c < 0x80) return 1;
    size_t n = c >= 0xc2 && c <= 0xdf   ? 2
               : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4
                                        : 0;
    *bad = 1;
    if (!n) return 0;
    /* The second byte's range excludes overlongs, surrogates and > U+10FFFF. */
    unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
    for (size_t i = 1; i < n; i++) {
        if (i >= left) return 0;
        unsigned char b = p[i];
        if (i == 1 ? b < lo || b > hi : b < 0x80 || b > 0xbf) return 0;
        *bad = i + 1;
    }
    return n;
}

size_t utf8_clean(const char *s, size_t len, char *out) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < len) {
        size_t bad = 0, n = utf8_seq(p + i, len - i, &bad);
        if (n) {
            if (out) memcpy(out + o, p + i, n);
            o += n;
            i += n;
        } else {
            if (out) memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i += bad;
        }
    }
    if (out) out[o] = 0;
    return o;
}

char *utf8_clean_dup(const char *s, size_t len, size_t *out_len) {
    char *out = xmalloc(utf8_clean(s, len, NULL) + 1);
    size_t n = utf8_clean(s, len, out);
    if (out_len) *out_len = n;
    return out;
}
