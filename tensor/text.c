/* text.c — UTF-8 checks and the escaping of untrusted strings for messages (text.h). */
#include "tensor/text.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tensor/error.h"

/* RFC 3629, table 3-7 of the Unicode standard: the second byte's range depends on the first
 * (that rules out overlong forms, surrogates and code points above U+10FFFF). */
int text_utf8_len(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    int n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (p[1] < lo || p[1] > hi) return 0; /* also stops at the terminating NUL */
    for (int k = 2; k < n; k++)
        if (p[k] < 0x80 || p[k] > 0xBF) return 0;
    return n;
}

/* A control character: C0, DEL, or C1 (U+0080..U+009F, encoded C2 80..C2 9F). */
static bool is_control(const unsigned char *p, int len) {
    return (len == 1 && (p[0] < 0x20 || p[0] == 0x7F)) || (len == 2 && p[0] == 0xC2 && p[1] < 0xA0);
}

char *text_escape_message(char *dst, size_t cap, const char *src) {
    CHECK(dst && cap >= 5 && src, "text_escape_message: bad arguments (cap %zu)", cap);
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p;) {
        int len = text_utf8_len((const char *)p);
        if (len > 0 && !is_control(p, len)) {
            if (n + (size_t)len >= cap) break;
            memcpy(dst + n, p, (size_t)len);
            n += (size_t)len;
            p += len;
            continue;
        }
        /* An invalid byte alone, or every byte of a control character. */
        for (int k = 0; k < (len ? len : 1); k++) {
            if (n + 4 >= cap) goto full;
            snprintf(dst + n, 5, "\\x%02X", p[k]);
            n += 4;
        }
        p += len ? len : 1;
    }
full:
    dst[n] = 0;
    return dst;
}

const char *text_for_message(const char *s) {
    static _Thread_local char slots[8][512];
    static _Thread_local unsigned next;
    char *dst = slots[next++ % 8];
    return text_escape_message(dst, sizeof slots[0], s ? s : "(null)");
}
