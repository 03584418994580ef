/* tokenizer.c — OpenAI CLIP's byte-level BPE tokenizer (SPEC §1.8); API in clip/tokenizer.h.
 *
 * Encoding a text follows the reference step by step, on an array of code points:
 *   1. UTF-8 -> code points; invalid bytes become U+FFFD as Python's errors="replace" does.
 *   2. html.unescape twice, strip (str.isspace), every run of White_Space -> one ' ', strip,
 *      str.lower (full mappings, final sigma).
 *   3. Pre-tokenise with the reference pattern (case-insensitive), alternatives tried in order:
 *        <|startoftext|> | <|endoftext|> | 's | 't | 're | 've | 'm | 'll | 'd
 *        | [\p{L}]+ | [\p{N}] | [^\s\p{L}\p{N}]+            (anything else is skipped)
 *   4. Each pre-token: UTF-8 bytes -> byte symbols, `</w>` on the last one, BPE merges by rank.
 * The character classes, lower-case map and HTML entity table are generated from Python by
 * scripts/gen_unicode_tables.py into clip/unicode_tables.h.
 *
 * Symbols are vocabulary ids throughout: a merge (left, right) is a hash-table entry keyed by the
 * two ids, holding its rank and the id of the merged symbol. The reference keys its tables by
 * strings with "last entry wins"; resolving strings to ids the same way at load time makes the
 * id-keyed tables equivalent (the released file has no duplicates, so it never matters there). */
#include "clip/tokenizer.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "clip/unicode_tables.h"
#include "tensor/device.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- Unicode helpers ------------------------------------------------------------------- */

static bool in_ranges(const uint32_t (*r)[2], int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid - 1;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

#define IN_TABLE(table, cp) in_ranges((table), COUNT(table), (cp))

static bool is_letter(uint32_t c) {
    if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    return IN_TABLE(uni_letter, c);
}
static bool is_number(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    return IN_TABLE(uni_number, c);
}
/* The `regex` package's \s (Unicode White_Space): what the reference collapses and splits on. */
static bool is_white_space(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= '\t' && c <= '\r');
    return IN_TABLE(uni_white_space, c);
}
/* str.isspace(): what str.strip() removes (White_Space plus U+001C..U+001F). */
static bool is_py_space(uint32_t c) { return IN_TABLE(uni_py_space, c); }

/* Python's handling of U+03A3 in str.lower(): final sigma when preceded by a cased letter
 * (skipping case-ignorable characters) and not followed by one. */
static uint32_t lower_sigma(const uint32_t *s, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && IN_TABLE(uni_case_ignorable, s[j - 1])) j--;
    bool final = j > 0 && IN_TABLE(uni_cased, s[j - 1]);
    if (final) {
        j = i + 1;
        while (j < n && IN_TABLE(uni_case_ignorable, s[j])) j++;
        final = j == n || !IN_TABLE(uni_cased, s[j]);
    }
    return final ? 0x3C2 : 0x3C3;
}

/* str.lower() of s[0..n) into out (room for 2n code points); returns the new length. */
static size_t lower_text(const uint32_t *s, size_t n, uint32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c < 0x80) {
            out[k++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
            continue;
        }
        if (c == 0x3A3) {
            out[k++] = lower_sigma(s, n, i);
            continue;
        }
        int lo = 0, hi = COUNT(uni_lower) - 1, found = -1;
        while (lo <= hi) {
            int mid = (lo + hi) / 2;
            if (c < uni_lower[mid][0]) hi = mid - 1;
            else if (c > uni_lower[mid][0]) lo = mid + 1;
            else {
                found = mid;
                break;
            }
        }
        if (found < 0) {
            out[k++] = c;
        } else {
            out[k++] = uni_lower[found][1];
            if (uni_lower[found][2]) out[k++] = uni_lower[found][2];
        }
    }
    return k;
}

/* Decode UTF-8 as Python's bytes.decode("utf-8", "replace"): each maximal prefix of a valid
 * sequence that is cut short, and each byte that cannot start one, becomes one U+FFFD
 * (Unicode's "substitution of maximal subparts"). out has room for n code points. */
