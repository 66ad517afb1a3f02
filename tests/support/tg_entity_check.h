/*
 * A checker of Telegram's rules for a message text with entities, written
 * from the Bot API documentation independently of the transport's code:
 * the text is valid UTF-8, not blank, at most max_units UTF-16 code units;
 * every entity has a known type, 0 <= offset, length >= 1, lies inside the
 * text and starts and ends between whole UTF-16 characters (never inside a
 * surrogate pair); text_link has a url; two entities either are disjoint
 * or one contains the other; pre and code contain no other entity; bold,
 * italic, underline, strikethrough and spoiler contain no pre/code; a
 * blockquote contains no blockquote; text_link contains only the styles.
 */
#ifndef TG_ENTITY_CHECK_H
#define TG_ENTITY_CHECK_H

#include <stddef.h>

/* NULL when Telegram would accept text with entities (a JSON array text,
 * or NULL for none); otherwise a static reason. */
const char *tgc_check(const char *text, size_t len, const char *entities_json, size_t max_units);

#endif
