/*
 * Markdown replies as Telegram entities.
 *
 * md4c (Debian libmd4c-dev) reads the Markdown: it is a maintained
 * CommonMark parser with the GFM extensions agents use (strikethrough,
 * tables, task lists), a callback interface that maps directly onto
 * "text plus ranges", and no DOM to allocate. cmark-gfm would do as well but
 * builds a tree we would only walk once.
 *
 * The renderer writes plain text and records entities as byte ranges of it;
 * tg_format() then cuts the text with tg_split() and gives each part the
 * entities clipped to it, in UTF-16 code units. Entities are made to obey
 * Telegram's nesting rules: ranges nest or are disjoint (md4c's spans nest),
 * bold/italic/strikethrough never contain code (they are cut around it),
 * code is never inside a link, quotes are never nested.
 */
#include "telegram_format.h"

#include <cjson/cJSON.h>
#include <md4c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telegram_parse.h"

#define URL_MAX 2048 /* longer links are shown as text */
#define LANG_MAX 32

typedef struct dent {
    tg_ent_type type;
    size_t b0, b1; /* byte range in the rendered text */
    char *arg;
    size_t seq; /* creation order, for a stable sort */
} dent;

typedef struct list_lvl {
    int ordered, tight;
    unsigned next;
    char delim;
} list_lvl;

/* What leave_span/leave_block must undo. */
typedef struct frame {
    int span, type; /* a span (MD_SPANTYPE) or a block (MD_BLOCKTYPE) */
    long ent;       /* entity opened at enter, or -1 */
    size_t start;   /* output length at enter */
    size_t indent;  /* indent added at enter (list items) */
    char *src;      /* image source, shown when the alt text is empty */
} frame;

typedef struct rnd {
    char *buf;
    size_t len, cap;
    int oom;
    dent *ents;
    size_t nents, capents;
    frame *fr;
    size_t nfr, capfr;
    list_lvl *lists;
    size_t nlists, caplists;
    int fresh;     /* a container just began: its first block needs no separator */
    size_t indent; /* spaces after each line break (list item content) */
    int style_depth[3];
    int quote_depth, link_depth, code_span, verbatim;
    size_t pending_nl; /* line breaks held back at the end of a code block */
    int rows, cells;   /* table rows so far, cells so far in the row */
} rnd;

static void put(rnd *r, const char *s, size_t n) {
    if (r->oom) return;
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *b = realloc(r->buf, cap);
        if (!b) {
            r->oom = 1;
            return;
        }
        r->buf = b;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, s, n);
    r->len += n;
    r->buf[r->len] = 0;
}

static void put_spaces(rnd *r, size_t n) {
    static const char sp[] = "                                ";
    while (n > 0) {
        size_t k = n < sizeof sp - 1 ? n : sizeof sp - 1;
        put(r, sp, k);
        n -= k;
    }
}

/* Deeper lists are not indented further: the output stays linear in the
 * input however deep the nesting. */
#define INDENT_MAX 24

static void newline(rnd *r) {
    put(r, "\n", 1);
    put_spaces(r, r->indent < INDENT_MAX ? r->indent : INDENT_MAX);
}

/* Telegram drops '\r' and shows other control characters oddly; removing
 * them here keeps the offsets we compute equal to Telegram's. */
static void put_clean(rnd *r, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && ((unsigned char)s[j] >= 0x20 || s[j] == '\t') && s[j] != 0x7F)
            j++;
        put(r, s + i, j - i);
        if (j >= n) break;
        if (s[j] == '\n')
            newline(r);
        else if (s[j] != '\r')
            put(r, " ", 1);
        i = j + 1;
    }
}

static void put_cp(rnd *r, uint32_t cp) {
    char b[4];
    size_t n;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if (cp < 0x20 && cp != '\t' && cp != '\n') {
        put(r, " ", 1);
        return;
    }
    if (cp == '\n') {
        newline(r);
        return;
    }
    put(r, b, n);
}

/* md4c hands HTML entity references over undecoded. Numeric ones and the
 * names agents use are decoded; any other stays as written. */