static size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *out) {
    size_t i = 0, k = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            out[k++] = c;
            i++;
            continue;
        }
        int need;
        uint32_t cp;
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the next continuation byte */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2, cp = c & 0x0F;
            if (c == 0xE0) lo = 0xA0;      /* no overlong forms */
            else if (c == 0xED) hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3, cp = c & 0x07;
            if (c == 0xF0) lo = 0x90;      /* no overlong forms */
            else if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
        } else {
            out[k++] = 0xFFFD;
            i++;
            continue;
        }
        size_t j = i + 1;
        int got = 0;
        while (got < need && j < n && s[j] >= lo && s[j] <= hi) {
            cp = (cp << 6) | (s[j] & 0x3F);
            j++, got++;
            lo = 0x80, hi = 0xBF;
        }
        out[k++] = got == need ? cp : 0xFFFD;
        i = j;
    }
    return k;
}

static size_t utf8_encode(uint32_t c, uint8_t *o) {
    if (c < 0x80) {
        o[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (uint8_t)(0xC0 | (c >> 6));
        o[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (c >> 12));
        o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (c >> 18));
    o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* ---- html.unescape ------------------------------------------------------------------------
 * Python's html.unescape replaces each match of
 *     &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
 * left to right, without rescanning replacements. Numeric references: the Windows-1252 and
 * invalid-code-point rules (table html_charref_special), surrogates and values above U+10FFFF
 * -> U+FFFD. Named ones: the whole name (with its ';') if it is an HTML5 entity, else the
 * longest entity that is a prefix of at least two characters followed by the rest verbatim,
 * else the text is kept. The output is never longer than the input. */

#define HTML_NAME_MAX 32 /* the {1,32} of the pattern above */

static const HtmlEntity *entity_find(const char *name) {
    int lo = 0, hi = COUNT(html_entities) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(name, html_entities[mid].name);
        if (c < 0) hi = mid - 1;
        else if (c > 0) lo = mid + 1;
        else return &html_entities[mid];
    }
    return NULL;
}

static int hex_digit(uint32_t c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* One numeric reference &#...: returns the characters past '&' consumed (0: no match). */
static size_t charref_numeric(const uint32_t *s, size_t n, uint32_t *out, size_t *k) {
    size_t j = 1; /* s[0] == '#' */
    int base = 10;
    if (j < n && (s[j] == 'x' || s[j] == 'X')) base = 16, j++;
    size_t start = j;
    uint32_t v = 0;
    for (; j < n; j++) {
        int d = base == 16 ? hex_digit(s[j])
                           : (s[j] >= '0' && s[j] <= '9' ? (int)(s[j] - '0') : -1);
        if (d < 0) break;
        v = v * (uint32_t)base + (uint32_t)d;
        if (v > 0x10FFFF) v = 0x110000; /* saturate: any larger value gives U+FFFD too */
    }
    if (j == start) return 0;
    if (j < n && s[j] == ';') j++;
    int lo = 0, hi = COUNT(html_charref_special) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (v < html_charref_special[mid][0]) hi = mid - 1;
        else if (v > html_charref_special[mid][0]) lo = mid + 1;
        else {
            if (html_charref_special[mid][2]) out[(*k)++] = html_charref_special[mid][1];
            return j;
        }
    }
    out[(*k)++] = (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF ? 0xFFFD : v;
    return j;
}

/* One named reference &name: returns the characters past '&' consumed (0: no match). */
static size_t charref_named(const uint32_t *s, size_t n, uint32_t *out, size_t *k) {
    size_t len = 0;
    while (len < n && len < HTML_NAME_MAX) {
        uint32_t c = s[len];
        if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' ||
            c == ';')
            break;
        len++;
    }
    if (len == 0) return 0;
    size_t total = len + (len < n && s[len] == ';');
    /* Entity names are ASCII: only the ASCII prefix of the candidate can match. */
    char name[HTML_NAME_MAX + 2];
    size_t ascii = 0;
    while (ascii < total && s[ascii] < 0x80) {
        name[ascii] = (char)s[ascii];
        ascii++;
    }
    const HtmlEntity *e = NULL;
    size_t used = total;
    if (ascii == total) {
        name[total] = 0;
        e = entity_find(name);
    }
    for (size_t x = total - 1; !e && x >= 2; x--) {
        if (x > ascii) continue;
        name[x] = 0;
        e = entity_find(name);
        used = x;
    }
    if (!e) {
        out[(*k)++] = '&';
        used = 0;
    } else {
        out[(*k)++] = e->cp[0];
        if (e->cp[1]) out[(*k)++] = e->cp[1];
    }
    for (size_t i = used; i < total; i++) out[(*k)++] = s[i];
    return total;
}

static size_t html_unescape(const uint32_t *s, size_t n, uint32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '&' || i + 1 >= n) {
            out[k++] = s[i++];
            continue;
        }
        size_t used = s[i + 1] == '#' ? charref_numeric(s + i + 1, n - i - 1, out, &k)
                                       : charref_named(s + i + 1, n - i - 1, out, &k);
        if (used) i += 1 + used;
        else out[k++] = s[i++];
    }
    return k;
}

