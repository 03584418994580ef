/* voc.c — PASCAL VOC 2007/2012 reader (SPEC §6.2, §6.7).
 *
 * Layout: <voc>/ImageSets/Main/<split>.txt lists the image ids; <voc>/Annotations/<id>.xml holds
 * the objects; images are <voc>/JPEGImages/<id>.jpg. <voc> is <root>/VOC2007 (or VOC2012),
 * <root>/VOCdevkit/VOC2007, or <root> itself when it holds Annotations/.
 *
 * Label rule: class k is +1 iff the image has at least one object of class k whose <difficult>
 * is not 1, else −1 — a class present only as difficult objects is a negative. This equals
 * reading <class>_<split>.txt with 1→+1, −1→−1, 0 (difficult-only)→−1.
 *
 * The XML goes through expat in chunks. Only <annotation>/<object>/<name> and .../<difficult>
 * matter; <part> children of an object (person layout) carry their own <name>, which is why the
 * element depth is tracked rather than the element name alone. Entity declarations are refused
 * (no entity expansion at all), element depth, text lengths, objects per file and the file size
 * are bounded. */
#include <expat.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/classnames.h"
#include "datasets/dataset.h"

#define VOC_MAX_XML_BYTES (4 << 20) /* real annotations are < 10 KB */
#define VOC_MAX_DEPTH 32
#define VOC_MAX_TEXT 256
#define VOC_MAX_OBJECTS 100000
#define VOC_MAX_CLASSES 4096

typedef struct {
    XML_Parser parser;
    const char *what;
    char *const *classes;
    int64_t c;
    int8_t *row;
    int depth;
    int object_depth;   /* depth of the open <object>, 0 when none */
    int text_field;     /* 0 none, 1 name, 2 difficult: the direct object child being read */
    char name[VOC_MAX_TEXT + 1], difficult[VOC_MAX_TEXT + 1];
    size_t name_len, difficult_len;
    bool has_name;
    int64_t objects;
    Status status;
    char error[512];
} VocXml;

/* Record the first error of a callback and stop the parser. */
TRMML_PRINTF(3, 4) static void voc_fail(VocXml *x, Status st, const char *fmt, ...) {
    if (x->status != STATUS_OK) return;
    x->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->error, sizeof x->error, fmt, ap);
    va_end(ap);
    XML_StopParser(x->parser, XML_FALSE);
}

static void XMLCALL voc_start(void *ud, const XML_Char *el, const XML_Char **attr) {
    VocXml *x = ud;
    x->depth++;
    if (x->depth > VOC_MAX_DEPTH) {
        voc_fail(x, STATUS_ERR_FORMAT, "elements nested deeper than %d", VOC_MAX_DEPTH);
        return;
    }
    if (x->depth == 1 && strcmp(el, "annotation")) {
        voc_fail(x, STATUS_ERR_FORMAT, "root element is <%.64s>, expected <annotation>", el);
        return;
    }
    if (x->depth == 2 && !strcmp(el, "object")) {
        if (++x->objects > VOC_MAX_OBJECTS) {
            voc_fail(x, STATUS_ERR_FORMAT, "more than %d objects", VOC_MAX_OBJECTS);
            return;
        }
        x->object_depth = 2;
        x->has_name = false;
        x->name_len = x->difficult_len = 0;
        x->name[0] = x->difficult[0] = 0;
    } else if (x->object_depth && x->depth == x->object_depth + 1) {
        x->text_field = !strcmp(el, "name") ? 1 : !strcmp(el, "difficult") ? 2 : 0;
        if (x->text_field == 1) {
            if (x->has_name) voc_fail(x, STATUS_ERR_FORMAT, "an <object> with two <name> elements");
            x->has_name = true;
        }
    }
}

static void XMLCALL voc_text(void *ud, const XML_Char *s, int len) {
    VocXml *x = ud;
    if (!x->text_field || x->depth != x->object_depth + 1) return;
    char *buf = x->text_field == 1 ? x->name : x->difficult;
    size_t *n = x->text_field == 1 ? &x->name_len : &x->difficult_len;
    if (*n + (size_t)len > VOC_MAX_TEXT) {
        voc_fail(x, STATUS_ERR_FORMAT, "object text longer than %d bytes", VOC_MAX_TEXT);
        return;
    }
    memcpy(buf + *n, s, (size_t)len);
    *n += (size_t)len;
    buf[*n] = 0;
}

