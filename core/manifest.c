/* INI manifest: inih does the parsing; a line-counting reader gives every
 * key its line number and catches duplicate sections and long lines. */
#include "core.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *text; /* remaining input */
    int lineno;
    manifest *m;
    mf_section *cur;
    char *err;
    size_t errsz;
    bool failed;
    bool raw; /* keep ${VAR} unexpanded (key-set comparisons) */
} parse_state;

static void fail(parse_state *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(parse_state *ps, const char *fmt, ...) {
    if (ps->failed) return;
    ps->failed = true;
    int n = snprintf(ps->err, ps->errsz, "%s:%d: ", ps->m->path, ps->lineno);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < ps->errsz) vsnprintf(ps->err + n, ps->errsz - (size_t)n, fmt, ap);
    va_end(ap);
}

mf_section *manifest_section(manifest *m, const char *name) {
    for (size_t i = 0; i < m->nsec; i++)
        if (!strcmp(m->sec[i].name, name)) return &m->sec[i];
    return NULL;
}

mf_kv *section_get(mf_section *s, const char *key) {
    for (size_t i = 0; s && i < s->nkv; i++)
        if (!strcmp(s->kv[i].key, key)) return &s->kv[i];
    return NULL;
}

static bool valid_name(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-') return false;
    return true;
}

static void new_section(parse_state *ps, const char *name) {
    manifest *m = ps->m;
    if (manifest_section(m, name)) {
        fail(ps, "[%s] duplicate section (first at line %d)", name,
             manifest_section(m, name)->line);
        return;
    }
    const char *dot = strchr(name, '.');
    char *kind = dot ? xstrndup(name, (size_t)(dot - name)) : xstrdup(name);
    const char *inst = dot ? dot + 1 : "";
    static const char *const kinds[] = {"router", "transport", "backend",
                                        "sink",   "persona",   "inbound"};
    bool known = false;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        known |= !strcmp(kind, kinds[i]);
    if (!known) {
        const char *s = suggest(kind, kinds, sizeof kinds / sizeof *kinds);
        fail(ps, "[%s] unknown section kind '%s'%s%s%s", name, kind, s ? " (did you mean '" : "",
             s ? s : "", s ? "'?)" : "");
        free(kind);
        return;
    }
    if (!strcmp(kind, "router") ? dot != NULL : !valid_name(inst)) {
        fail(ps, "[%s] section names are [router] or [%s.NAME] with NAME of letters, digits, _ -",
             name, kind);
        free(kind);
        return;
    }
    m->sec = xrealloc(m->sec, (m->nsec + 1) * sizeof *m->sec);
    mf_section *s = &m->sec[m->nsec++];
    memset(s, 0, sizeof *s);
    s->name = xstrdup(name);
    s->kind = kind;
    s->inst = xstrdup(inst);
    s->line = ps->lineno;
    ps->cur = s;
}

/* inih reader: one line per call, leading blanks removed so that indented
 * keys are never taken as continuation lines. */
static char *reader(char *str, int num, void *stream) {
    parse_state *ps = stream;
    if (!*ps->text || ps->failed) return NULL;
    const char *nl = strchr(ps->text, '\n');
    size_t len = nl ? (size_t)(nl - ps->text) : strlen(ps->text);
    const char *line = ps->text;
    ps->text += len + (nl ? 1 : 0);
    ps->lineno++;
    if (ps->lineno == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3))
        line += 3, len -= 3; /* UTF-8 byte order mark */
    while (len && isspace((unsigned char)*line) && *line != '\n')
        line++, len--;
    /* Inline comments: a ; after a blank, outside "double quotes". inih's
     * own stripping would cut quoted values. */
    bool quoted = false;
    for (size_t i = 0; i < len && line[0] != ';' && line[0] != '#'; i++) {
        if (line[i] == '"') quoted = !quoted;
        if (!quoted && line[i] == ';' && i && isspace((unsigned char)line[i - 1])) {
            while (i && isspace((unsigned char)line[i - 1]))
                i--;
            len = i;
            break;
        }
    }
    if (len + 2 > (size_t)num) {
        fail(ps, "line longer than %d characters", num - 2);
        return NULL;
    }
    memcpy(str, line, len);
    str[len] = '\n';
    str[len + 1] = 0;
    if (len && line[0] == '[') {
        const char *e = memchr(line, ']', len);
        if (e) {
            char *name = xstrndup(line + 1, (size_t)(e - line - 1));
            new_section(ps, str_trim(name));
            free(name);
        }
    }
    return str;
}