static void put_entity(rnd *r, const char *s, size_t n) {
    static const struct {
        const char *name;
        uint32_t cp;
    } named[] = {{"amp", '&'},      {"lt", '<'},        {"gt", '>'},       {"quot", '"'},
                 {"apos", '\''},    {"nbsp", 0xA0},     {"copy", 0xA9},    {"reg", 0xAE},
                 {"trade", 0x2122}, {"hellip", 0x2026}, {"mdash", 0x2014}, {"ndash", 0x2013},
                 {"laquo", 0xAB},   {"raquo", 0xBB},    {"euro", 0x20AC},  {"times", 0xD7},
                 {"divide", 0xF7},  {"deg", 0xB0},      {"middot", 0xB7},  {"bull", 0x2022},
                 {"larr", 0x2190},  {"rarr", 0x2192},   {"uarr", 0x2191},  {"darr", 0x2193}};
    if (n >= 4 && s[0] == '&' && s[n - 1] == ';') {
        if (s[1] == '#') {
            uint32_t cp = 0;
            int hex = s[2] == 'x' || s[2] == 'X';
            size_t i = hex ? 3 : 2, digits = 0;
            for (; i < n - 1 && digits < 8; i++, digits++) {
                char c = s[i];
                int v = c >= '0' && c <= '9'          ? c - '0'
                        : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                      : -1;
                if (v < 0) break;
                cp = cp * (hex ? 16 : 10) + (uint32_t)v;
            }
            if (i == n - 1 && digits > 0) {
                put_cp(r, cp);
                return;
            }
        } else {
            for (size_t k = 0; k < sizeof named / sizeof named[0]; k++)
                if (strlen(named[k].name) == n - 2 && !memcmp(named[k].name, s + 1, n - 2)) {
                    put_cp(r, named[k].cp);
                    return;
                }
        }
    }
    put_clean(r, s, n);
}

static long ent_open(rnd *r, tg_ent_type type, char *arg) {
    if (r->oom) {
        free(arg);
        return -1;
    }
    if (r->nents == r->capents) {
        size_t cap = r->capents ? r->capents * 2 : 32;
        dent *e = realloc(r->ents, cap * sizeof *e);
        if (!e) {
            r->oom = 1;
            free(arg);
            return -1;
        }
        r->ents = e;
        r->capents = cap;
    }
    dent *d = &r->ents[r->nents];
    d->type = type;
    d->b0 = d->b1 = r->len;
    d->arg = arg;
    d->seq = r->nents;
    return (long)r->nents++;
}

static void ent_close(rnd *r, long i) {
    if (i >= 0 && (size_t)i < r->nents) r->ents[i].b1 = r->len;
}

static frame *push(rnd *r, int span, int type) {
    if (r->nfr == r->capfr) {
        size_t cap = r->capfr ? r->capfr * 2 : 16;
        frame *f = realloc(r->fr, cap * sizeof *f);
        if (!f) {
            r->oom = 1;
            return NULL;
        }
        r->fr = f;
        r->capfr = cap;
    }
    frame *f = &r->fr[r->nfr++];
    f->span = span;
    f->type = type;
    f->ent = -1;
    f->start = r->len;
    f->indent = 0;
    f->src = NULL;
    return f;
}

static frame pop(rnd *r) {
    frame f = {.ent = -1};
    if (r->nfr) f = r->fr[--r->nfr];
    return f;
}

/* Starts a block: a blank line after what came before (a line break
 * between items of a tight list), none at the start of a container. */
static void block_sep(rnd *r) {
    if (r->fresh || r->len == 0) {
        r->fresh = 0;
        return;
    }
    int tight = r->nlists && r->lists[r->nlists - 1].tight;
    put(r, tight ? "\n" : "\n\n", tight ? 1 : 2);
    put_spaces(r, r->indent < INDENT_MAX ? r->indent : INDENT_MAX);
}