/* Steps 1-2: bytes -> cleaned, lower-cased code points. *out (caller frees) has the result. */
static size_t clean_text(const uint8_t *bytes, size_t len, uint32_t **out) {
    uint32_t *a = xmalloc((len + 1) * sizeof *a);
    uint32_t *b = xmalloc((len + 1) * sizeof *b);
    size_t n = utf8_decode(bytes, len, a);
    n = html_unescape(a, n, b);
    n = html_unescape(b, n, a);
    /* strip, then collapse White_Space runs, then strip again (str.strip uses str.isspace) */
    size_t lo = 0, hi = n;
    while (lo < hi && is_py_space(a[lo])) lo++;
    while (hi > lo && is_py_space(a[hi - 1])) hi--;
    size_t m = 0;
    for (size_t i = lo; i < hi; i++) {
        if (is_white_space(a[i])) {
            if (i == lo || !is_white_space(a[i - 1])) b[m++] = ' '; /* first of a run */
        } else {
            b[m++] = a[i];
        }
    }
    lo = 0, hi = m;
    while (lo < hi && is_py_space(b[lo])) lo++;
    while (hi > lo && is_py_space(b[hi - 1])) hi--;
    uint32_t *l = xmalloc((2 * (hi - lo) + 1) * sizeof *l);
    size_t nl = lower_text(b + lo, hi - lo, l);
    free(a);
    free(b);
    *out = l;
    return nl;
}

/* ---- the tokenizer ----------------------------------------------------------------------- */

#define PAIR_BITS 17 /* 131072 slots for 48,894 merges */
#define PAIR_CAP (1u << PAIR_BITS)
#define PAIR_EMPTY UINT64_MAX

struct ClipTokenizer {
    int32_t byte_id[256];   /* id of the byte symbol of each byte value */
    int32_t byte_id_w[256]; /* id of the same symbol with </w> */
    uint64_t *pair_key;     /* (left id << 32) | right id, PAIR_EMPTY when free */
    int32_t *pair_rank;     /* merge rank of the pair */
    int32_t *pair_merged;   /* id of the merged symbol */
};

static inline uint32_t hash_u64(uint64_t x) {
    return (uint32_t)((x * 0x9E3779B97F4A7C15ull) >> (64 - PAIR_BITS));
}

/* Slot of `key` in the pair table (where it is, or the free slot where it would go). */
static uint32_t pair_slot(const ClipTokenizer *tok, uint64_t key) {
    uint32_t h = hash_u64(key);
    while (tok->pair_key[h] != PAIR_EMPTY && tok->pair_key[h] != key) h = (h + 1) & (PAIR_CAP - 1);
    return h;
}