static int handler(void *user, const char *section, const char *name, const char *value) {
    parse_state *ps = user;
    if (ps->failed) return 0;
    (void)section; /* inih's copy is untrimmed and capped in length */
    if (!ps->cur) {
        fail(ps, "key '%s' outside of a section", name);
        return 0;
    }
    mf_section *s = ps->cur;
    mf_kv *prev = section_get(s, name);
    if (prev) {
        fail(ps, "[%s] %s: duplicate key (first at line %d)", section, name, prev->line);
        return 0;
    }
    s->kv = xrealloc(s->kv, (s->nkv + 1) * sizeof *s->kv);
    mf_kv *kv = &s->kv[s->nkv++];
    memset(kv, 0, sizeof *kv);
    kv->key = xstrdup(name);
    size_t vl = strlen(value);
    /* "quoted" keeps leading/trailing blanks and ; characters. */
    if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"')
        kv->raw = xstrndup(value + 1, vl - 2);
    else
        kv->raw = xstrdup(value);
    kv->line = ps->lineno;
    char *bad = NULL;
    kv->val = ps->raw ? xstrdup(kv->raw) : env_expand(kv->raw, &bad);
    if (!kv->val) {
        if (bad[0] == ' ')
            fail(ps, "[%s] %s:%s", section, name, bad);
        else
            fail(ps,
                 "[%s] %s: environment variable ${%s} is not set (use ${%s:-default} for a "
                 "default)",
                 section, name, bad, bad);
        free(bad);
        return 0;
    }
    return 1;
}

static manifest *parse(const char *name, const char *text, bool raw, char *err, size_t errsz) {
    manifest *m = xcalloc(1, sizeof *m);
    m->path = xstrdup(name);
    sha256_hex(text, strlen(text), m->sha256);
    parse_state ps = {.text = text, .m = m, .err = err, .errsz = errsz, .raw = raw};
    /* Debian's inih exposes its build options as globals. */
    ini_allow_multiline = false;
    ini_use_stack = false;
    ini_max_line = 16384;
    ini_stop_on_first_error = true;
    ini_initial_alloc = 16384;
    ini_allow_inline_comments = false;
    int rc = ini_parse_stream(reader, &ps, handler, &ps);
    if (!ps.failed && rc > 0) {
        ps.lineno = rc;
        fail(&ps, "syntax error (expected [section] or key = value)");
    } else if (!ps.failed && rc < 0) {
        fail(&ps, "cannot parse manifest");
    }
    if (ps.failed) {
        manifest_free(m);
        return NULL;
    }
    return m;
}

manifest *manifest_parse_string(const char *name, const char *text, char *err, size_t errsz) {
    return parse(name, text, false, err, errsz);
}

static manifest *load(const char *path, bool raw, char *err, size_t errsz) {
    FILE *f = open_text_file(path, "manifest", MANIFEST_MAX, err, errsz);
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len > (size_t)MANIFEST_MAX) { /* grew since fstat */
            snprintf(err, errsz, "%s: manifest larger than %ld bytes", path, MANIFEST_MAX);
            free(buf);
            fclose(f);
            return NULL;
        }
        if (len + 1 >= cap) buf = xrealloc(buf, cap *= 2);
    }
    buf[len] = 0;
    fclose(f);
    if (memchr(buf, 0, len)) {
        snprintf(err, errsz, "%s: not a text file", path);
        free(buf);
        return NULL;
    }
    manifest *m = parse(path, buf, raw, err, errsz);
    free(buf);
    return m;
}

manifest *manifest_load(const char *path, char *err, size_t errsz) {
    return load(path, false, err, errsz);
}

manifest *manifest_load_raw(const char *path, char *err, size_t errsz) {
    return load(path, true, err, errsz);
}

void manifest_free(manifest *m) {
    if (!m) return;
    for (size_t i = 0; i < m->nsec; i++) {
        mf_section *s = &m->sec[i];
        for (size_t j = 0; j < s->nkv; j++) {
            free(s->kv[j].key);
            free(s->kv[j].raw);
            free(s->kv[j].val);
        }
        free(s->kv);
        free(s->name);
        free(s->kind);
        free(s->inst);
    }
    free(m->sec);
    free(m->path);
    free(m);
}