/* An MD_ATTRIBUTE as a string, entity references decoded. */
static char *attr_str(const MD_ATTRIBUTE *a) {
    if (!a || !a->text) return NULL;
    rnd tmp = {0};
    for (unsigned i = 0; a->substr_offsets[i] < a->size; i++) {
        const char *s = a->text + a->substr_offsets[i];
        size_t n = a->substr_offsets[i + 1] - a->substr_offsets[i];
        if (a->substr_types[i] == MD_TEXT_ENTITY)
            put_entity(&tmp, s, n);
        else if (a->substr_types[i] == MD_TEXT_NULLCHAR)
            put(&tmp, "\xEF\xBF\xBD", 3);
        else
            put(&tmp, s, n);
    }
    if (tmp.oom) {
        free(tmp.buf);
        return NULL;
    }
    return tmp.buf ? tmp.buf : calloc(1, 1);
}

/* Links Telegram opens: absolute http(s) with a host, or tg://. Anything
 * else (relative, javascript:, over-long) is shown as its text only. */
static char *link_url(const MD_ATTRIBUTE *a) {
    char *u = attr_str(a);
    if (!u) return NULL;
    size_t n = strlen(u);
    int ok = n > 0 && n <= URL_MAX;
    for (size_t i = 0; ok && i < n; i++)
        if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7F) ok = 0;
    size_t pre = !strncasecmp(u, "https://", 8) ? 8 : !strncasecmp(u, "http://", 7) ? 7 : 0;
    if (ok && pre)
        ok = n > pre && u[pre] != '/' && u[pre] != '?' && u[pre] != '#';
    else if (ok)
        ok = !strncasecmp(u, "tg://", 5) && n > 5;
    if (!ok) {
        free(u);
        return NULL;
    }
    return u;
}

static char *code_lang(const MD_ATTRIBUTE *a) {
    char *l = attr_str(a);
    if (!l) return NULL;
    size_t n = strlen(l);
    int ok = n > 0 && n <= LANG_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        char c = l[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '+' || c == '#' || c == '.' || c == '-';
    }
    if (!ok) {
        free(l);
        return NULL;
    }
    return l;
}

static int enter_block(MD_BLOCKTYPE type, void *detail, void *ud) {
    rnd *r = ud;
    frame *f = push(r, 0, (int)type);
    if (!f) return -1;
    switch (type) {
    case MD_BLOCK_DOC:
        break;
    case MD_BLOCK_QUOTE:
        block_sep(r);
        f->start = r->len;
        if (r->quote_depth++ == 0) f->ent = ent_open(r, TG_ENT_QUOTE, NULL);
        r->fresh = 1;
        break;
    case MD_BLOCK_UL:
    case MD_BLOCK_OL: {
        block_sep(r);
        if (r->nlists == r->caplists) {
            size_t cap = r->caplists ? r->caplists * 2 : 8;
            list_lvl *l = realloc(r->lists, cap * sizeof *l);
            if (!l) return -1;
            r->lists = l;
            r->caplists = cap;
        }
        list_lvl *l = &r->lists[r->nlists++];
        memset(l, 0, sizeof *l);
        l->ordered = type == MD_BLOCK_OL;
        if (l->ordered) {
            MD_BLOCK_OL_DETAIL *d = detail;
            l->tight = d->is_tight;
            l->next = d->start;
            l->delim = d->mark_delimiter;
        } else {
            l->tight = ((MD_BLOCK_UL_DETAIL *)detail)->is_tight;
        }
        r->fresh = 1;
        break;
    }
    case MD_BLOCK_LI: {
        block_sep(r);
        MD_BLOCK_LI_DETAIL *d = detail;
        list_lvl *l = r->nlists ? &r->lists[r->nlists - 1] : NULL;
        char mark[32];
        size_t width; /* in characters: the continuation indent */
        if (d && d->is_task) {
            int done = d->task_mark == 'x' || d->task_mark == 'X';
            snprintf(mark, sizeof mark, "%s ", done ? "\xE2\x98\x91" : "\xE2\x98\x90");
            width = 2;
        } else if (l && l->ordered) {
            snprintf(mark, sizeof mark, "%u%c ", l->next, l->delim ? l->delim : '.');
            l->next++;
            width = strlen(mark);
        } else {
            /* Bullets alternate with depth, as in most renderers. */
            snprintf(mark, sizeof mark, "%s ", r->nlists % 2 ? "\xE2\x80\xA2" : "\xE2\x97\xA6");
            width = 2;
        }
        put(r, mark, strlen(mark));
        f->indent = width;
        r->indent += width;
        r->fresh = 1;
        break;
    }
    case MD_BLOCK_HR:
        block_sep(r);
        put(r, "\xE2\x80\x94\xE2\x80\x94\xE2\x80\x94", 9);
        break;
    case MD_BLOCK_H:
        block_sep(r);
        f->ent = ent_open(r, TG_ENT_BOLD, NULL);
        break;
    case MD_BLOCK_CODE: {
        block_sep(r);
        MD_BLOCK_CODE_DETAIL *d = detail;
        f->ent = ent_open(r, TG_ENT_PRE, d ? code_lang(&d->lang) : NULL);
        r->verbatim = 1;
        r->pending_nl = 0;
        break;
    }
    case MD_BLOCK_HTML:
        block_sep(r);
        r->verbatim = 1;
        r->pending_nl = 0;
        break;
    case MD_BLOCK_TABLE:
        r->rows = 0;
        /* fall through */
    case MD_BLOCK_P:
        block_sep(r);
        break;
    case MD_BLOCK_TR:
        if (r->rows++ > 0) newline(r);
        r->cells = 0;
        break;
    case MD_BLOCK_TH:
    case MD_BLOCK_TD:
        if (r->cells++ > 0) put(r, " | ", 3);
        if (type == MD_BLOCK_TH) f->ent = ent_open(r, TG_ENT_BOLD, NULL);
        break;
    default:
        break;
    }
    r->fresh = r->fresh && (type == MD_BLOCK_QUOTE || type == MD_BLOCK_UL || type == MD_BLOCK_OL ||
                            type == MD_BLOCK_LI);
    return r->oom ? -1 : 0;
}