/* Trim surrounding XML whitespace in place. */
static char *voc_trim(char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

static void voc_end_object(VocXml *x) {
    if (!x->has_name) {
        voc_fail(x, STATUS_ERR_FORMAT, "an <object> without <name>");
        return;
    }
    char *name = voc_trim(x->name), *diff = voc_trim(x->difficult);
    /* A missing <difficult> (some VOC2012 objects) means not difficult. */
    bool difficult;
    if (!strcmp(diff, "1")) difficult = true;
    else if (!strcmp(diff, "0") || !*diff) difficult = false;
    else {
        voc_fail(x, STATUS_ERR_FORMAT, "<difficult> is '%.64s', expected 0 or 1", diff);
        return;
    }
    int64_t k = 0;
    while (k < x->c && strcmp(x->classes[k], name)) k++;
    if (k == x->c) {
        voc_fail(x, STATUS_ERR_FORMAT, "object name '%.64s' is not one of the classes", name);
        return;
    }
    if (!difficult) x->row[k] = 1;
}

static void XMLCALL voc_end(void *ud, const XML_Char *el) {
    VocXml *x = ud;
    if (x->object_depth && x->depth == x->object_depth) {
        voc_end_object(x);
        x->object_depth = 0;
    }
    if (x->object_depth && x->depth == x->object_depth + 1) x->text_field = 0;
    x->depth--;
}

/* Entity declarations could expand without bound; VOC files have none. */
static void XMLCALL voc_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value,
                               int value_len, const XML_Char *base, const XML_Char *system_id,
                               const XML_Char *public_id, const XML_Char *notation) {
    voc_fail(ud, STATUS_ERR_FORMAT, "entity declaration '%.64s' (not allowed)", name);
}

static void voc_xml_init(VocXml *x, const char *what, char *const *classes, int64_t c,
                         int8_t *row) {
    memset(x, 0, sizeof *x);
    x->what = what;
    x->classes = classes;
    x->c = c;
    x->row = row;
    for (int64_t k = 0; k < c; k++) row[k] = -1;
    x->parser = XML_ParserCreate(NULL);
    if (!x->parser) fatal_oom(__FILE__, __LINE__, "XML_ParserCreate", sizeof(XML_Parser), 0);
    XML_SetUserData(x->parser, x);
    XML_SetElementHandler(x->parser, voc_start, voc_end);
    XML_SetCharacterDataHandler(x->parser, voc_text);
    XML_SetEntityDeclHandler(x->parser, voc_entity);
}

/* Feed one chunk (final = last one); returns the Status with a message naming the file. */
static Status voc_xml_feed(VocXml *x, const char *data, size_t n, bool final) {
    if (n > (size_t)INT32_MAX) return error_set(STATUS_ERR_FORMAT, "%s: chunk too large", x->what);
    if (XML_Parse(x->parser, data, (int)n, final) == XML_STATUS_ERROR || x->status != STATUS_OK) {
        if (x->status != STATUS_OK) return error_set(x->status, "%s: %s", x->what, x->error);
        return error_set(STATUS_ERR_FORMAT, "%s:%lu: malformed XML: %s", x->what,
                         (unsigned long)XML_GetCurrentLineNumber(x->parser),
                         XML_ErrorString(XML_GetErrorCode(x->parser)));
    }
    return STATUS_OK;
}

Status ds_voc_parse_xml(const char *xml, size_t size, const char *what, char *const *classes,
                        int64_t c, int8_t *row) {
    if (size > VOC_MAX_XML_BYTES)
        return error_set(STATUS_ERR_FORMAT, "%s: %zu bytes, more than the %d allowed for an "
                         "annotation", what, size, VOC_MAX_XML_BYTES);
    VocXml x;
    voc_xml_init(&x, what, classes, c, row);
    Status st = voc_xml_feed(&x, xml, size, true);
    XML_ParserFree(x.parser);
    return st;
}

/* Stream one annotation file through expat in 16 KiB chunks. */
static Status voc_parse_file(const char *path, char *const *classes, int64_t c, int8_t *row,
                             char *chunk, size_t chunk_size) {
    FILE *f;
    Status open_st = xfopen_regular(path, "VOC annotation", &f);
    if (open_st != STATUS_OK) return open_st;
    VocXml x;
    voc_xml_init(&x, path, classes, c, row);
    Status st = STATUS_OK;
    size_t total = 0;
    for (;;) {
        size_t n = fread(chunk, 1, chunk_size, f);
        if (ferror(f)) {
            st = error_set(STATUS_ERR_IO, "%s: read error", path);
            break;
        }
        total += n;
        if (total > VOC_MAX_XML_BYTES) {
            st = error_set(STATUS_ERR_FORMAT, "%s: larger than the %d bytes allowed for an "
                           "annotation", path, VOC_MAX_XML_BYTES);
            break;
        }
        bool final = n < chunk_size;
        st = voc_xml_feed(&x, chunk, n, final);
        if (st != STATUS_OK || final) break;
    }
    XML_ParserFree(x.parser);
    fclose(f);
    return st;
}

/* The VOC<year> directory under root, or NULL with the error set. */
static char *voc_find_dir(const char *name, const char *root) {
    const char *year = !strcmp(name, "voc2007") ? "VOC2007" : "VOC2012";
    char *cand[3];
    cand[0] = ds_path_join(root, year);
    char *devkit = ds_path_join(root, "VOCdevkit");
    cand[1] = ds_path_join(devkit, year);
    free(devkit);
    cand[2] = ds_strdup(root);
    char *found = NULL;
    for (int i = 0; i < 3 && !found; i++) {
        char *ann = ds_path_join(cand[i], "Annotations");
        if (ds_is_dir(ann)) found = cand[i];
        free(ann);
    }
    for (int i = 0; i < 3; i++)
        if (cand[i] != found) free(cand[i]);
    if (!found)
        error_set(STATUS_ERR_IO, "%s: no %s/Annotations under '%s' (expected the VOCdevkit "
                  "layout: <root>/%s/{Annotations,ImageSets/Main,JPEGImages}, <root> being "
                  "VOCdevkit or the %s directory itself)", name, year, root, year, year);
    return found;
}

