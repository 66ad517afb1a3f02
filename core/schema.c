/* Validates a manifest section against a plugin's option schema. */
#include "core.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *opt_type_name(rd_opt_type t) {
    switch (t) {
    case RD_OPT_STRING:
        return "string";
    case RD_OPT_INT:
        return "int";
    case RD_OPT_BOOL:
        return "bool";
    case RD_OPT_DOUBLE:
        return "number";
    case RD_OPT_ENUM:
        return "enum";
    case RD_OPT_LIST:
        return "list";
    case RD_OPT_DURATION:
        return "duration";
    case RD_OPT_URL:
        return "url";
    }
    return "?";
}

static int parse_bool(const char *s, bool *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) return *out = true, 0;
        if (!strcasecmp(s, no[i])) return *out = false, 0;
    }
    return -1;
}

/* "250ms", "30s", "5m", "2h", "1d"; a bare number is seconds. */
int parse_duration_ms(const char *s, int64_t *out) {
    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno || n > (unsigned long long)INT64_MAX / 86400000) return -1;
    int64_t unit = 1000;
    if (!strncmp(end, "ms", 2))
        unit = 1, end += 2;
    else if (*end == 's')
        unit = 1000, end++;
    else if (*end == 'm')
        unit = 60000, end++;
    else if (*end == 'h')
        unit = 3600000, end++;
    else if (*end == 'd')
        unit = 86400000, end++;
    while (isspace((unsigned char)*end))
        end++;
    if (*end) return -1;
    *out = (int64_t)n * unit;
    return 0;
}

/* An absolute http(s) URL with a non-empty host and no blanks or controls. */
int check_http_url(const char *s) {
    const char *h = !strncasecmp(s, "http://", 7)    ? s + 7
                    : !strncasecmp(s, "https://", 8) ? s + 8
                                                     : NULL;
    if (!h || !*h || *h == '/' || *h == ':' || *h == '?' || *h == '#') return -1;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) return -1;
    return 0;
}

static bool bounded(const rd_option *o) {
    return o->min <= o->max && !(o->min == 0 && o->max == 0);
}

/* Converts text to the typed value; returns NULL or a problem text. */
static const char *convert(const rd_option *o, const char *text, cfg_val *v, char *tmp,
                           size_t tmpsz) {
    free(v->str);
    free_list(v->list);
    v->list = NULL;
    v->str = xstrdup(text);
    switch (o->type) {
    case RD_OPT_STRING:
        break;
    case RD_OPT_INT: {
        int64_t i;
        if (parse_i64(text, &i)) return "expected an integer";
        if (bounded(o) && (i < o->min || i > o->max)) {
            snprintf(tmp, tmpsz, "%lld is out of range [%.0f, %.0f]", (long long)i, o->min, o->max);
            return tmp;
        }
        v->i = i;
        v->d = (double)i;
        break;
    }
    case RD_OPT_DOUBLE: {
        char *end;
        errno = 0;
        double d = strtod(text, &end);
        while (isspace((unsigned char)*end))
            end++;
        if (errno || end == text || *end || !isfinite(d)) return "expected a number";
        if (bounded(o) && (d < o->min || d > o->max)) {
            snprintf(tmp, tmpsz, "%g is out of range [%g, %g]", d, o->min, o->max);
            return tmp;
        }
        v->d = d;
        v->i = (int64_t)d;
        break;
    }
    case RD_OPT_BOOL: {
        bool b;
        if (parse_bool(text, &b)) return "expected true or false";
        v->i = b;
        v->d = b;
        break;
    }
    case RD_OPT_ENUM: {
        size_t n = 0;
        for (; o->choices && o->choices[n]; n++) {
            if (!strcmp(o->choices[n], text)) {
                v->i = (int64_t)n;
                return NULL;
            }
        }
        int off = snprintf(tmp, tmpsz, "'%s' is not one of:", text);
        for (size_t i = 0; i < n && off > 0 && (size_t)off < tmpsz; i++)
            off += snprintf(tmp + off, tmpsz - (size_t)off, " %s", o->choices[i]);
        const char *s = suggest(text, o->choices, n);
        if (s && off > 0 && (size_t)off < tmpsz)
            snprintf(tmp + off, tmpsz - (size_t)off, " (did you mean '%s'?)", s);
        return tmp;
    }
    case RD_OPT_LIST:
        v->list = split_list(text);
        break;
    case RD_OPT_DURATION: {
        int64_t ms;
        if (parse_duration_ms(text, &ms))
            return "expected a duration such as 250ms, 30s, 5m, 2h or 1d (a bare number is "
                   "seconds)";
        if (bounded(o) && ((double)ms < o->min * 1000 || (double)ms > o->max * 1000)) {
            snprintf(tmp, tmpsz, "%s is out of range [%.0fs, %.0fs]", text, o->min, o->max);
            return tmp;
        }
        v->i = ms;
        v->d = (double)ms / 1000;
        break;
    }
    case RD_OPT_URL:
        if (check_http_url(text)) return "expected an absolute http:// or https:// URL with a host";
        break;
    }
    return NULL;
}