static void close_span(rnd *r, frame f);

static int leave_block(MD_BLOCKTYPE type, void *detail, void *ud) {
    (void)detail;
    rnd *r = ud;
    while (r->nfr && r->fr[r->nfr - 1].span)
        close_span(r, pop(r));
    frame f = pop(r);
    switch (type) {
    case MD_BLOCK_QUOTE:
        r->quote_depth--;
        ent_close(r, f.ent);
        break;
    case MD_BLOCK_UL:
    case MD_BLOCK_OL:
        if (r->nlists) r->nlists--;
        break;
    case MD_BLOCK_LI:
        r->indent -= f.indent;
        break;
    case MD_BLOCK_CODE:
    case MD_BLOCK_HTML:
        /* The block's last line break is a separator, not content. */
        r->verbatim = 0;
        r->pending_nl = 0;
        ent_close(r, f.ent);
        break;
    default:
        ent_close(r, f.ent);
        break;
    }
    r->fresh = 0;
    return r->oom ? -1 : 0;
}

static int enter_span(MD_SPANTYPE type, void *detail, void *ud) {
    rnd *r = ud;
    frame *f = push(r, 1, (int)type);
    if (!f) return -1;
    switch (type) {
    case MD_SPAN_EM:
    case MD_SPAN_STRONG:
    case MD_SPAN_DEL: {
        int k = type == MD_SPAN_EM ? 0 : type == MD_SPAN_STRONG ? 1 : 2;
        static const tg_ent_type tt[] = {TG_ENT_ITALIC, TG_ENT_BOLD, TG_ENT_STRIKE};
        /* The same style nested adds nothing; one entity covers it. */
        if (r->style_depth[k]++ == 0) f->ent = ent_open(r, tt[k], NULL);
        break;
    }
    case MD_SPAN_CODE:
        r->code_span = 1;
        if (!r->link_depth) f->ent = ent_open(r, TG_ENT_CODE, NULL);
        break;
    case MD_SPAN_A: {
        char *u = r->link_depth ? NULL : link_url(&((MD_SPAN_A_DETAIL *)detail)->href);
        if (u) f->ent = ent_open(r, TG_ENT_LINK, u);
        r->link_depth++;
        break;
    }
    case MD_SPAN_IMG: {
        MD_SPAN_IMG_DETAIL *d = detail;
        char *u = link_url(&d->src);
        if (u && !r->link_depth) {
            f->src = strdup(u);
            f->ent = ent_open(r, TG_ENT_LINK, u);
        } else {
            free(u);
        }
        r->link_depth++;
        break;
    }
    default:
        break;
    }
    return r->oom ? -1 : 0;
}