/* Rank of the pair (a, b), or INT32_MAX when the pair is not a merge. */
static inline int32_t pair_rank(const ClipTokenizer *tok, int32_t a, int32_t b, int32_t *merged) {
    uint32_t h = pair_slot(tok, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b);
    if (tok->pair_key[h] == PAIR_EMPTY) return INT32_MAX;
    *merged = tok->pair_merged[h];
    return tok->pair_rank[h];
}

/* The byte-to-unicode map: printable bytes keep their code point; the others, in byte order,
 * take 256, 257, ... Fills sym[b] and the vocabulary order order[i] (printable bytes first). */
static void byte_symbols(uint32_t sym[256], int order[256]) {
    int n = 0, extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        if (printable) {
            sym[b] = (uint32_t)b;
            order[n++] = b;
        }
    }
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        if (!printable) {
            sym[b] = 256u + (uint32_t)extra++;
            order[n++] = b;
        }
    }
}

/* String -> id table used only while loading (last id wins, as the reference's dict). */
typedef struct {
    const char **str;
    int32_t *id;
    uint32_t cap;
} StrTable;

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static void str_put(StrTable *t, const char *s, int32_t id) {
    uint32_t h = hash_str(s) & (t->cap - 1);
    while (t->str[h] && strcmp(t->str[h], s) != 0) h = (h + 1) & (t->cap - 1);
    t->str[h] = s;
    t->id[h] = id;
}

static int32_t str_get(const StrTable *t, const char *s) {
    uint32_t h = hash_str(s) & (t->cap - 1);
    while (t->str[h]) {
        if (strcmp(t->str[h], s) == 0) return t->id[h];
        h = (h + 1) & (t->cap - 1);
    }
    return -1;
}

/* Inflate the whole gzip stream (so that zlib checks its CRC: a damaged file is an error, not a
 * silently different vocabulary) and check that it holds a header line and CLIP_NUM_MERGES merge
 * lines; the rest of the file is not used. Returns the text (NUL-terminated) in *text. */
