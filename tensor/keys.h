/* keys.h — typed key tables: the one mechanism behind every configuration file and every
 * command-line flag.
 *
 * A key table describes the settable fields of one C struct: for each key its name, its kind
 * (bool, integer, number, one of a list of words, string, list of integers, switch), where it
 * lives in the struct (offsetof), the accepted range and a help text (for configuration files
 * the SPEC reference printed as a comment, for flags the --help line). Parsing a value, parsing
 * a `key = value` file, printing a file that parses back, listing keys and --help all walk the
 * same table, so a key cannot be printable but unparsable, or documented but unknown.
 *
 * A configuration may be spread over several structs (the run keys, the training recipe, one
 * method's keys): a KeyGroup pairs a table with the struct it writes, and the text functions
 * take a list of groups, looking each key up in every group in order.
 *
 * File format (configuration files, config.txt of a run, pretrain configs): one `key = value`
 * per line (YAML-style `key: value` is accepted too); `#` starts a comment outside double
 * quotes; blank lines and a `---` line are ignored; a value may be quoted with "..." or '...'.
 *
 *   typedef struct { int64_t epochs; double lr; } Recipe;
 *   static const KeySpec RECIPE_KEYS[] = {
 *       KEY_INT(Recipe, "epochs", epochs, 1, 1 << 20, "SPEC 4.7"),
 *       KEY_DOUBLE(Recipe, "lr", lr, 0, 10, "OneCycle max lr, SPEC 4.7"),
 *   };
 *   KeyGroup g = {RECIPE_KEYS, KEY_COUNT(RECIPE_KEYS), &recipe};
 *   Status st = keys_parse_file(&g, 1, "recipe.txt");
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor/error.h"

typedef enum {
    KEY_BOOL,     /* bool: true|false|1|0|yes|no|on|off (case-insensitive) */
    KEY_INT,      /* int64_t in [lo, hi] */
    KEY_UINT64,   /* uint64_t, any non-negative integer below 2^64 (seeds) */
    KEY_DOUBLE,   /* double in [lo, hi], finite; `word` (if set) stands for NAN ("auto", "clip") */
    KEY_ENUM,     /* int: index of the value in `names` */
    KEY_STR,      /* char[size]: no double quote or line break (it must print back on one line) */
    KEY_INT_LIST, /* int64_t[size]: exactly `size` comma-separated integers in [lo, hi] */
    KEY_SWITCH,   /* bool set to true by a flag that takes no value (keys_set with value NULL;
                     command lines only) */
    KEY_ARG,      /* const char *: the value as given, any bytes, borrowed (command lines only) */
    KEY_ARG_LIST, /* KeyArgList: every value of a repeatable flag, in order (command lines only) */
} KeyKind;

/* A KEY_ARG_LIST field. Each value keeps the name of the key that gave it, so two flags may
 * share one list and keep their relative order (`--image A --text B --image C`). The values
 * are borrowed; `item` is allocated by keys_set: free() it. */
typedef struct {
    int n;
    struct {
        const char *key, *value;
    } *item;
} KeyArgList;

typedef struct {
    const char *name;         /* the key, or a flag's name without the leading "--" */
    KeyKind kind;
    size_t offset;            /* of the field in its struct */
    size_t size;              /* KEY_STR: bytes of the array; KEY_INT_LIST: number of values */
    const char *const *names; /* KEY_ENUM: value i is spelled names[i]; NULL-terminated */
    double lo, hi;            /* KEY_INT, KEY_DOUBLE, KEY_INT_LIST: accepted range (inclusive) */
    const char *word;         /* KEY_DOUBLE: a word that sets NAN and prints back; NULL = none */
    const char *help;         /* one line: SPEC reference or what the flag does */
    const char *meta;         /* flags: the value's name in --help ("FILE"); NULL: from the kind */
} KeySpec;

/* Table entries. T is the struct type, k the key's name, f the field. Flag tables add the
 * value's name for --help with the FLAG_* forms (tools/flags.h). */
#define KEY_ENTRY_(k, kind, off, size, names, lo, hi, word, help, meta)                           \
    {k, kind, off, size, names, lo, hi, word, help, meta}