static void close_span(rnd *r, frame f) {
    switch ((MD_SPANTYPE)f.type) {
    case MD_SPAN_EM:
    case MD_SPAN_STRONG:
    case MD_SPAN_DEL: {
        int k = f.type == MD_SPAN_EM ? 0 : f.type == MD_SPAN_STRONG ? 1 : 2;
        r->style_depth[k]--;
        break;
    }
    case MD_SPAN_CODE:
        r->code_span = 0;
        break;
    case MD_SPAN_A:
    case MD_SPAN_IMG:
        r->link_depth--;
        /* An image without alt text shows its address. */
        if (f.src && r->len == f.start) put_clean(r, f.src, strlen(f.src));
        break;
    default:
        break;
    }
    free(f.src);
    ent_close(r, f.ent);
}

/* md4c 0.4.8 may leave a span open at the end of its block (seen with
 * links and strikethrough in malformed input) and report its end later, or
 * never: a span is closed at the latest with its block, and an end that
 * does not match the innermost open span is ignored, so entities always
 * nest. */
static int leave_span(MD_SPANTYPE type, void *detail, void *ud) {
    (void)detail;
    rnd *r = ud;
    if (r->nfr && r->fr[r->nfr - 1].span && r->fr[r->nfr - 1].type == (int)type)
        close_span(r, pop(r));
    return r->oom ? -1 : 0;
}

static int on_text(MD_TEXTTYPE type, const MD_CHAR *s, MD_SIZE n, void *ud) {
    rnd *r = ud;
    r->fresh = 0;
    if (r->verbatim) {
        /* Code and HTML blocks: lines end with '\n'; hold the last ones
         * back so the block ends with its last character. */
        for (; r->pending_nl > 0; r->pending_nl--)
            newline(r);
        size_t end = n;
        while (end > 0 && s[end - 1] == '\n') {
            end--;
            r->pending_nl++;
        }
        put_clean(r, s, end);
        return r->oom ? -1 : 0;
    }
    switch (type) {
    case MD_TEXT_NULLCHAR:
        put(r, "\xEF\xBF\xBD", 3);
        break;
    case MD_TEXT_BR:
    case MD_TEXT_SOFTBR:
        /* Line breaks as the author wrote them: chat text is not reflowed.
         * In a code span CommonMark makes them spaces. */
        if (r->code_span)
            put(r, " ", 1);
        else
            newline(r);
        break;
    case MD_TEXT_ENTITY:
        put_entity(r, s, n);
        break;
    default:
        put_clean(r, s, n);
        break;
    }
    return r->oom ? -1 : 0;
}

static int is_style(tg_ent_type t) {
    return t == TG_ENT_BOLD || t == TG_ENT_ITALIC || t == TG_ENT_STRIKE;
}