static Status inflate_lines(const void *gz, size_t size, const char *name, char **text,
                            size_t *text_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return error_set(STATUS_ERR_OOM, "CLIP vocabulary '%s': cannot initialise zlib", name);
    size_t cap = 1 << 21, len = 0, lines = 0;
    const size_t max_text = 64u << 20; /* the released file is 1.6 MB of text */
    char *buf = xmalloc(cap + 1);
    zs.next_in = (Bytef *)(uintptr_t)gz;
    zs.avail_in = size > UINT_MAX ? UINT_MAX : (uInt)size;
    Status st = STATUS_OK;
    for (;;) {
        if (cap - len < 65536) {
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
        zs.next_out = (Bytef *)buf + len;
        zs.avail_out = (uInt)(cap - len);
        int rc = inflate(&zs, Z_NO_FLUSH);
        size_t got = (cap - len) - zs.avail_out;
        for (size_t i = len; i < len + got && lines <= CLIP_NUM_MERGES; i++)
            lines += buf[i] == '\n';
        len += got;
        if (rc == Z_STREAM_END) {
            if (lines <= CLIP_NUM_MERGES)
                st = error_set(STATUS_ERR_FORMAT,
                               "CLIP vocabulary '%s': has %zu complete lines, expected a header "
                               "and %d merges",
                               name, lines, CLIP_NUM_MERGES);
            break;
        }
        if (len > max_text) {
            st = error_set(STATUS_ERR_FORMAT, "CLIP vocabulary '%s': more than %zu bytes of text",
                           name, max_text);
            break;
        }
        if (rc != Z_OK) {
            st = error_set(STATUS_ERR_FORMAT, "CLIP vocabulary '%s': %s after %zu bytes of text",
                           name,
                           rc == Z_BUF_ERROR ? "truncated gzip data"
                                             : (zs.msg ? zs.msg : "not gzip data"),
                           len);
            break;
        }
    }
    inflateEnd(&zs);
    if (st != STATUS_OK) {
        free(buf);
        return st;
    }
    buf[len] = 0;
    *text = buf;
    *text_len = len;
    return STATUS_OK;
}

Status clip_tokenizer_load_mem(const void *gz, size_t size, const char *name, ClipTokenizer **out) {
    *out = NULL;
    char *text = NULL;
    size_t text_len = 0;
    Status st = inflate_lines(gz, size, name, &text, &text_len);
    if (st != STATUS_OK) return st;

    /* Vocabulary strings, in id order: 256 byte symbols, the same with </w>, one per merge, the
     * two specials. Merge halves point into `text` (split in place). */
    const char **vocab = xcalloc(CLIP_VOCAB_SIZE, sizeof *vocab);
    const char **left = xcalloc(CLIP_NUM_MERGES, sizeof *left);
    const char **right = xcalloc(CLIP_NUM_MERGES, sizeof *right);
    char *bases = xmalloc(256 * 2 * 9); /* "<=2-byte symbol</w>" + NUL */
    char *merged = xmalloc(text_len + CLIP_NUM_MERGES + 1);
    uint32_t sym[256];
    int order[256];
    byte_symbols(sym, order);
    for (int i = 0; i < 256; i++) {
        char *p = bases + 9 * i, *q = bases + 9 * (256 + i);
        size_t n = utf8_encode(sym[order[i]], (uint8_t *)p);
        p[n] = 0;
        memcpy(q, p, n);
        memcpy(q + n, "</w>", 5);
        vocab[i] = p;
        vocab[256 + i] = q;
    }

    /* inflate_lines counted the newlines; a NUL byte inside a line would hide one from strchr */
    char *line = strchr(text, '\n');
    if (!line)
        st = error_set(STATUS_ERR_FORMAT, "CLIP vocabulary '%s': NUL byte in the header", name);
    else line++; /* skip the header line */
    char *mp = merged;
    for (int r = 0; r < CLIP_NUM_MERGES && st == STATUS_OK; r++) {
        char *end = strchr(line, '\n');
        if (!end) {
            st = error_set(STATUS_ERR_FORMAT, "CLIP vocabulary '%s': line %d: NUL byte", name,
                           r + 2);
            break;
        }
        *end = 0;
        /* The reference splits on whitespace: exactly two non-empty fields. */
        char *fields[3] = {0};
        int nf = 0;
        for (char *p = line; *p;) {
            while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f') *p++ = 0;
            if (!*p) break;
            if (nf < 3) fields[nf] = p;
            nf++;
            while (*p && !(*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f')) p++;
        }
        if (nf != 2) {
            st = error_set(STATUS_ERR_FORMAT,
                           "CLIP vocabulary '%s': line %d: expected two symbols 'left right', "
                           "found %d fields",
                           name, r + 2, nf);
            break;
        }
        left[r] = fields[0];
        right[r] = fields[1];
        size_t a = strlen(fields[0]), b = strlen(fields[1]);
        memcpy(mp, fields[0], a);
        memcpy(mp + a, fields[1], b + 1);
        vocab[512 + r] = mp;
        mp += a + b + 1;
        line = end + 1;
    }
    vocab[CLIP_SOT] = "<|startoftext|>";
    vocab[CLIP_EOT] = "<|endoftext|>";

    ClipTokenizer *tok = NULL;
    if (st == STATUS_OK) {
        StrTable strs = {xcalloc(1u << 17, sizeof(char *)), xmalloc((1u << 17) * sizeof(int32_t)),
                         1u << 17};
        for (int i = 0; i < CLIP_VOCAB_SIZE; i++) str_put(&strs, vocab[i], i);
        tok = xcalloc(1, sizeof *tok);
        for (int b = 0; b < 256; b++) {
            char s[9];
            size_t n = utf8_encode(sym[b], (uint8_t *)s);
            s[n] = 0;
            tok->byte_id[b] = str_get(&strs, s);
            memcpy(s + n, "</w>", 5);
            tok->byte_id_w[b] = str_get(&strs, s);
        }
        tok->pair_key = xmalloc(PAIR_CAP * sizeof *tok->pair_key);
        tok->pair_rank = xmalloc(PAIR_CAP * sizeof *tok->pair_rank);
        tok->pair_merged = xmalloc(PAIR_CAP * sizeof *tok->pair_merged);
        for (uint32_t i = 0; i < PAIR_CAP; i++) tok->pair_key[i] = PAIR_EMPTY;
        for (int r = 0; r < CLIP_NUM_MERGES; r++) {
            int32_t a = str_get(&strs, left[r]), b = str_get(&strs, right[r]);
            /* A half that is no vocabulary string can never appear in a word: the pair is
             * unreachable. */
            if (a < 0 || b < 0) continue;
            uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
            uint32_t h = pair_slot(tok, key);
            tok->pair_key[h] = key;
            tok->pair_rank[h] = r; /* a repeated pair keeps its last rank, as the reference */
            tok->pair_merged[h] = str_get(&strs, vocab[512 + r]);
        }
        free(strs.str);
        free(strs.id);
    }
    free(vocab);
    free(left);
    free(right);
    free(bases);
    free(merged);
    free(text);
    *out = tok;
    return st;
}

Status clip_tokenizer_load(const char *path, ClipTokenizer **out) {
    *out = NULL;
    FILE *f;
    Status open_st = xfopen_regular(path, "CLIP vocabulary", &f);
    if (open_st != STATUS_OK) return open_st;
    /* The released file is 1.4 MB; anything far larger is not a vocabulary. */
    const long max_size = 64l << 20;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || size > max_size || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return error_set(STATUS_ERR_FORMAT,
                         "CLIP vocabulary '%s': not a regular file of at most %ld bytes", path,
                         max_size);
    }
    void *data = xmalloc((size_t)size);
    char what[512];
    snprintf(what, sizeof what, "CLIP vocabulary '%s'", path);
    Status st = xfread(data, 1, (size_t)size, f, what);
    fclose(f);
    if (st == STATUS_OK) st = clip_tokenizer_load_mem(data, (size_t)size, path, out);
    free(data);
    return st;
}

void clip_tokenizer_free(ClipTokenizer *tok) {
    if (!tok) return;
    free(tok->pair_key);
    free(tok->pair_rank);
    free(tok->pair_merged);
    free(tok);
}

const char *clip_vocab_path(const char *flag_value) {
    static const char rel[] = "../shared/clip/" CLIP_VOCAB_FILE;
    static char found[4096 + sizeof rel];
    if (flag_value && *flag_value) return flag_value;
    const char *env = getenv("TRMML_VOCAB");
    if (env && *env) return env;
    if (access(rel, R_OK) == 0) return rel;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return rel;
    exe[n] = 0;
    /* The executable lives in the repository (build/trmml) or at its root. */
    for (int up = 0; up < 3; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) break;
        *slash = 0;
        snprintf(found, sizeof found, "%s/%s", exe, rel);
        if (access(found, R_OK) == 0) return found;
    }
    return rel;
}

/* ---- encoding ---------------------------------------------------------------------------- */

/* Output sink: counts every id, stores the first `max`. */
typedef struct {
    int32_t *ids;
    size_t max, count;
} IdSink;

static inline void emit(IdSink *o, int32_t id) {
    if (o->count < o->max) o->ids[o->count] = id;
    o->count++;
}

/* BPE of one pre-token given as UTF-8 bytes; w is scratch for n symbols. Each round merges
 * every non-overlapping occurrence (left to right) of the lowest-ranked adjacent pair, exactly as
 * the reference's loop; it ends when no adjacent pair is a merge or one symbol is left. */
static void bpe_word(const ClipTokenizer *tok, const uint8_t *bytes, size_t n, int32_t *w,
                     IdSink *o) {
    for (size_t i = 0; i + 1 < n; i++) w[i] = tok->byte_id[bytes[i]];
    w[n - 1] = tok->byte_id_w[bytes[n - 1]];
    while (n > 1) {
        int32_t best = INT32_MAX, best_merged = -1, a = -1, b = -1, m;
        for (size_t i = 0; i + 1 < n; i++) {
            int32_t r = pair_rank(tok, w[i], w[i + 1], &m);
            if (r < best) best = r, best_merged = m, a = w[i], b = w[i + 1];
        }
        if (best == INT32_MAX) break;
        size_t k = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && w[i] == a && w[i + 1] == b) {
                w[k++] = best_merged;
                i += 2;
            } else {
                w[k++] = w[i++];
            }
        }
        n = k;
    }
    for (size_t i = 0; i < n; i++) emit(o, w[i]);
}