size_t plugin_option_size(const rd_plugin *d) {
    return RD_HAS(d, option_size) ? d->option_size : RD_OPTION_SIZE_V1;
}

const rd_option *opt_step(const rd_option *opts, size_t opt_size, size_t i) {
    return (const rd_option *)(const void *)((const char *)opts + i * opt_size);
}

const rd_option *opt_at(const rd_plugin *d, size_t i) {
    return opt_step(d->options, plugin_option_size(d), i);
}

size_t bind_member_size(rd_opt_type t) {
    switch (t) {
    case RD_OPT_STRING:
    case RD_OPT_URL:
        return sizeof(const char *);
    case RD_OPT_INT:
    case RD_OPT_DURATION:
        return sizeof(int64_t);
    case RD_OPT_BOOL:
    case RD_OPT_ENUM:
        return sizeof(int);
    case RD_OPT_DOUBLE:
        return sizeof(double);
    case RD_OPT_LIST:
        return sizeof(const char *const *);
    }
    return 0;
}

int cfg_bind_set(const cfg_set *c, void *conf, size_t conf_size, char *err, size_t errsz) {
    static const char *const empty[] = {NULL};
    for (size_t i = 0; i < c->n; i++) {
        const rd_option *o = c->v[i].opt;
        if (!o->bind_len) continue;
        if (o->bind_len != bind_member_size(o->type)) {
            snprintf(err, errsz, "option '%s': bound member is %u bytes, a %s needs %zu", o->key,
                     o->bind_len, opt_type_name(o->type), bind_member_size(o->type));
            return -1;
        }
        if (o->offset > conf_size || conf_size - o->offset < o->bind_len) {
            snprintf(err, errsz,
                     "option '%s': bound at offset %zu (%u bytes), outside the %zu-byte config "
                     "struct handed to cfg_bind",
                     o->key, o->offset, o->bind_len, conf_size);
            return -1;
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        const cfg_val *v = &c->v[i];
        const rd_option *o = v->opt;
        if (!o->bind_len) continue;
        char *at = (char *)conf + o->offset;
        switch (o->type) {
        case RD_OPT_STRING:
        case RD_OPT_URL: {
            const char *s = v->have ? v->str : NULL;
            memcpy(at, &s, sizeof s);
            break;
        }
        case RD_OPT_INT:
        case RD_OPT_DURATION: {
            int64_t x = v->have ? v->i : 0;
            memcpy(at, &x, sizeof x);
            break;
        }
        case RD_OPT_BOOL:
        case RD_OPT_ENUM: {
            int x = v->have ? (int)v->i : o->type == RD_OPT_ENUM ? -1 : 0;
            memcpy(at, &x, sizeof x);
            break;
        }
        case RD_OPT_DOUBLE: {
            double d = v->have ? v->d : 0;
            memcpy(at, &d, sizeof d);
            break;
        }
        case RD_OPT_LIST: {
            const char *const *l = v->list ? (const char *const *)v->list : empty;
            memcpy(at, &l, sizeof l);
            break;
        }
        }
    }
    return 0;
}

cfg_val *cfg_find(cfg_set *c, const char *key) {
    for (size_t i = 0; c && i < c->n; i++)
        if (!strcmp(c->v[i].opt->key, key)) return &c->v[i];
    return NULL;
}

void cfg_free(cfg_set *c) {
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].str);
        free_list(c->v[i].list);
    }
    free(c->v);
    free(c->opts);
    c->v = NULL;
    c->opts = NULL;
    c->n = 0;
}

