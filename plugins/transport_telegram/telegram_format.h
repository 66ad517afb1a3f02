/*
 * Reply formatting of the telegram transport: an agent's Markdown
 * (CommonMark + GFM strikethrough, tables and task lists, read by md4c) is
 * rendered to plain text plus Telegram message entities, then cut into
 * parts that each fit one message. Pure: no host, no I/O, no globals.
 */
#ifndef TELEGRAM_FORMAT_H
#define TELEGRAM_FORMAT_H

#include <stddef.h>

typedef enum {
    TG_ENT_BOLD = 0,
    TG_ENT_ITALIC,
    TG_ENT_STRIKE,
    TG_ENT_CODE,
    TG_ENT_PRE,
    TG_ENT_LINK, /* text_link */
    TG_ENT_QUOTE,
    TG_ENT__COUNT
} tg_ent_type;

/* One entity of a part, in UTF-16 code units of that part's text. */
typedef struct tg_entity {
    tg_ent_type type;
    size_t off, len;
    char *arg; /* text_link: url; pre: language (may be NULL) */
} tg_entity;

typedef struct tg_part {
    char *text; /* NUL-terminated UTF-8 */
    size_t len;
    tg_entity *ents;
    size_t nents;
} tg_part;

/* Renders text into parts of at most max_units UTF-16 code units. With
 * markdown, text is read as Markdown and each part carries its entities
 * (cut and re-based where a part boundary crosses one; leading and trailing
 * whitespace of a part is left out, as Telegram drops it); without, the
 * parts are the text's chunks as tg_split() cuts them. text must be valid
 * UTF-8 without NUL bytes (tg_utf8_sanitize). Returns the count and a
 * malloc()ed array in *out, or 0 on empty input or out of memory. */
size_t tg_format(const char *text, size_t len, int markdown, size_t max_units, tg_part **out);
void tg_parts_free(tg_part *p, size_t n);

/* The Bot API "type" of an entity, e.g. "text_link". */
const char *tg_ent_name(tg_ent_type t);
/* The part's entities as a JSON array (malloc()ed); NULL when it has none. */
char *tg_entities_json(const tg_part *p);

#endif