/* The ASCII letter `lit` under the reference's IGNORECASE: itself, its upper case, or a
 * non-ASCII character that case-folds to it (U+017F long s for 's'). */
static bool match_char(uint32_t c, char lit) {
    if (c == (uint32_t)lit || (lit >= 'a' && lit <= 'z' && c == (uint32_t)(lit - 32))) return true;
    for (int i = 0; i < COUNT(uni_ascii_fold); i++)
        if (c == uni_ascii_fold[i][0]) return uni_ascii_fold[i][1] == (uint32_t)lit;
    return false;
}

/* Length of the literal `lit` at s[i..n) under IGNORECASE (0 if it does not match); *exact is
 * set when every character matched itself. */
static size_t match_literal(const uint32_t *s, size_t n, size_t i, const char *lit, bool *exact) {
    size_t len = strlen(lit);
    if (n - i < len) return 0;
    bool ex = true;
    for (size_t k = 0; k < len; k++) {
        if (!match_char(s[i + k], lit[k])) return 0;
        ex = ex && s[i + k] == (uint32_t)lit[k];
    }
    if (exact) *exact = ex;
    return len;
}

/* [^\s\p{L}\p{N}] under IGNORECASE: also excludes the characters with a letter or number among
 * their case variants (U+0345), which therefore match no alternative and are skipped. */