int schema_apply(const manifest *m, mf_section *s, const rd_option *opts,
                 const char *const *reserved, cfg_set *out, char *err, size_t errsz) {
    return schema_apply_sized(m, s, opts, sizeof(rd_option), reserved, out, err, errsz);
}

int schema_apply_sized(const manifest *m, mf_section *s, const rd_option *opts, size_t opt_size,
                       const char *const *reserved, cfg_set *out, char *err, size_t errsz) {
    size_t n = 0;
    while (opts && opt_step(opts, opt_size, n)->key)
        n++;
    /* A copy in this build's layout: members the plugin's element lacks
     * are 0 (not bound). */
    out->opts = xcalloc(n ? n : 1, sizeof *out->opts);
    for (size_t i = 0; i < n; i++)
        memcpy(&out->opts[i], opt_step(opts, opt_size, i),
               opt_size < sizeof(rd_option) ? opt_size : sizeof(rd_option));
    out->v = xcalloc(n, sizeof *out->v);
    out->n = n;
    char tmp[256];
    for (size_t i = 0; i < n; i++) {
        const rd_option *o = &out->opts[i];
        cfg_val *v = &out->v[i];
        v->opt = o;
        if (o->type == RD_OPT_ENUM) v->i = -1; /* absent without default */
        mf_kv *kv = section_get(s, o->key);
        const char *text = kv ? kv->val : o->def;
        if (kv) kv->used = true;
        if (!kv && (o->flags & RD_OPT_REQUIRED)) {
            snprintf(err, errsz, "%s:%d: [%s] missing required key '%s' (%s)", m->path, s->line,
                     s->name, o->key, o->help ? o->help : opt_type_name(o->type));
            return -1;
        }
        if (!text) continue;
        if (kv && (o->flags & RD_OPT_SECRET)) secret_add(kv->val);
        if (kv && (o->flags & RD_OPT_REQUIRED) && !*kv->val) {
            snprintf(err, errsz, "%s:%d: [%s] %s: required key is empty%s", m->path, kv->line,
                     s->name, o->key, strchr(kv->raw, '$') ? " (check the environment)" : "");
            return -1;
        }
        const char *problem = convert(o, text, v, tmp, sizeof tmp);
        if (problem) {
            snprintf(err, errsz, "%s:%d: [%s] %s: %s%s", m->path, kv ? kv->line : s->line, s->name,
                     o->key, problem, kv ? "" : " (in the plugin's default)");
            return -1;
        }
        v->set = kv != NULL;
        v->have = true;
    }
    for (size_t j = 0; j < s->nkv; j++) {
        mf_kv *kv = &s->kv[j];
        bool ok = kv->used;
        for (size_t r = 0; !ok && reserved && reserved[r]; r++)
            ok = !strcmp(reserved[r], kv->key);
        if (ok) continue;
        size_t nr = 0;
        while (reserved && reserved[nr])
            nr++;
        const char **cands = xcalloc(n + nr, sizeof *cands);
        size_t nc = 0;
        for (size_t i = 0; i < n; i++)
            cands[nc++] = out->opts[i].key;
        for (size_t r = 0; reserved && reserved[r]; r++)
            cands[nc++] = reserved[r];
        const char *sug = suggest(kv->key, cands, nc);
        snprintf(err, errsz, "%s:%d: [%s] unknown key '%s'%s%s%s", m->path, kv->line, s->name,
                 kv->key, sug ? " (did you mean '" : "", sug ? sug : "", sug ? "'?)" : "");
        free(cands);
        return -1;
    }
    return 0;
}