static int dent_cmp(const void *a, const void *b) {
    const dent *x = a, *y = b;
    if (x->b0 != y->b0) return x->b0 < y->b0 ? -1 : 1;
    if (x->b1 != y->b1) return x->b1 > y->b1 ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Telegram refuses bold/italic/strikethrough containing code: such an
 * entity is cut into the pieces around the code spans it contains. Empty
 * entities are dropped. The result is sorted by start, outer first. */
static int normalize(rnd *r) {
    size_t n = r->nents;
    for (size_t i = 0; i < n; i++) {
        dent *s = &r->ents[i];
        if (!is_style(s->type) || s->b1 <= s->b0) continue;
        size_t pos = s->b0, end = s->b1;
        int cut = 0;
        /* Entities are made in document order (b0 never decreases), so
         * those inside s follow it directly: linear in what s contains. */
        for (size_t j = i + 1; j < n && r->ents[j].b0 < end; j++) {
            dent c = r->ents[j];
            if ((c.type != TG_ENT_CODE && c.type != TG_ENT_PRE) || c.b1 <= c.b0) continue;
            if (c.b0 < pos || c.b1 > end) continue; /* spans nest: inside or apart */
            cut = 1;
            if (c.b0 > pos) {
                long k = ent_open(r, s->type, NULL);
                if (k < 0) return -1;
                s = &r->ents[i]; /* the array may have moved */
                r->ents[k].b0 = pos;
                r->ents[k].b1 = c.b0;
            }
            pos = c.b1;
        }
        if (cut) {
            /* The original keeps the tail. */
            s->b0 = pos;
        }
    }
    size_t w = 0;
    for (size_t i = 0; i < r->nents; i++) {
        if (r->ents[i].b1 > r->ents[i].b0)
            r->ents[w++] = r->ents[i];
        else
            free(r->ents[i].arg);
    }
    r->nents = w;
    if (w > 1) qsort(r->ents, w, sizeof *r->ents, dent_cmp);
    return 0;
}

static void rnd_free(rnd *r) {
    for (size_t i = 0; i < r->nents; i++)
        free(r->ents[i].arg);
    for (size_t i = 0; i < r->nfr; i++)
        free(r->fr[i].src);
    free(r->ents);
    free(r->fr);
    free(r->lists);
    free(r->buf);
}

static void part_clear(tg_part *p) {
    for (size_t k = 0; k < p->nents; k++)
        free(p->ents[k].arg);
    free(p->ents);
    free(p->text);
}

static int is_ws(char c) {
    return c == ' ' || c == '\n' || c == '\t';
}

static int add_part(tg_part **v, size_t *n, size_t *cap, tg_part p) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        tg_part *nv = realloc(*v, c * sizeof *nv);
        if (!nv) return -1;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = p;
    return 0;
}

static char *dup_range(const char *s, size_t n) {
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = 0;
    }
    return c;
}

/* One part from text[a, b) of the rendered document. */
static int make_part(const rnd *r, size_t a, size_t b, tg_part *p) {
    memset(p, 0, sizeof *p);
    size_t n = b - a;
    p->text = dup_range(r->buf + a, n);
    size_t *units = malloc((n + 1) * sizeof *units);
    if (!p->text || !units) {
        free(units);
        return -1;
    }
    p->len = n;
    /* units[k]: UTF-16 units before byte a+k (k at a character start). */
    size_t u = 0;
    for (size_t k = 0; k < n;) {
        unsigned char c = (unsigned char)p->text[k];
        size_t w = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (k + w > n) w = n - k;
        for (size_t q = 0; q < w; q++)
            units[k + q] = u;
        u += w == 4 ? 2 : 1;
        k += w;
    }
    units[n] = u;
    /* Sorted by start: nothing past b can reach into [a, b). */
    size_t cnt = 0;
    for (size_t i = 0; i < r->nents && r->ents[i].b0 < b; i++)
        if (r->ents[i].b1 > a) cnt++;
    if (cnt && !(p->ents = calloc(cnt, sizeof *p->ents))) {
        free(units);
        return -1;
    }
    for (size_t i = 0; i < r->nents && r->ents[i].b0 < b; i++) {
        const dent *d = &r->ents[i];
        if (d->b1 <= a) continue;
        size_t c0 = d->b0 > a ? d->b0 : a, c1 = d->b1 < b ? d->b1 : b;
        tg_entity *e = &p->ents[p->nents];
        e->type = d->type;
        e->off = units[c0 - a];
        e->len = units[c1 - a] - e->off;
        if (!e->len) continue;
        if (d->arg && !(e->arg = strdup(d->arg))) {
            free(units);
            return -1;
        }
        p->nents++;
    }
    free(units);
    return 0;
}

/* The text cut as it is. With skip_blank, whitespace-only chunks are left
 * out (Telegram refuses them). */