static bool is_symbol(uint32_t c) {
    return !is_white_space(c) && !is_letter(c) && !is_number(c) &&
           !(c >= 0x80 && IN_TABLE(uni_case_ignored, c));
}

/* Steps 3-5 on the cleaned code points. scratch: room for 4n bytes and 4n ints. */
static void encode_clean(const ClipTokenizer *tok, const uint32_t *s, size_t n, uint8_t *bytes,
                         int32_t *w, IdSink *o) {
    static const char *const contractions[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i];
        size_t len = 0;
        bool exact = false;
        if (c == '<' && (len = match_literal(s, n, i, "<|startoftext|>", &exact)) && exact) {
            emit(o, CLIP_SOT); /* the reference's BPE cache maps the literal to its id */
            i += len;
            continue;
        }
        if (c == '<' && !len && (len = match_literal(s, n, i, "<|endoftext|>", &exact)) &&
            exact) {
            emit(o, CLIP_EOT);
            i += len;
            continue;
        }
        /* A literal matched only through case folding ("<|ſtartoftext|>") is an ordinary
         * pre-token: the reference's cache holds the exact strings only. */
        if (len == 0 && c == '\'') {
            for (int k = 0; k < COUNT(contractions) && !len; k++)
                len = match_literal(s, n, i + 1, contractions[k], NULL);
            if (len) len++;
        }
        if (len == 0) {
            if (is_letter(c)) {
                len = 1;
                while (i + len < n && is_letter(s[i + len])) len++;
            } else if (is_number(c)) {
                len = 1;
            } else if (is_symbol(c)) {
                len = 1;
                while (i + len < n && is_symbol(s[i + len])) len++;
            } else {
                i++; /* whitespace, or a character no alternative matches */
                continue;
            }
        }
        size_t nb = 0;
        for (size_t k = 0; k < len; k++) nb += utf8_encode(s[i + k], bytes + nb);
        bpe_word(tok, bytes, nb, w, o);
        i += len;
    }
}

