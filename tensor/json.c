/* json.c — JSON written with yajl_gen and read with yajl_tree (tensor/json.h). */
#include "tensor/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "tensor/text.h"

struct JsonWriter {
    yajl_gen g;
    int depth; /* objects and arrays open */
};

/* yajl_gen reports misuse (a value where a key belongs, a close without an open) as a status. */
static void gen_ok(yajl_gen_status s, const char *what) {
    CHECK(s == yajl_gen_status_ok, "json: %s refused by yajl_gen (status %d: a value where a key "
          "belongs, or an unbalanced close)", what, (int)s);
}

JsonWriter *json_writer_new(void) {
    JsonWriter *w = xmalloc(sizeof *w);
    w->g = yajl_gen_alloc(NULL);
    w->depth = 0;
    if (!w->g) fatal_oom(__FILE__, __LINE__, "yajl_gen_alloc", sizeof *w, 0);
    /* Compact output, '/' not escaped: the defaults; stated so the output format is visible. */
    yajl_gen_config(w->g, yajl_gen_beautify, 0);
    yajl_gen_config(w->g, yajl_gen_escape_solidus, 0);
    return w;
}

char *json_writer_finish(JsonWriter *w, size_t *n) {
    const unsigned char *buf;
    size_t len;
    gen_ok(yajl_gen_get_buf(w->g, &buf, &len), "the document");
    CHECK(len > 0 && w->depth == 0, "json_writer_finish: %s", len ? "an object or array is left open"
                                                                  : "nothing was written");
    char *out = xmalloc(len + 1);
    memcpy(out, buf, len);
    out[len] = '\0';
    if (n) *n = len;
    json_writer_free(w);
    return out;
}

void json_writer_free(JsonWriter *w) {
    if (!w) return;
    yajl_gen_free(w->g);
    free(w);
}

void json_object_begin(JsonWriter *w) {
    gen_ok(yajl_gen_map_open(w->g), "object begin");
    w->depth++;
}
void json_object_end(JsonWriter *w) {
    gen_ok(yajl_gen_map_close(w->g), "object end");
    w->depth--;
}
void json_array_begin(JsonWriter *w) {
    gen_ok(yajl_gen_array_open(w->g), "array begin");
    w->depth++;
}
void json_array_end(JsonWriter *w) {
    gen_ok(yajl_gen_array_close(w->g), "array end");
    w->depth--;
}
void json_null(JsonWriter *w) { gen_ok(yajl_gen_null(w->g), "null"); }

void json_string(JsonWriter *w, const char *s) {
    /* yajl escapes the quote, the backslash and control characters; bytes that are not UTF-8
     * it would copy through (making the document invalid), so they become U+FFFD first. */
    size_t n = strlen(s), k = 0;
    char *clean = xmalloc(3 * n + 1); /* each invalid byte grows to three */
    for (const char *p = s; *p;) {
        int len = text_utf8_len(p);
        if (len == 0) {
            memcpy(clean + k, "\xEF\xBF\xBD", 3);
            k += 3;
            p++;
        } else {
            memcpy(clean + k, p, (size_t)len);
            k += (size_t)len;
            p += len;
        }
    }
    gen_ok(yajl_gen_string(w->g, (const unsigned char *)clean, k), "string");
    free(clean);
}

void json_key(JsonWriter *w, const char *key) { json_string(w, key); }

void json_int(JsonWriter *w, long long v) { gen_ok(yajl_gen_integer(w->g, v), "integer"); }

void json_number(JsonWriter *w, double v, int digits) {
    CHECK(digits >= 0 && digits <= 17, "json_number: %d significant digits", digits);
    if (!isfinite(v)) {
        json_null(w);
        return;
    }
    /* yajl_gen_double prints %.20g (0.1 as 0.10000000000000000555); the text is made here and
     * handed to yajl_gen_number, which writes it as given. */
    char text[40];
    if (digits == JSON_SHORTEST) {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(text, sizeof text, "%.*g", prec, v);
            if (strtod(text, NULL) == v) break;
        }
    } else {
        snprintf(text, sizeof text, "%.*g", digits, v);
    }
    gen_ok(yajl_gen_number(w->g, text, strlen(text)), "number");
}

void json_value(JsonWriter *w, const yajl_val v) {
    CHECK(v, "json_value: NULL value");
    switch (v->type) {
    case yajl_t_string: json_string(w, v->u.string); break;
    case yajl_t_number:
        gen_ok(yajl_gen_number(w->g, v->u.number.r, strlen(v->u.number.r)), "number");
        break;
    case yajl_t_object:
        json_object_begin(w);
        for (size_t i = 0; i < v->u.object.len; i++) {
            json_key(w, v->u.object.keys[i]);
            json_value(w, v->u.object.values[i]);
        }
        json_object_end(w);
        break;
    case yajl_t_array:
        json_array_begin(w);
        for (size_t i = 0; i < v->u.array.len; i++) json_value(w, v->u.array.values[i]);
        json_array_end(w);
        break;
    case yajl_t_true: gen_ok(yajl_gen_bool(w->g, 1), "true"); break;
    case yajl_t_false: gen_ok(yajl_gen_bool(w->g, 0), "false"); break;
    case yajl_t_null: json_null(w); break;
    default: CHECK(false, "json_value: yajl type %d", (int)v->type);
    }
}

