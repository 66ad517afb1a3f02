/* ${VAR} / ${VAR:-default} expansion and dotenv files. */
#include "core.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

FILE *open_text_file(const char *path, const char *what, long max, char *err, size_t errsz) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errsz, "%s: cannot open %s: %s", path, what, strerror(errno));
        return NULL;
    }
    struct stat st;
    /* A device or FIFO (-c /dev/zero) would be read forever. */
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errsz, "%s: %s is not a regular file", path, what);
        fclose(f);
        return NULL;
    }
    if (st.st_size > max) {
        snprintf(err, errsz, "%s: %s larger than %ld bytes", path, what, max);
        fclose(f);
        return NULL;
    }
    return f;
}

typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static bool var_char(char c, bool first) {
    return c == '_' || isalpha((unsigned char)c) || (!first && isdigit((unsigned char)c));
}

char *env_expand(const char *in, char **bad) {
    sbuf b = {0};
    sb_putn(&b, "", 0);
    *bad = NULL;
    const char *p = in;
    while (*p) {
        if (p[0] == '$' && p[1] == '$') { /* $$ is a literal dollar */
            sb_putn(&b, "$", 1);
            p += 2;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            sb_putn(&b, p, 1);
            p++;
            continue;
        }
        const char *name = p + 2, *q = name;
        while (var_char(*q, q == name))
            q++;
        size_t nlen = (size_t)(q - name);
        if (!nlen) {
            *bad = xstrdup(" bad ${...}: expected a variable name");
            free(b.s);
            return NULL;
        }
        char *var = xstrndup(name, nlen);
        const char *def = NULL;
        size_t dlen = 0;
        if (q[0] == ':' && q[1] == '-') {
            def = q + 2;
            /* The default ends at the brace that closes this ${, so it may
             * hold ${B} or ${B:-c} itself. */
            const char *e = def;
            int depth = 0;
            for (; *e; e++) {
                if (e[0] == '$' && e[1] == '$') {
                    e++;
                } else if (e[0] == '$' && e[1] == '{') {
                    depth++;
                    e++;
                } else if (*e == '}' && depth-- == 0) {
                    break;
                }
            }
            if (!*e) {
                free(var);
                *bad = xstrdup(" unterminated ${...}");
                free(b.s);
                return NULL;
            }
            dlen = (size_t)(e - def);
            q = e;
        }
        if (*q != '}') {
            free(var);
            *bad = xstrdup(" unterminated ${...}");
            free(b.s);
            return NULL;
        }
        const char *v = getenv(var);
        if (v && (*v || !def)) {
            sb_putn(&b, v, strlen(v));
        } else if (def) {
            char *raw = xstrndup(def, dlen);
            char *dv = env_expand(raw, bad);
            free(raw);
            if (!dv) {
                free(var);
                free(b.s);
                return NULL;
            }
            sb_putn(&b, dv, strlen(dv));
            free(dv);
        } else {
            *bad = var;
            free(b.s);
            return NULL;
        }
        free(var);
        p = q + 1;
    }
    return b.s;
}

int dotenv_parse_line(const char *line, char **key, char **val) {
    const char *p = line;
    while (isspace((unsigned char)*p))
        p++;
    if (!*p || *p == '#') return 0;
    if (!strncmp(p, "export", 6) && isspace((unsigned char)p[6])) {
        p += 6;
        while (isspace((unsigned char)*p))
            p++;
    }
    const char *k = p;
    while (var_char(*p, p == k))
        p++;
    size_t klen = (size_t)(p - k);
    while (*p == ' ' || *p == '\t')
        p++;
    if (!klen || *p != '=') return -1;
    p++;
    while (*p == ' ' || *p == '\t')
        p++;
    sbuf v = {0};
    sb_putn(&v, "", 0);
    if (*p == '"' || *p == '\'') {
        char q = *p++;
        while (*p && *p != q) {
            if (q == '"' && *p == '\\' && p[1]) {
                p++;
                char c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p == 'r' ? '\r' : *p;
                sb_putn(&v, &c, 1);
            } else {
                sb_putn(&v, p, 1);
            }
            p++;
        }
        if (*p != q) {
            free(v.s);
            return -1;
        }
        p++;
        while (isspace((unsigned char)*p))
            p++;
        if (*p && *p != '#') {
            free(v.s);
            return -1;
        }
    } else {
        const char *e = p;
        /* An unquoted value ends at " #" (inline comment) or the line end. */
        while (*e && !(*e == '#' && isspace((unsigned char)e[-1])))
            e++;
        while (e > p && isspace((unsigned char)e[-1]))
            e--;
        sb_putn(&v, p, (size_t)(e - p));
    }
    *key = xstrndup(k, klen);
    *val = v.s;
    return 1;
}

int dotenv_load(const char *path, char *err, size_t errsz) {
    FILE *f = open_text_file(path, "env file", ENV_FILE_MAX, err, errsz);
    if (!f) return -1;
    /* Parse everything first: a bad line leaves the environment untouched. */
    char **keys = NULL, **vals = NULL;
    size_t n = 0;
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (memchr(line, 0, (size_t)got)) {
            snprintf(err, errsz, "%s:%d: contains a NUL byte (not a text file?)", path, lineno);
            rc = -1;
            break;
        }
        line[strcspn(line, "\r\n")] = 0;
        char *k, *v;
        int r = dotenv_parse_line(line, &k, &v);
        if (r < 0) {
            snprintf(err, errsz, "%s:%d: not a KEY=value line", path, lineno);
            rc = -1;
            break;
        }
        if (r == 1) {
            keys = xrealloc(keys, (n + 1) * sizeof *keys);
            vals = xrealloc(vals, (n + 1) * sizeof *vals);
            keys[n] = k;
            vals[n++] = v;
        }
    }
    free(line);
    fclose(f);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) setenv(keys[i], vals[i], 0);
        free(keys[i]);
        free(vals[i]);
    }
    free(keys);
    free(vals);
    return rc;
}
