/* json.h — every JSON document trmml writes or reads goes through here, on top of yajl
 * (yajl_gen to write, yajl_tree to read; libyajl-dev).
 *
 * Writing: a JsonWriter emits one compact document (no spaces, keys in the order written).
 * Strings may hold any bytes: each byte that is not valid UTF-8 is written as U+FFFD, so the
 * output is always valid JSON. Numbers are written as text the caller's precision chooses
 * (JSON_SHORTEST: the shortest of %.15g, %.16g, %.17g that reads back exactly); a NaN or an
 * infinity, which JSON cannot hold, is written as null. Misuse (a value where a key belongs, an
 * unclosed object) is a contract violation: CHECK.
 *
 * Reading: json_parse builds the tree of a document; the json_get_* lookups check that a member
 * is present and of the right type, and otherwise return STATUS_ERR_FORMAT with a message naming
 * the document (`what`: a file name, "FILE:LINE") and the key. yajl_tree keeps each number's
 * text, so a value read and written again (json_value) keeps its exact digits. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

#include "tensor/error.h"

/* ---- writing ------------------------------------------------------------------------------- */

typedef struct JsonWriter JsonWriter;

#define JSON_SHORTEST 0 /* json_number digits: the shortest text that reads back exactly */

JsonWriter *json_writer_new(void);
/* The document written (NUL-terminated, *n bytes without the NUL when n is not NULL) in a new
 * buffer (free()); frees the writer. CHECKs that every object and array was closed. */
char *json_writer_finish(JsonWriter *w, size_t *n);
/* Free without taking the text (on an error path). NULL is accepted. */
void json_writer_free(JsonWriter *w);

void json_object_begin(JsonWriter *w);
void json_object_end(JsonWriter *w);
void json_array_begin(JsonWriter *w);
void json_array_end(JsonWriter *w);
/* The key of the next member of the open object (any bytes, as json_string). */
void json_key(JsonWriter *w, const char *key);
void json_string(JsonWriter *w, const char *s);
void json_int(JsonWriter *w, long long v);
/* v with `digits` significant digits (%.<digits>g), or JSON_SHORTEST; null when not finite. */
void json_number(JsonWriter *w, double v, int digits);
void json_null(JsonWriter *w);
/* A parsed value (json_parse) written again; numbers keep their original text. */
void json_value(JsonWriter *w, const yajl_val v);

/* ---- reading ------------------------------------------------------------------------------- */

/* Parse the NUL-terminated text of one document, which must be an object (every document trmml
 * reads is), into *out (json_free it). STATUS_ERR_FORMAT "<what>: malformed JSON: <yajl's
 * reason>" or "<what>: expected a JSON object, found ..." otherwise, and *out = NULL. */
Status json_parse(const char *text, const char *what, yajl_val *out);
void json_free(yajl_val v);

/* The member `key` of the object `obj`, required to be a number (*out as a double), an integer
 * (*out within int64_t), an object or an array. With null_ok, a member that is null gives
 * *out = NULL (objects, arrays) or NAN (numbers). Otherwise STATUS_ERR_FORMAT naming `what`, the
 * key and what was found ("missing", "a string", ...). obj must be an object (CHECK). */
Status json_get_number(yajl_val obj, const char *key, const char *what, bool null_ok,
                       double *out);
Status json_get_int(yajl_val obj, const char *key, const char *what, int64_t *out);
Status json_get_object(yajl_val obj, const char *key, const char *what, bool null_ok,
                       yajl_val *out);
Status json_get_array(yajl_val obj, const char *key, const char *what, yajl_val *out);
/* "an object", "a string", "a number", "null", ... for messages. */
const char *json_type_name(yajl_val v);