/* ---- reading ------------------------------------------------------------------------------- */

/* yajl_tree_free and json_value recurse once per level: a document nesting deeper than this is
 * refused before it is parsed (trmml's own documents nest three levels). */
enum { JSON_MAX_DEPTH = 64 };

static bool depth_ok(const char *s) {
    int depth = 0;
    bool in_str = false;
    for (; *s; s++) {
        if (in_str) {
            if (*s == '\\' && s[1]) s++;
            else if (*s == '"') in_str = false;
        } else if (*s == '"') {
            in_str = true;
        } else if (*s == '{' || *s == '[') {
            if (++depth > JSON_MAX_DEPTH) return false;
        } else if (*s == '}' || *s == ']') {
            depth--;
        }
    }
    return true;
}

Status json_parse(const char *text, const char *what, yajl_val *out) {
    *out = NULL;
    if (!depth_ok(text))
        return error_set(STATUS_ERR_FORMAT, "%s: malformed JSON: nested deeper than %d levels",
                         what, JSON_MAX_DEPTH);
    char err[512];
    yajl_val v = yajl_tree_parse(text, err, sizeof err);
    if (!v) {
        /* yajl's message goes on with a copy of the text and a caret; its first line says why. */
        *strchrnul(err, '\n') = '\0';
        return error_set(STATUS_ERR_FORMAT, "%s: malformed JSON: %s", what, err);
    }
    if (!YAJL_IS_OBJECT(v)) {
        Status st = error_set(STATUS_ERR_FORMAT, "%s: expected a JSON object, found %s", what,
                              json_type_name(v));
        yajl_tree_free(v);
        return st;
    }
    *out = v;
    return STATUS_OK;
}

void json_free(yajl_val v) {
    if (v) yajl_tree_free(v);
}

const char *json_type_name(yajl_val v) {
    if (!v) return "nothing";
    switch (v->type) {
    case yajl_t_string: return "a string";
    case yajl_t_number: return "a number";
    case yajl_t_object: return "an object";
    case yajl_t_array: return "an array";
    case yajl_t_true:
    case yajl_t_false: return "a boolean";
    case yajl_t_null: return "null";
    default: return "an unknown value";
    }
}

/* The member `key` of obj (NULL when absent); objects may repeat a key: the first counts. */
static yajl_val member(yajl_val obj, const char *key) {
    CHECK(YAJL_IS_OBJECT(obj), "json lookup of '%s' in %s, not an object", key,
          json_type_name(obj));
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], key) == 0) return obj->u.object.values[i];
    return NULL;
}

static Status wrong(const char *what, const char *key, const char *want, yajl_val v) {
    return error_set(STATUS_ERR_FORMAT, "%s: \"%s\" must be %s, found %s", what, key, want,
                     v ? json_type_name(v) : "no such key");
}

Status json_get_number(yajl_val obj, const char *key, const char *what, bool null_ok,
                       double *out) {
    yajl_val v = member(obj, key);
    *out = NAN;
    if (null_ok && YAJL_IS_NULL(v)) return STATUS_OK;
    /* yajl_tree gives a number that overflows a double as not YAJL_IS_DOUBLE (HUGE_VAL). */
    if (!YAJL_IS_NUMBER(v) || !YAJL_IS_DOUBLE(v) || !isfinite(YAJL_GET_DOUBLE(v)))
        return wrong(what, key, null_ok ? "a finite number or null" : "a finite number", v);
    *out = YAJL_GET_DOUBLE(v);
    return STATUS_OK;
}

Status json_get_int(yajl_val obj, const char *key, const char *what, int64_t *out) {
    yajl_val v = member(obj, key);
    *out = 0;
    if (!YAJL_IS_INTEGER(v)) return wrong(what, key, "an integer", v);
    *out = YAJL_GET_INTEGER(v);
    return STATUS_OK;
}

Status json_get_object(yajl_val obj, const char *key, const char *what, bool null_ok,
                       yajl_val *out) {
    yajl_val v = member(obj, key);
    *out = NULL;
    if (null_ok && YAJL_IS_NULL(v)) return STATUS_OK;
    if (!YAJL_IS_OBJECT(v)) return wrong(what, key, null_ok ? "an object or null" : "an object", v);
    *out = v;
    return STATUS_OK;
}

Status json_get_array(yajl_val obj, const char *key, const char *what, yajl_val *out) {
    yajl_val v = member(obj, key);
    *out = NULL;
    if (!YAJL_IS_ARRAY(v)) return wrong(what, key, "an array", v);
    *out = v;
    return STATUS_OK;
}