static size_t plain_parts(const char *text, size_t len, size_t max_units, int skip_blank,
                          tg_part **out) {
    tg_chunk *ch = NULL;
    size_t n = tg_split(text, len, max_units, &ch);
    tg_part *v = n ? calloc(n, sizeof *v) : NULL;
    if (!v) {
        free(ch);
        return 0;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_blank && tg_is_blank(text + ch[i].off, ch[i].len)) continue;
        v[k].text = dup_range(text + ch[i].off, ch[i].len);
        v[k].len = ch[i].len;
        if (!v[k++].text) {
            tg_parts_free(v, k);
            free(ch);
            return 0;
        }
    }
    free(ch);
    if (!k) {
        free(v);
        return 0;
    }
    *out = v;
    return k;
}

size_t tg_format(const char *text, size_t len, int markdown, size_t max_units, tg_part **out) {
    *out = NULL;
    if (!text || !len) return 0;
    if (!markdown) return plain_parts(text, len, max_units, 0, out);

    rnd r = {0};
    MD_PARSER parser = {
        .abi_version = 0,
        /* No permissive autolinks: Telegram finds bare URLs itself. */
        .flags = MD_FLAG_STRIKETHROUGH | MD_FLAG_TABLES | MD_FLAG_TASKLISTS,
        .enter_block = enter_block,
        .leave_block = leave_block,
        .enter_span = enter_span,
        .leave_span = leave_span,
        .text = on_text,
    };
    if (len > UINT32_MAX || md_parse(text, (MD_SIZE)len, &parser, &r) != 0 || r.oom ||
        normalize(&r) != 0) {
        rnd_free(&r);
        /* Unreadable as Markdown: the text as it is still gets through. */
        return plain_parts(text, len, max_units, 1, out);
    }
    tg_chunk *ch = NULL;
    size_t nch = r.len ? tg_split(r.buf, r.len, max_units, &ch) : 0;
    tg_part *v = NULL;
    size_t n = 0, cap = 0;
    int bad = 0;
    for (size_t i = 0; i < nch && !bad; i++) {
        size_t a = ch[i].off, b = ch[i].off + ch[i].len;
        while (a < b && is_ws(r.buf[a]))
            a++;
        while (b > a && is_ws(r.buf[b - 1]))
            b--;
        if (a == b) continue;
        tg_part p;
        if (make_part(&r, a, b, &p) != 0 || add_part(&v, &n, &cap, p) != 0) {
            part_clear(&p);
            bad = 1;
        }
    }
    free(ch);
    rnd_free(&r);
    if (bad || n == 0) {
        /* Nothing visible left (e.g. only an empty link): send the source. */
        tg_parts_free(v, n);
        return plain_parts(text, len, max_units, 1, out);
    }
    *out = v;
    return n;
}

void tg_parts_free(tg_part *p, size_t n) {
    if (!p) return;
    for (size_t i = 0; i < n; i++)
        part_clear(&p[i]);
    free(p);
}

const char *tg_ent_name(tg_ent_type t) {
    static const char *const names[] = {"bold", "italic",    "strikethrough", "code",
                                        "pre",  "text_link", "blockquote"};
    return (unsigned)t < TG_ENT__COUNT ? names[t] : "unknown";
}

char *tg_entities_json(const tg_part *p) {
    if (!p || !p->nents) return NULL;
    cJSON *a = cJSON_CreateArray();
    if (!a) return NULL;
    for (size_t i = 0; i < p->nents; i++) {
        const tg_entity *e = &p->ents[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddItemToArray(a, o);
        cJSON_AddStringToObject(o, "type", tg_ent_name(e->type));
        cJSON_AddNumberToObject(o, "offset", (double)e->off);
        cJSON_AddNumberToObject(o, "length", (double)e->len);
        if (e->type == TG_ENT_LINK && e->arg) cJSON_AddStringToObject(o, "url", e->arg);
        if (e->type == TG_ENT_PRE && e->arg) cJSON_AddStringToObject(o, "language", e->arg);
    }
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}
