/* keys.c — typed key tables (keys.h): one value parser, one `key = value` file reader, one
 * printer, for every configuration file and every command-line flag of the project. */
#include "tensor/keys.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const KeySpec *keys_find(const KeySpec *keys, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

/* "config key 'NAME'" or the caller's label, for error messages. */
static const char *label_of(const KeySpec *k, const char *label, char *buf, size_t cap) {
    if (label) return label;
    snprintf(buf, cap, "config key '%s'", k->name);
    return buf;
}

static Status parse_bool(const char *v, bool *out) {
    static const char *const yes[] = {"true", "1", "yes", "on"}, *const no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) return *out = true, STATUS_OK;
        if (strcasecmp(v, no[i]) == 0) return *out = false, STATUS_OK;
    }
    return STATUS_ERR_USAGE;
}

/* One integer of [lo, hi] at *s (advanced past it); STATUS_ERR_USAGE with a message otherwise. */
static Status parse_int(const KeySpec *k, const char *lab, const char **s, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(*s, &end, 10);
    if (end == *s || errno)
        return error_set(STATUS_ERR_USAGE, "%s: expected an integer, got '%s'", lab, *s);
    if ((double)x < k->lo || (double)x > k->hi)
        return error_set(STATUS_ERR_USAGE, "%s: %lld is outside [%.0f, %.0f]", lab, x, k->lo, k->hi);
    *s = end;
    *out = (int64_t)x;
    return STATUS_OK;
}

static Status set_int_list(const KeySpec *k, const char *lab, int64_t *dst, const char *v) {
    int64_t vals[64];
    CHECK(k->size >= 1 && k->size <= 64, "key '%s': list of %zu values", k->name, k->size);
    const char *s = v;
    for (size_t i = 0; i < k->size; i++) {
        while (*s == ' ') s++;
        Status st = parse_int(k, lab, &s, &vals[i]);
        if (st != STATUS_OK) return st;
        while (*s == ' ') s++;
        if (i + 1 < k->size && *s++ != ',')
            return error_set(STATUS_ERR_USAGE, "%s: expected %zu comma-separated integers, got '%s'",
                             lab, k->size, v);
    }
    if (*s)
        return error_set(STATUS_ERR_USAGE, "%s: expected %zu comma-separated integers, got '%s'", lab,
                         k->size, v);
    memcpy(dst, vals, k->size * sizeof *vals);
    return STATUS_OK;
}

static Status set_enum(const KeySpec *k, const char *lab, int *dst, const char *v) {
    char list[256] = "";
    for (int i = 0; k->names[i]; i++) {
        if (strcmp(v, k->names[i]) == 0) return *dst = i, STATUS_OK;
        if (i) strncat(list, "|", sizeof list - strlen(list) - 1);
        strncat(list, k->names[i], sizeof list - strlen(list) - 1);
    }
    return error_set(STATUS_ERR_USAGE, "%s: expected one of %s, got '%s'", lab, list, v);
}

static Status set_double(const KeySpec *k, const char *lab, double *dst, const char *v) {
    if (k->word && strcasecmp(v, k->word) == 0) return *dst = NAN, STATUS_OK;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(x))
        return error_set(STATUS_ERR_USAGE, "%s: expected a number%s%s, got '%s'", lab,
                         k->word ? " or " : "", k->word ? k->word : "", v);
    if (x < k->lo || x > k->hi)
        return error_set(STATUS_ERR_USAGE, "%s: %s is outside [%g, %g]", lab, v, k->lo, k->hi);
    *dst = x;
    return STATUS_OK;
}

Status keys_set(const KeySpec *k, void *obj, const char *value, const char *label) {
    char buf[160];
    const char *lab = label_of(k, label, buf, sizeof buf);
    char *field = (char *)obj + k->offset;
    CHECK(value || k->kind == KEY_SWITCH, "%s: no value for a key of kind %d", lab, (int)k->kind);
    switch (k->kind) {
    case KEY_ARG: *(const char **)field = value; return STATUS_OK;
    case KEY_ARG_LIST: {
        KeyArgList *l = (KeyArgList *)field;
        l->item = xrealloc(l->item, (size_t)(l->n + 1) * sizeof *l->item);
        l->item[l->n].key = k->name;
        l->item[l->n++].value = value;
        return STATUS_OK;
    }
    case KEY_SWITCH:
        CHECK(!value, "%s: a switch takes no value", lab);
        *(bool *)field = true;
        return STATUS_OK;
    case KEY_BOOL:
        if (parse_bool(value, (bool *)field) != STATUS_OK)
            return error_set(STATUS_ERR_USAGE, "%s: expected true or false, got '%s'", lab, value);
        return STATUS_OK;
    case KEY_INT: {
        const char *s = value;
        int64_t x;
        Status st = parse_int(k, lab, &s, &x);
        if (st == STATUS_OK && *s)
            st = error_set(STATUS_ERR_USAGE, "%s: expected an integer, got '%s'", lab, value);
        if (st == STATUS_OK) *(int64_t *)field = x;
        return st;
    }
    case KEY_UINT64: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(value, &end, 10);
        if (end == value || *end || errno || !isdigit((unsigned char)value[0]))
            return error_set(STATUS_ERR_USAGE, "%s: expected a non-negative integer below 2^64, got '%s'",
                             lab, value);
        *(uint64_t *)field = x;
        return STATUS_OK;
    }
    case KEY_DOUBLE: return set_double(k, lab, (double *)field, value);
    case KEY_ENUM: return set_enum(k, lab, (int *)field, value);
    case KEY_INT_LIST: return set_int_list(k, lab, (int64_t *)field, value);
    case KEY_STR:
        if (strlen(value) >= k->size)
            return error_set(STATUS_ERR_USAGE, "%s: value longer than %zu bytes", lab, k->size - 1);
        /* Printed between double quotes on one line (keys_print): keep it readable back. */
        if (strpbrk(value, "\"\n\r"))
            return error_set(STATUS_ERR_USAGE,
                             "%s: '%s' holds a double quote or a line break, which a configuration "
                             "file cannot keep",
                             lab, value);
        snprintf(field, k->size, "%s", value);
        return STATUS_OK;
    }
    CHECK(false, "key '%s': unknown kind %d", k->name, (int)k->kind);
    return STATUS_ERR_USAGE;
}