int clip_tokenize_n(const ClipTokenizer *tok, const char *text, size_t len, int32_t *ids,
                    int max_ids) {
    CHECK(tok && (text || len == 0) && (ids || max_ids == 0) && max_ids >= 0,
          "clip_tokenize: tok=%p text=%p ids=%p max_ids=%d", (const void *)tok, (const void *)text,
          (void *)ids, max_ids);
    if (len > CLIP_MAX_INPUT_BYTES)
        return error_set(STATUS_ERR_USAGE, "clip_tokenize: input of %zu bytes, more than %u", len,
                         CLIP_MAX_INPUT_BYTES);
    uint32_t *s;
    size_t n = clean_text((const uint8_t *)text, len, &s);
    uint8_t *bytes = xmalloc(4 * n + 1);
    int32_t *w = xmalloc((4 * n + 1) * sizeof *w);
    IdSink o = {ids, (size_t)max_ids, 0};
    encode_clean(tok, s, n, bytes, w, &o);
    free(bytes);
    free(w);
    free(s);
    return (int)o.count; /* at most 4 * 2 * CLIP_MAX_INPUT_BYTES */
}

int clip_tokenize(const ClipTokenizer *tok, const char *utf8, int32_t *ids, int max_ids) {
    CHECK(utf8, "clip_tokenize: text is NULL");
    return clip_tokenize_n(tok, utf8, strlen(utf8), ids, max_ids);
}

char *clip_clean_text(const char *text, size_t len) {
    if (len > CLIP_MAX_INPUT_BYTES) {
        error_set(STATUS_ERR_USAGE, "clip_clean_text: input of %zu bytes, more than %u", len,
                  CLIP_MAX_INPUT_BYTES);
        return NULL;
    }
    uint32_t *s;
    size_t n = clean_text((const uint8_t *)text, len, &s);
    char *out = xmalloc(4 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += utf8_encode(s[i], (uint8_t *)out + k);
    out[k] = 0;
    free(s);
    return out;
}

Status clip_tokenize_batch(const ClipTokenizer *tok, const char *const *texts, int n,
                           int context_length, bool truncate, int64_t *tokens, int64_t *eot_pos) {
    CHECK(tok && texts && tokens && n >= 0 && context_length >= 2,
          "clip_tokenize_batch: n=%d context_length=%d", n, context_length);
    int cap = context_length - 2;
    int32_t *ids = xmalloc(((size_t)cap + 1) * sizeof *ids);
    Status st = STATUS_OK;
    for (int i = 0; i < n && st == STATUS_OK; i++) {
        int count = clip_tokenize(tok, texts[i], ids, cap);
        if (count < 0) {
            st = (Status)count;
            break;
        }
        if (count > cap && !truncate) {
            st = error_set(STATUS_ERR_USAGE,
                           "text %d (\"%.40s%s\") has %d tokens with SOT and EOT, more than the "
                           "context length %d (truncation not requested)",
                           i, texts[i], strlen(texts[i]) > 40 ? "..." : "", count + 2,
                           context_length);
            break;
        }
        int keep = count < cap ? count : cap;
        int64_t *row = tokens + (size_t)i * (size_t)context_length;
        row[0] = CLIP_SOT;
        for (int k = 0; k < keep; k++) row[1 + k] = ids[k];
        row[1 + keep] = CLIP_EOT;
        for (int k = keep + 2; k < context_length; k++) row[k] = 0;
        if (eot_pos) eot_pos[i] = 1 + keep;
    }
    free(ids);
    return st;
}

Status clip_tokenize_tensor(const ClipTokenizer *tok, const char *const *texts, int n,
                            bool truncate, Tensor **out, int64_t *eot_pos) {
    *out = NULL;
    int64_t *ids = xmalloc((size_t)n * CLIP_CONTEXT_LENGTH * sizeof *ids);
    Status st = clip_tokenize_batch(tok, texts, n, CLIP_CONTEXT_LENGTH, truncate, ids, eot_pos);
    if (st == STATUS_OK) { /* into the current arena, on its device */
        *out = tensor_empty(DT_I64, 2, (int64_t[]){n, CLIP_CONTEXT_LENGTH});
        device_table((*out)->device)->copy_h2d((*out)->data, ids, (size_t)n * CLIP_CONTEXT_LENGTH * sizeof *ids);
    }
    free(ids);
    return st;
}