#define KEY_FIELD_(T, f) offsetof(T, f)
#define KEY_BOOL(T, k, f, help)                                                                    \
    KEY_ENTRY_(k, KEY_BOOL, KEY_FIELD_(T, f), 0, NULL, 0, 0, NULL, help, NULL)
#define KEY_SWITCH(T, k, f, help)                                                                  \
    KEY_ENTRY_(k, KEY_SWITCH, KEY_FIELD_(T, f), 0, NULL, 0, 0, NULL, help, NULL)
#define KEY_INT(T, k, f, lo, hi, help)                                                             \
    KEY_ENTRY_(k, KEY_INT, KEY_FIELD_(T, f), 0, NULL, lo, hi, NULL, help, NULL)
#define KEY_UINT64(T, k, f, help)                                                                  \
    KEY_ENTRY_(k, KEY_UINT64, KEY_FIELD_(T, f), 0, NULL, 0, 0, NULL, help, NULL)
#define KEY_DOUBLE(T, k, f, lo, hi, help)                                                          \
    KEY_ENTRY_(k, KEY_DOUBLE, KEY_FIELD_(T, f), 0, NULL, lo, hi, NULL, help, NULL)
#define KEY_DOUBLE_OR(T, k, f, lo, hi, word, help)                                                 \
    KEY_ENTRY_(k, KEY_DOUBLE, KEY_FIELD_(T, f), 0, NULL, lo, hi, word, help, NULL)
#define KEY_ENUM(T, k, f, names, help)                                                             \
    KEY_ENTRY_(k, KEY_ENUM, KEY_FIELD_(T, f), 0, names, 0, 0, NULL, help, NULL)
#define KEY_STR(T, k, f, help)                                                                     \
    KEY_ENTRY_(k, KEY_STR, KEY_FIELD_(T, f), sizeof(((T *)0)->f), NULL, 0, 0, NULL, help, NULL)
#define KEY_INT_LIST(T, k, f, lo, hi, help)                                                        \
    KEY_ENTRY_(k, KEY_INT_LIST, KEY_FIELD_(T, f), sizeof(((T *)0)->f) / sizeof(int64_t), NULL, lo, \
               hi, NULL, help, NULL)
#define KEY_COUNT(table) ((int)(sizeof(table) / sizeof((table)[0])))

/* A table and the struct it writes. */
typedef struct {
    const KeySpec *keys;
    int n;
    void *obj;
} KeyGroup;

/* The entry named `name` in keys[0..n), NULL when none. */
const KeySpec *keys_find(const KeySpec *keys, int n, const char *name);

/* Parse `value` into the field k describes in obj. `label` names the key in errors (NULL:
 * "config key 'NAME'"; a flag parser passes "--NAME"). STATUS_ERR_USAGE saying what was
 * expected; obj is unchanged on error. A KEY_SWITCH takes no value (value is ignored); a KEY_ARG
 * keeps the pointer `value`, a KEY_ARG_LIST appends it (both borrow it). */
Status keys_set(const KeySpec *k, void *obj, const char *value, const char *label);

/* Set `key` in the first group that has it; STATUS_ERR_USAGE "unknown config key" otherwise.
 * For configuration text: the command-line kinds (KEY_SWITCH, KEY_ARG, KEY_ARG_LIST) are a
 * contract violation here. */
Status keys_set_in(const KeyGroup *groups, int ngroups, const char *key, const char *value);

/* Apply every `key = value` line of NUL-terminated text; `origin` names it in errors
 * ("ORIGIN:LINE: ..."). Stops at the first bad line (lines before it stay applied). */
Status keys_parse_text(const KeyGroup *groups, int ngroups, const char *text, const char *origin);
/* The same for a regular file (STATUS_ERR_IO naming it when it cannot be read; a NUL byte is
 * STATUS_ERR_FORMAT). */
Status keys_parse_file(const KeyGroup *groups, int ngroups, const char *path);

/* The value of k in obj as the file format writes it (strings quoted, NAN as the word, doubles
 * in the shortest form that reads back exactly). Truncated to cap bytes. */
void keys_format(const KeySpec *k, const void *obj, char *buf, size_t cap);
/* Every key of the table as `key = value   # help`, one per line, in table order. */
void keys_print(const KeySpec *keys, int n, const void *obj, FILE *out);