Status keys_set_in(const KeyGroup *groups, int ngroups, const char *key, const char *value) {
    for (int g = 0; g < ngroups; g++) {
        const KeySpec *k = keys_find(groups[g].keys, groups[g].n, key);
        CHECK(!k || (k->kind != KEY_SWITCH && k->kind != KEY_ARG && k->kind != KEY_ARG_LIST),
              "key '%s': a command-line kind in a configuration table", key);
        if (k) return keys_set(k, groups[g].obj, value, NULL);
    }
    return error_set(STATUS_ERR_USAGE, "unknown config key '%s'", key);
}

/* Trim ASCII white space at both ends, in place. */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

/* One line: "key = value" or "key: value", '#' comment outside quotes, optional quotes. */
static Status parse_line(const KeyGroup *groups, int ngroups, char *line, const char *origin,
                         int lineno) {
    bool quoted = false;
    for (char *p = line; *p; p++) {
        if (*p == '"') quoted = !quoted;
        if (*p == '#' && !quoted) {
            *p = 0;
            break;
        }
    }
    char *s = trim(line);
    if (!*s || strcmp(s, "---") == 0) return STATUS_OK;
    char *sep = strchr(s, '=');
    if (!sep) sep = strchr(s, ':');
    if (!sep)
        return error_set(STATUS_ERR_USAGE, "%s:%d: expected 'key = value', got '%s'", origin, lineno, s);
    *sep = 0;
    char *key = trim(s), *val = trim(sep + 1);
    size_t n = strlen(val);
    if (n >= 2 && ((val[0] == '"' && val[n - 1] == '"') || (val[0] == '\'' && val[n - 1] == '\''))) {
        val[n - 1] = 0;
        val++;
    }
    Status st = keys_set_in(groups, ngroups, key, val);
    if (st != STATUS_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", error_last());
        return error_set(st, "%s:%d: %s", origin, lineno, msg);
    }
    return STATUS_OK;
}

Status keys_parse_text(const KeyGroup *groups, int ngroups, const char *text, const char *origin) {
    size_t n = strlen(text);
    char *buf = xmalloc(n + 1);
    memcpy(buf, text, n + 1);
    Status st = STATUS_OK;
    int lineno = 0;
    for (char *line = buf; line && st == STATUS_OK;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        st = parse_line(groups, ngroups, line, origin, lineno);
        line = next;
    }
    free(buf);
    return st;
}

Status keys_parse_file(const KeyGroup *groups, int ngroups, const char *path) {
    uint8_t *buf;
    size_t n;
    Status st = xread_file(path, "configuration file", &buf, &n);
    if (st != STATUS_OK) return st;
    if (memchr(buf, 0, n)) st = error_set(STATUS_ERR_FORMAT, "%s: not a text file (NUL byte)", path);
    else st = keys_parse_text(groups, ngroups, (const char *)buf, path);
    free(buf);
    return st;
}

void keys_format(const KeySpec *k, const void *obj, char *buf, size_t cap) {
    const char *field = (const char *)obj + k->offset;
    switch (k->kind) {
    case KEY_BOOL:
    case KEY_SWITCH: snprintf(buf, cap, "%s", *(const bool *)field ? "true" : "false"); return;
    case KEY_INT: snprintf(buf, cap, "%lld", (long long)*(const int64_t *)field); return;
    case KEY_UINT64: snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)field); return;
    case KEY_DOUBLE: {
        double x = *(const double *)field;
        /* The shortest of %.15g / %.17g that reads back exactly (%.17g always does). */
        if (isnan(x) && k->word) snprintf(buf, cap, "%s", k->word);
        else {
            snprintf(buf, cap, "%.15g", x);
            if (strtod(buf, NULL) != x) snprintf(buf, cap, "%.17g", x);
        }
        return;
    }
    case KEY_ENUM: snprintf(buf, cap, "%s", k->names[*(const int *)field]); return;
    case KEY_STR: snprintf(buf, cap, "\"%s\"", field); return;
    case KEY_ARG: {
        const char *v = *(const char *const *)field;
        snprintf(buf, cap, "%s", v ? v : "");
        return;
    }
    case KEY_ARG_LIST: {
        const KeyArgList *l = (const KeyArgList *)field;
        size_t len = 0;
        buf[0] = 0;
        for (int i = 0; i < l->n && len < cap; i++)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? " " : "", l->item[i].value);
        return;
    }
    case KEY_INT_LIST: {
        const int64_t *v = (const int64_t *)field;
        size_t len = 0;
        buf[0] = 0;
        for (size_t i = 0; i < k->size && len < cap; i++)
            len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", (long long)v[i]);
        return;
    }
    }
    CHECK(false, "key '%s': unknown kind %d", k->name, (int)k->kind);
}

void keys_print(const KeySpec *keys, int n, const void *obj, FILE *out) {
    for (int i = 0; i < n; i++) {
        char val[1100], line[1200];
        keys_format(&keys[i], obj, val, sizeof val);
        snprintf(line, sizeof line, "%s = %s", keys[i].name, val);
        fprintf(out, "%-44s # %s\n", line, keys[i].help);
    }
}