/* Split names become file names: keep them to a safe character set. */
static bool voc_safe_token(const char *s) {
    if (!*s || strlen(s) > 200) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return false;
    return strcmp(s, ".") && strcmp(s, "..");
}

static Status voc_read_classes(const char *path, DsStrings *names) {
    DsLines r;
    Status st = ds_lines_open(&r, path);
    char *line;
    while (st == STATUS_OK && (st = ds_lines_next(&r, &line)) == STATUS_OK && line) {
        if (!*line) continue;
        for (int64_t k = 0; k < names->n; k++)
            if (!strcmp(names->items[k], line))
                st = error_set(STATUS_ERR_FORMAT, "%s:%lld: class '%s' listed twice", path,
                               (long long)r.lineno, line);
        if (names->n >= VOC_MAX_CLASSES)
            st = error_set(STATUS_ERR_FORMAT, "%s: more than %d classes", path, VOC_MAX_CLASSES);
        if (st == STATUS_OK) ds_strings_push(names, line, strlen(line));
    }
    ds_lines_close(&r);
    if (st == STATUS_OK && names->n == 0)
        st = error_set(STATUS_ERR_FORMAT, "%s: no class names", path);
    return st;
}

Status ds_open_voc(const char *name, const char *root, const char *split, const DsOptions *opt,
                   Dataset **out) {
    if (!voc_safe_token(split))
        return error_set(STATUS_ERR_USAGE, "%s: bad split name '%s' (expected trainval, test, "
                         "train or val)", name, split);
    char *voc = voc_find_dir(name, root);
    if (!voc) return STATUS_ERR_IO;

    DsStrings classes = {0}, ids = {0};
    Status st = STATUS_OK;
    if (opt->class_list) {
        st = voc_read_classes(opt->class_list, &classes);
    } else {
        for (int k = 0; k < DS_VOC_NC; k++)
            ds_strings_push(&classes, DS_VOC_CLASSES[k], strlen(DS_VOC_CLASSES[k]));
    }

    /* ImageSets/Main/<split>.txt: one id per line (first token). */
    char *sets = ds_path_join(voc, "ImageSets/Main");
    char fname[256];
    snprintf(fname, sizeof fname, "%s.txt", split);
    char *list = ds_path_join(sets, fname);
    free(sets);
    if (st == STATUS_OK && !ds_is_file(list))
        st = error_set(STATUS_ERR_IO, "%s: split list '%s' not found (splits: trainval, test, "
                       "train, val; VOC2012 has no public test annotations)", name, list);
    if (st == STATUS_OK) {
        DsLines r;
        st = ds_lines_open(&r, list);
        char *line;
        while (st == STATUS_OK && (st = ds_lines_next(&r, &line)) == STATUS_OK && line) {
            size_t len = strcspn(line, " \t");
            if (len == 0) continue;
            line[len] = 0;
            if (!voc_safe_token(line))
                st = error_set(STATUS_ERR_FORMAT, "%s:%lld: bad image id '%.64s'", list,
                               (long long)r.lineno, line);
            else
                ds_strings_push(&ids, line, len);
        }
        ds_lines_close(&r);
        if (st == STATUS_OK && ids.n == 0)
            st = error_set(STATUS_ERR_FORMAT, "%s: no image ids", list);
    }
    free(list);

    if (st == STATUS_OK) {
        Dataset *ds = ds_alloc(name, split, ids.n, classes.n);
        *out = ds;
        for (int64_t k = 0; k < classes.n; k++) {
            ds->class_names[k] = classes.items[k];
            classes.items[k] = NULL;
        }
        char *ann_dir = ds_path_join(voc, "Annotations");
        char *img_dir = opt->image_dir ? ds_strdup(opt->image_dir)
                                       : ds_path_join(voc, "JPEGImages");
        size_t chunk_size = 16384;
        char *chunk = xmalloc(chunk_size);
        for (int64_t i = 0; i < ids.n && st == STATUS_OK; i++) {
            snprintf(fname, sizeof fname, "%s.xml", ids.items[i]);
            char *xml = ds_path_join(ann_dir, fname);
            st = voc_parse_file(xml, ds->class_names, ds->c, ds->labels + i * ds->c, chunk,
                                chunk_size);
            free(xml);
            snprintf(fname, sizeof fname, "%s.jpg", ids.items[i]);
            ds->image_paths[i] = ds_path_join(img_dir, fname);
        }
        free(chunk);
        free(ann_dir);
        free(img_dir);
    }
    ds_strings_free(&classes);
    ds_strings_free(&ids);
    free(voc);
    return st;
}
