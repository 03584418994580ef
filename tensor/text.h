/* text.h — untrusted strings (file names, class names, lines of a file) written safely into
 * messages (and, through tensor/json.h, which uses text_utf8_len, into JSON).
 *
 * File names and file contents are arbitrary bytes. Printed raw, invalid UTF-8 garbles the
 * terminal and control characters can drive it; written raw into JSON, a quote or an invalid byte
 * makes the output unparsable. Valid UTF-8 passes through unchanged in both. */
#pragma once
#include <stddef.h>

/* Length (1 to 4) of the valid UTF-8 sequence starting at s, or 0 when the bytes there are not
 * one (a stray continuation byte, an overlong form, a surrogate, above U+10FFFF, cut short).
 * s points at a non-NUL byte of a NUL-terminated string. */
int text_utf8_len(const char *s);

/* src copied into dst (capacity cap >= 5, always NUL-terminated) with every byte that is not part
 * of valid UTF-8, and every control character (C0, DEL, C1), written as \xNN; cut at a character
 * boundary when dst is full. Valid output is returned unchanged by a second pass. Returns dst. */
char *text_escape_message(char *dst, size_t cap, const char *src);

/* The same for use as a printf argument: the result is one of 8 per-thread buffers, used in turn
 * (at most 511 bytes of output), valid until 8 more calls in the same thread. */
const char *text_for_message(const char *s);
