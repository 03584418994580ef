/* test_datasets.c — the dataset readers on small trees in the real layouts, written by the tests
 * themselves into a fresh directory under /tmp (removed afterwards): VOC with difficult objects
 * and a difficult-only class, COCO with non-contiguous ids, crowd annotations and an image
 * without annotations, NUS-WIDE with backslash paths and a missing image, VG-200 with custom
 * paths, CUB with an extra field; malformed files, missing files and wrong layouts must give
 * errors naming the file. */
#define _XOPEN_SOURCE 700
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/classnames.h"
#include "datasets/dataset.h"
#include "test/test.h"

/* ---- temporary trees ------------------------------------------------------------------------ */

static char g_root[64];

static const char *tmp_root(void) {
    snprintf(g_root, sizeof g_root, "/tmp/trmml-datasets-XXXXXX");
    CHECK(mkdtemp(g_root), "mkdtemp failed");
    return g_root;
}


/* Write root/rel (creating the parent directories) with the given content. */
static void put(const char *rel, const char *content) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    for (char *p = path + strlen(g_root) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot write %s", path);
    fputs(content, f);
    fclose(f);
}

static char *at(const char *rel) {
    static char path[16][1024]; /* several may be alive at once (DsOptions) */
    static int slot;
    char *p = path[slot++ % 16];
    snprintf(p, 1024, "%s/%s", g_root, rel);
    return p;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* The label row of item i equals want[0..C). */
static void expect_row(const Dataset *ds, int64_t i, const int8_t *want, const char *what) {
    const int8_t *row = ds_label_row(ds, i);
    for (int64_t k = 0; k < ds->c; k++)
        EXPECT(row[k] == want[k], "%s: item %lld class %lld (%s): got %d, want %d", what,
               (long long)i, (long long)k, ds->class_names[k], row[k], want[k]);
}

/* The call failed with status `want` and a message containing `needle` (a file name). */
#define EXPECT_ERROR(call, want, needle)                                                   \
    do {                                                                                   \
        Status st_ = (call);                                                               \
        EXPECT(st_ == (want) && strstr(error_last(), (needle)),                            \
               "%s: got status %s, message '%s'; want %s naming '%s'", #call,              \
               status_name(st_), error_last(), status_name(want), (needle));               \
    } while (0)

/* ---- PASCAL VOC ----------------------------------------------------------------------------- */

static const char *voc_xml(const char *objects) {
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>x.jpg</filename>\n"
             "\t<source><database>The VOC2007 Database</database></source>\n"
             "\t<size><width>500</width><height>375</height><depth>3</depth></size>\n"
             "\t<segmented>0</segmented>\n%s</annotation>\n", objects);
    return buf;
}

#define VOC_OBJ(name, diff)                                                                \
    "\t<object>\n\t\t<name>" name "</name>\n\t\t<pose>Left</pose>\n\t\t<truncated>0"       \
    "</truncated>\n\t\t<difficult>" diff "</difficult>\n\t\t<bndbox><xmin>1</xmin><ymin>2"  \
    "</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>\n\t</object>\n"

static void voc_tree(const char *dir) {
    char p[256];
    snprintf(p, sizeof p, "%s/ImageSets/Main/trainval.txt", dir);
    put(p, "000005\n000007\r\n\n000009\n"); /* a CRLF line and a blank line */
    snprintf(p, sizeof p, "%s/Annotations/000005.xml", dir);
    /* chair: one plain and one difficult object -> +1; pottedplant only difficult -> -1;
     * person with a <part> whose <name> (head) must not count as an object. */
    put(p, voc_xml(VOC_OBJ("chair", "0") VOC_OBJ("chair", "1") VOC_OBJ("pottedplant", "1")
                   "\t<object><name>person</name><difficult>0</difficult><part><name>head"
                   "</name><bndbox><xmin>1</xmin></bndbox></part></object>\n"));
    snprintf(p, sizeof p, "%s/Annotations/000007.xml", dir);
    /* No <difficult> at all (as in some VOC2012 files): not difficult. */
    put(p, voc_xml("\t<object><name> car </name><bndbox><xmin>1</xmin></bndbox></object>\n"));
    snprintf(p, sizeof p, "%s/Annotations/000009.xml", dir);
    put(p, voc_xml(VOC_OBJ("cat", " 1 ") VOC_OBJ("cat", "1") VOC_OBJ("dog", "0")));
}

static void voc_expect(const Dataset *ds) {
    EXPECT(ds->n == 3 && ds->c == 20, "N=%lld C=%lld, want 3 and 20", (long long)ds->n,
           (long long)ds->c);
    if (ds->n != 3 || ds->c != 20) return;
    EXPECT(!strcmp(ds->class_names[0], "aeroplane") && !strcmp(ds->class_names[19], "tvmonitor"),
           "class names %s..%s", ds->class_names[0], ds->class_names[19]);
    EXPECT(ends_with(ds_image_path(ds, 0), "VOC2007/JPEGImages/000005.jpg") &&
           ends_with(ds_image_path(ds, 2), "VOC2007/JPEGImages/000009.jpg"),
           "paths %s, %s", ds_image_path(ds, 0), ds_image_path(ds, 2));
    int8_t want[20];
    memset(want, -1, sizeof want);
    want[8] = want[14] = 1; /* chair, person; pottedplant (15) stays -1 (difficult only) */
    expect_row(ds, 0, want, "000005");
    memset(want, -1, sizeof want);
    want[6] = 1; /* car */
    expect_row(ds, 1, want, "000007");
    memset(want, -1, sizeof want);
    want[11] = 1; /* dog; cat (7) only difficult */
    expect_row(ds, 2, want, "000009");
}

TEST(datasets_voc2007_difficult_and_layouts) {
    tmp_root();
    voc_tree("VOCdevkit/VOC2007");
    /* The root may be the parent of VOCdevkit, VOCdevkit itself or the VOC2007 directory. */
    const char *roots[3] = {"", "VOCdevkit", "VOCdevkit/VOC2007"};
    for (int r = 0; r < 3; r++) {
        Dataset *ds = NULL;
        Status st = ds_open("voc2007", at(roots[r]), "trainval", NULL, &ds);
        EXPECT(st == STATUS_OK, "root '%s': %s", roots[r], error_last());
        if (ds) voc_expect(ds);
        ds_free(ds);
    }
    test_remove_tree(g_root);
}

TEST(datasets_voc2012_and_custom_classes) {
    tmp_root();
    put("VOCdevkit/VOC2012/ImageSets/Main/train.txt", "2008_000002\n");
    put("VOCdevkit/VOC2012/Annotations/2008_000002.xml",
        voc_xml(VOC_OBJ("tvmonitor", "0") VOC_OBJ("aeroplane", "1")));
    Dataset *ds = NULL;
    EXPECT(ds_open("voc2012", at("VOCdevkit"), "train", NULL, &ds) == STATUS_OK, "%s",
           error_last());
    if (ds) {
        int8_t want[20];
        memset(want, -1, sizeof want);
        want[19] = 1;
        expect_row(ds, 0, want, "2008_000002");
        EXPECT(!strcmp(ds->name, "voc2012") && !strcmp(ds->split, "train"), "name/split");
    }
    ds_free(ds);
    /* A class list replaces the standard 20 (the synthetic world uses the VOC layout). */
    put("synth/ImageSets/Main/test.txt", "0\n1\n");
    put("synth/Annotations/0.xml", voc_xml(VOC_OBJ("star", "0") VOC_OBJ("ring", "1")));
    put("synth/Annotations/1.xml", voc_xml(VOC_OBJ("ring", "0")));
    put("synth/classes.txt", "ring\nstar\n");
    DsOptions opt = {.class_list = at("synth/classes.txt"), .image_dir = "/images"};
    ds = NULL;
    EXPECT(ds_open("voc2007", at("synth"), "test", &opt, &ds) == STATUS_OK, "%s", error_last());
    if (ds) {
        EXPECT(ds->c == 2 && !strcmp(ds->class_names[1], "star"), "custom classes");
        expect_row(ds, 0, (const int8_t[]){-1, 1}, "synth 0");
        expect_row(ds, 1, (const int8_t[]){1, -1}, "synth 1");
        EXPECT(!strcmp(ds_image_path(ds, 1), "/images/1.jpg"), "path %s", ds_image_path(ds, 1));
    }
    ds_free(ds);
    test_remove_tree(g_root);
}

TEST(datasets_voc_errors_name_the_file) {
    tmp_root();
    const char *v = "VOCdevkit/VOC2007";
    voc_tree(v);
    put("VOCdevkit/VOC2007/ImageSets/Main/malformed.txt", "000011\n");
    put("VOCdevkit/VOC2007/Annotations/000011.xml", "<annotation><object><name>cat</name>"
                                                    "</annotation>");
    put("VOCdevkit/VOC2007/ImageSets/Main/missing.txt", "000005\n000013\n");
    put("VOCdevkit/VOC2007/ImageSets/Main/unknown.txt", "000015\n");
    put("VOCdevkit/VOC2007/Annotations/000015.xml", voc_xml(VOC_OBJ("unicorn", "0")));
    put("VOCdevkit/VOC2007/ImageSets/Main/entity.txt", "000017\n");
    put("VOCdevkit/VOC2007/Annotations/000017.xml",
        "<!DOCTYPE a [<!ENTITY x \"xxxxxxxx\"><!ENTITY y \"&x;&x;&x;\">]>"
        "<annotation><object><name>&y;</name></object></annotation>");
    put("VOCdevkit/VOC2007/ImageSets/Main/root.txt", "000019\n");
    put("VOCdevkit/VOC2007/Annotations/000019.xml",
        "<html><object><name>cat</name></object></html>");
    put("VOCdevkit/VOC2007/ImageSets/Main/diff.txt", "000021\n");
    put("VOCdevkit/VOC2007/Annotations/000021.xml", voc_xml(VOC_OBJ("cat", "maybe")));
    Dataset *ds = (Dataset *)1;
    const char *root = at("VOCdevkit");
    EXPECT_ERROR(ds_open("voc2007", root, "malformed", NULL, &ds), STATUS_ERR_FORMAT, "000011.xml");
    EXPECT(ds == NULL, "*out is NULL after a failure");
    EXPECT(strstr(error_last(), "malformed XML"), "message: %s", error_last());
    EXPECT_ERROR(ds_open("voc2007", root, "missing", NULL, &ds), STATUS_ERR_IO, "000013.xml");
    EXPECT_ERROR(ds_open("voc2007", root, "unknown", NULL, &ds), STATUS_ERR_FORMAT, "unicorn");
    EXPECT(strstr(error_last(), "000015.xml"), "message: %s", error_last());
    EXPECT_ERROR(ds_open("voc2007", root, "entity", NULL, &ds), STATUS_ERR_FORMAT, "000017.xml");
    EXPECT_ERROR(ds_open("voc2007", root, "root", NULL, &ds), STATUS_ERR_FORMAT, "<annotation>");
    EXPECT_ERROR(ds_open("voc2007", root, "diff", NULL, &ds), STATUS_ERR_FORMAT, "maybe");
    EXPECT_ERROR(ds_open("voc2007", root, "val", NULL, &ds), STATUS_ERR_IO,
                 "ImageSets/Main/val.txt");
    EXPECT_ERROR(ds_open("voc2007", root, "../x", NULL, &ds), STATUS_ERR_USAGE, "split");
    /* Wrong layout: a directory without Annotations/. */
    put("empty/readme.txt", "");
    EXPECT_ERROR(ds_open("voc2007", at("empty"), "trainval", NULL, &ds), STATUS_ERR_IO,
                 "VOCdevkit layout");
    EXPECT_ERROR(ds_open("voc2012", root, "train", NULL, &ds), STATUS_ERR_IO, "VOC2012");
    test_remove_tree(g_root);
}

TEST(datasets_voc_parser_bounds) {
    char *cls[2] = {"cat", "dog"};
    int8_t row[2];
    /* Nesting past the bound and an over-long name are errors, not crashes. */
    char deep[2048] = "<annotation>";
    for (int i = 0; i < 40; i++) strcat(deep, "<a>");
    EXPECT(ds_voc_parse_xml(deep, strlen(deep), "deep.xml", cls, 2, row) == STATUS_ERR_FORMAT &&
           strstr(error_last(), "deep.xml"), "deep nesting: %s", error_last());
    char longname[1024];
    snprintf(longname, sizeof longname, "<annotation><object><name>%0400d</name></object>"
             "</annotation>", 0);
    EXPECT(ds_voc_parse_xml(longname, strlen(longname), "long.xml", cls, 2, row) ==
           STATUS_ERR_FORMAT, "long name");
    const char *ok = "<annotation><object><name>dog</name></object></annotation>";
    EXPECT(ds_voc_parse_xml(ok, strlen(ok), "ok.xml", cls, 2, row) == STATUS_OK && row[0] == -1 &&
           row[1] == 1, "plain parse: %s", error_last());
    EXPECT(ds_voc_parse_xml(ok, 20, "cut.xml", cls, 2, row) == STATUS_ERR_FORMAT &&
           strstr(error_last(), "cut.xml"), "truncated XML");
}

/* ---- MS-COCO -------------------------------------------------------------------------------- */

/* Categories after annotations and out of id order (ids 1, 3, 7, 90); image 100 has no
 * annotation; image 7 has only a crowd annotation (RLE segmentation object); image 42 has two
 * annotations of one category. */
static const char COCO_JSON[] =
    "{\"info\": {\"year\": 2014, \"nested\": {\"a\": [1, {\"b\": [2.5, null, true]}]}},\n"
    " \"images\": [\n"
    "  {\"license\": 3, \"file_name\": \"COCO_val2014_000000000042.jpg\", \"height\": 480,"
    "   \"width\": 640, \"date_captured\": \"2013-11-14 16:28:13\", \"id\": 42},\n"
    "  {\"id\": 7, \"file_name\": \"COCO_val2014_000000000007.jpg\"},\n"
    "  {\"id\": 100, \"file_name\": \"COCO_val2014_000000000100.jpg\"},\n"
    "  {\"file_name\": \"COCO_val2014_000000000013.jpg\", \"id\": 13}],\n"
    " \"licenses\": [{\"id\": 1, \"name\": \"x\", \"url\": \"http:\\/\\/x\"}],\n"
    " \"annotations\": [\n"
    "  {\"segmentation\": [[1.5, 2.0, 3.0, 4.0]], \"area\": 10.5, \"iscrowd\": 0, \"image_id\": 42,"
    "   \"bbox\": [1, 2, 3, 4], \"category_id\": 90, \"id\": 1},\n"
    "  {\"segmentation\": {\"counts\": [1, 2, 3], \"size\": [4, 5]}, \"iscrowd\": 1,"
    "   \"image_id\": 7, \"category_id\": 3, \"id\": 2},\n"
    "  {\"image_id\": 42, \"category_id\": 1, \"id\": 3, \"iscrowd\": 0},\n"
    "  {\"image_id\": 42, \"category_id\": 1, \"id\": 4},\n"
    "  {\"image_id\": 13, \"category_id\": 7, \"id\": 5}],\n"
    " \"categories\": [{\"supercategory\": \"accessory\", \"id\": 90, \"name\": \"toothbrush\"},"
    "  {\"id\": 1, \"name\": \"person\"}, {\"id\": 7, \"name\": \"train\"},"
    "  {\"id\": 3, \"name\": \"car\"}]}\n";

static void coco_expect(const Dataset *ds, const char *what) {
    EXPECT(ds->n == 3 && ds->c == 4 && ds->n_dropped == 1, "%s: N=%lld C=%lld dropped=%lld", what,
           (long long)ds->n, (long long)ds->c, (long long)ds->n_dropped);
    if (ds->n != 3 || ds->c != 4) return;
    const char *names[4] = {"person", "car", "train", "toothbrush"}; /* ascending ids 1,3,7,90 */
    for (int k = 0; k < 4; k++)
        EXPECT(!strcmp(ds->class_names[k], names[k]), "%s: class %d is %s", what, k,
               ds->class_names[k]);
    /* Ascending image id: 7, 13, 42 (100 dropped). */
    EXPECT(ends_with(ds_image_path(ds, 0), "/COCO_val2014_000000000007.jpg") &&
           ends_with(ds_image_path(ds, 2), "/COCO_val2014_000000000042.jpg"), "%s: order %s %s",
           what, ds_image_path(ds, 0), ds_image_path(ds, 2));
    EXPECT(strstr(ds->dropped_example, "000000000100"), "%s: dropped %s", what,
           ds->dropped_example);
    expect_row(ds, 0, (const int8_t[]){-1, 1, -1, -1}, what); /* crowd-only car counts */
    expect_row(ds, 1, (const int8_t[]){-1, -1, 1, -1}, what);
    expect_row(ds, 2, (const int8_t[]){1, -1, -1, 1}, what);
}

TEST(datasets_coco_ids_crowd_and_order) {
    tmp_root();
    put("coco/annotations/instances_val2014.json", COCO_JSON);
    Dataset *ds = NULL;
    EXPECT(ds_open("coco2014", at("coco"), "test", NULL, &ds) == STATUS_OK, "%s", error_last());
    if (ds) {
        coco_expect(ds, "ds_open");
        EXPECT(ends_with(ds_image_path(ds, 0), "coco/val2014/COCO_val2014_000000000007.jpg"),
               "path %s", ds_image_path(ds, 0));
    }
    ds_free(ds);
    /* Chunk boundaries anywhere (inside keys, numbers, escapes) give the same result. */
    size_t chunks[4] = {0, 1, 7, 64};
    for (int i = 0; i < 4; i++) {
        ds = NULL;
        char what[32];
        snprintf(what, sizeof what, "chunk %zu", chunks[i]);
        EXPECT(ds_coco_parse_json(COCO_JSON, strlen(COCO_JSON), chunks[i], "mem.json", "img",
                                  &ds) == STATUS_OK, "%s: %s", what, error_last());
        if (ds) coco_expect(ds, what);
        ds_free(ds);
    }
    test_remove_tree(g_root);
}

TEST(datasets_coco_errors_name_the_file) {
    Dataset *ds = NULL;
    const char *trunc = "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}], \"annot";
    EXPECT_ERROR(ds_coco_parse_json(trunc, strlen(trunc), 0, "trunc.json", "", &ds),
                 STATUS_ERR_FORMAT, "trunc.json");
    EXPECT(strstr(error_last(), "malformed JSON"), "message: %s", error_last());
    const char *bad = "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}], \"annotations\": "
                      "[{\"image_id\": 5, \"category_id\": 1}], \"categories\": [{\"id\": 1, "
                      "\"name\": \"cat\"}]}";
    EXPECT_ERROR(ds_coco_parse_json(bad, strlen(bad), 0, "bad.json", "", &ds), STATUS_ERR_FORMAT,
                 "image id 5");
    const char *nocat = "{\"images\": [], \"annotations\": []}";
    EXPECT_ERROR(ds_coco_parse_json(nocat, strlen(nocat), 0, "nocat.json", "", &ds),
                 STATUS_ERR_FORMAT, "'categories'");
    const char *strid = "{\"images\": [{\"id\": \"1\", \"file_name\": \"a.jpg\"}]}";
    EXPECT_ERROR(ds_coco_parse_json(strid, strlen(strid), 0, "strid.json", "", &ds),
                 STATUS_ERR_FORMAT, "expected an integer");
    const char *arr = "[1, 2]";
    EXPECT_ERROR(ds_coco_parse_json(arr, strlen(arr), 0, "arr.json", "", &ds), STATUS_ERR_FORMAT,
                 "arr.json");
    const char *noname = "{\"images\": [{\"id\": 1}]}";
    EXPECT_ERROR(ds_coco_parse_json(noname, strlen(noname), 0, "n.json", "", &ds),
                 STATUS_ERR_FORMAT, "file_name");
    char deep[400] = "{\"info\": ";
    for (int i = 0; i < 100; i++) strcat(deep, "[");
    EXPECT_ERROR(ds_coco_parse_json(deep, strlen(deep), 0, "deep.json", "", &ds),
                 STATUS_ERR_FORMAT, "nested deeper");
    EXPECT(ds == NULL, "*out stays NULL");
    tmp_root();
    put("coco/annotations/instances_val2014.json", COCO_JSON);
    EXPECT_ERROR(ds_open("coco2014", at("coco"), "train", NULL, &ds), STATUS_ERR_IO,
                 "instances_train2014.json");
    EXPECT_ERROR(ds_open("coco2014", at("coco"), "minival", NULL, &ds), STATUS_ERR_USAGE,
                 "minival");
    test_remove_tree(g_root);
}

/* ---- NUS-WIDE ------------------------------------------------------------------------------- */

static void nus_tree(void) {
    put("nus/Concepts81.txt", "animal\r\nbeach\r\ncat\r\n");
    put("nus/ImageList/TrainImagelist.txt",
        "animal\\0001_2124494179.jpg\r\nbeach\\0002_2.jpg\r\ncat\\0003_3.jpg\r\n");
    put("nus/TrainTestLabels/Labels_animal_Train.txt", "1\n0\n0\n");
    put("nus/TrainTestLabels/Labels_beach_Train.txt", "0\n1\n0\n");
    put("nus/TrainTestLabels/Labels_cat_Train.txt", "1 \n0\n1\n");
    put("nus/Flickr/animal/0001_2124494179.jpg", "");
    put("nus/Flickr/cat/0003_3.jpg", ""); /* beach\0002_2.jpg is missing */
}

TEST(datasets_nuswide_backslashes_and_missing_images) {
    tmp_root();
    nus_tree();
    Dataset *ds = NULL;
    EXPECT(ds_open("nuswide", at("nus"), "train", NULL, &ds) == STATUS_OK, "%s", error_last());
    if (ds) {
        EXPECT(ds->n == 2 && ds->c == 3 && ds->n_dropped == 1, "N=%lld C=%lld dropped=%lld",
               (long long)ds->n, (long long)ds->c, (long long)ds->n_dropped);
        EXPECT(ends_with(ds->dropped_example, "Flickr/beach/0002_2.jpg"), "dropped %s",
               ds->dropped_example);
        EXPECT(!strcmp(ds->class_names[2], "cat"), "names");
        if (ds->n == 2) {
            EXPECT(ends_with(ds_image_path(ds, 0), "nus/Flickr/animal/0001_2124494179.jpg") &&
                   ends_with(ds_image_path(ds, 1), "nus/Flickr/cat/0003_3.jpg"), "paths %s %s",
                   ds_image_path(ds, 0), ds_image_path(ds, 1));
            expect_row(ds, 0, (const int8_t[]){1, -1, 1}, "nus 0");
            expect_row(ds, 1, (const int8_t[]){-1, -1, 1}, "nus 2 (after the drop)");
        }
    }
    ds_free(ds);
    /* Errors: a label file one line short, a missing split list, a value other than 0/1. */
    put("nus/TrainTestLabels/Labels_beach_Train.txt", "0\n1\n");
    EXPECT_ERROR(ds_open("nuswide", at("nus"), "train", NULL, &ds), STATUS_ERR_FORMAT,
                 "Labels_beach_Train.txt");
    put("nus/TrainTestLabels/Labels_beach_Train.txt", "0\n2\n0\n");
    EXPECT_ERROR(ds_open("nuswide", at("nus"), "train", NULL, &ds), STATUS_ERR_FORMAT,
                 "Labels_beach_Train.txt:2");
    EXPECT_ERROR(ds_open("nuswide", at("nus"), "test", NULL, &ds), STATUS_ERR_IO,
                 "TestImagelist.txt");
    EXPECT_ERROR(ds_open("nuswide", at("nus/Flickr"), "train", NULL, &ds), STATUS_ERR_IO,
                 "Concepts81.txt");
    test_remove_tree(g_root);
}

/* ---- VG-200 --------------------------------------------------------------------------------- */

TEST(datasets_vg200_configurable_paths) {
    tmp_root();
    put("meta/cats200.txt", "man\nwindow\nstreet sign\n");
    put("splits/mine.txt", "VG_100K/1.jpg\nVG_100K_2/2.jpg\n");
    put("lab/rows_dualcoop.txt", "1 0 -1\n0,0,1\n");
    put("lab/objects.tsv", "VG_100K_2/2.jpg\tstreet sign\tman\tunicorn\n"
                           "VG_100K/1.jpg\twindow\nVG_100K/999.jpg\tman\n");
    DsOptions opt = {.class_list = at("meta/cats200.txt"), .split_list = at("splits/mine.txt"),
                     .labels = at("lab/rows_dualcoop.txt"), .image_dir = "/vg",
                     .convention = DS_LABELS_DUALCOOP};
    Dataset *ds = NULL;
    EXPECT(ds_open("vg200", at(""), "test", &opt, &ds) == STATUS_OK, "%s", error_last());
    if (ds && ds->n == 2 && ds->c == 3) {
        expect_row(ds, 0, (const int8_t[]){1, -1, 0}, "vg rows (1/0/-1 imported)");
        expect_row(ds, 1, (const int8_t[]){-1, -1, 1}, "vg rows (1/0/-1 imported)");
        EXPECT(!strcmp(ds_image_path(ds, 1), "/vg/VG_100K_2/2.jpg"), "path %s",
               ds_image_path(ds, 1));
        EXPECT(!strcmp(ds->class_names[2], "street sign"), "names");
    } else {
        EXPECT(false, "vg200 shape");
    }
    ds_free(ds);
    /* The same file read in the default convention: the values are taken as +1/-1/0. */
    opt.convention = DS_LABELS_PM1;
    ds = NULL;
    EXPECT(ds_open("vg200", at(""), "test", &opt, &ds) == STATUS_OK, "%s", error_last());
    if (ds) expect_row(ds, 0, (const int8_t[]){1, 0, -1}, "vg rows (+1/-1/0)");
    ds_free(ds);
    /* Object-name lists: names outside the list and images of other splits are ignored. */
    opt.labels = at("lab/objects.tsv");
    opt.vg_format = DS_VG_OBJECT_NAMES;
    ds = NULL;
    EXPECT(ds_open("vg200", at(""), "test", &opt, &ds) == STATUS_OK, "%s", error_last());
    if (ds) {
        expect_row(ds, 0, (const int8_t[]){-1, 1, -1}, "vg objects 1");
        expect_row(ds, 1, (const int8_t[]){1, -1, 1}, "vg objects 2");
    }
    ds_free(ds);
    /* Errors name the file: a short row, a value the convention does not define, a split image
     * without objects, the default paths when none is given. */
    put("lab/short.txt", "1 0\n0 0 1\n");
    opt = (DsOptions){.class_list = at("meta/cats200.txt"), .split_list = at("splits/mine.txt"),
                      .labels = at("lab/short.txt")};
    EXPECT_ERROR(ds_open("vg200", at(""), "test", &opt, &ds), STATUS_ERR_FORMAT, "short.txt:1");
    put("lab/two.txt", "1 0 2\n0 0 1\n");
    opt.labels = at("lab/two.txt");
    EXPECT_ERROR(ds_open("vg200", at(""), "test", &opt, &ds), STATUS_ERR_FORMAT, "two.txt:1");
    put("lab/objects_short.tsv", "VG_100K/1.jpg\twindow\n");
    opt.labels = at("lab/objects_short.tsv");
    opt.vg_format = DS_VG_OBJECT_NAMES;
    EXPECT_ERROR(ds_open("vg200", at(""), "test", &opt, &ds), STATUS_ERR_FORMAT, "VG_100K_2/2.jpg");
    EXPECT_ERROR(ds_open("vg200", at(""), "test", NULL, &ds), STATUS_ERR_IO, "categories.txt");
    put("categories.txt", "man\nman\n");
    EXPECT_ERROR(ds_open("vg200", at(""), "test", NULL, &ds), STATUS_ERR_FORMAT, "twice");
    test_remove_tree(g_root);
}

/* ---- CUB-200-2011 --------------------------------------------------------------------------- */

static void cub_tree(void) {
    put("CUB_200_2011/images.txt", "1 001.Black_footed_Albatross/a1.jpg\n"
                                   "3 002.Laysan_Albatross/b1.jpg\n"
                                   "2 001.Black_footed_Albatross/a2.jpg\n");
    put("CUB_200_2011/train_test_split.txt", "1 1\n2 0\n3 1\n");
    /* attributes.txt beside CUB_200_2011/, as the official archive has it. */
    put("attributes.txt", "1 has_bill_shape::curved_(up_or_down)\n2 has_wing_color::blue\n");
    put("CUB_200_2011/attributes/image_attribute_labels.txt",
        "1 1 1 3 27.544\n1 2 0 1 3.2\n2 1 0 4 1.0\n2 2 1 3 0 5.1\n3 1 1 2 4.4\n3 2 1 3 8.0\n");
}

TEST(datasets_cub_attributes_extra_field) {
    tmp_root();
    cub_tree();
    Dataset *ds = NULL;
    EXPECT(ds_open("cub", at("CUB_200_2011"), "train", NULL, &ds) == STATUS_OK, "%s", error_last());
    if (ds && ds->n == 2 && ds->c == 2) {
        EXPECT(!strcmp(ds->class_names[0], "has bill shape curved (up or down)") &&
               !strcmp(ds->class_names[1], "has wing color blue"), "names '%s' '%s'",
               ds->class_names[0], ds->class_names[1]);
        expect_row(ds, 0, (const int8_t[]){1, -1}, "cub 1");
        expect_row(ds, 1, (const int8_t[]){1, 1}, "cub 3");
        EXPECT(ends_with(ds_image_path(ds, 1), "CUB_200_2011/images/002.Laysan_Albatross/b1.jpg"),
               "path %s", ds_image_path(ds, 1));
    } else {
        EXPECT(false, "cub train shape");
    }
    ds_free(ds);
    ds = NULL;
    EXPECT(ds_open("cub", at("CUB_200_2011"), "test", NULL, &ds) == STATUS_OK, "%s", error_last());
    if (ds && ds->n == 1) expect_row(ds, 0, (const int8_t[]){-1, 1}, "cub 2 (extra field)");
    ds_free(ds);
    /* A missing (image, attribute) pair, a repeated one, an is_present of 2, a repeated id. */
    put("CUB_200_2011/attributes/image_attribute_labels.txt",
        "1 1 1 3 27.544\n1 2 0 1 3.2\n2 1 0 4 1.0\n3 1 1 2 4.4\n3 2 1 3 8.0\n");
    EXPECT_ERROR(ds_open("cub", at("CUB_200_2011"), "train", NULL, &ds), STATUS_ERR_FORMAT,
                 "image_attribute_labels.txt: no label for image 2, attribute 2");
    put("CUB_200_2011/attributes/image_attribute_labels.txt", "1 1 1 3 2\n1 1 1 3 2\n");
    EXPECT_ERROR(ds_open("cub", at("CUB_200_2011"), "train", NULL, &ds), STATUS_ERR_FORMAT,
                 "image_attribute_labels.txt:2");
    put("CUB_200_2011/attributes/image_attribute_labels.txt", "1 1 2 3 2\n");
    EXPECT_ERROR(ds_open("cub", at("CUB_200_2011"), "train", NULL, &ds), STATUS_ERR_FORMAT,
                 "image_attribute_labels.txt:1");
    put("CUB_200_2011/train_test_split.txt", "1 1\n1 0\n3 1\n");
    EXPECT_ERROR(ds_open("cub", at("CUB_200_2011"), "train", NULL, &ds), STATUS_ERR_FORMAT,
                 "train_test_split.txt: id 1 is repeated");
    EXPECT_ERROR(ds_open("cub", at(""), "train", NULL, &ds), STATUS_ERR_IO, "images.txt");
    test_remove_tree(g_root);
}

/* ---- interface ------------------------------------------------------------------------------ */

TEST(datasets_open_errors_and_label_import) {
    Dataset *ds = NULL;
    EXPECT_ERROR(ds_open("imagenet", "/tmp", "train", NULL, &ds), STATUS_ERR_USAGE, "imagenet");
    EXPECT_ERROR(ds_open("voc2007", "/nonexistent/trmml", "trainval", NULL, &ds), STATUS_ERR_IO,
                 "/nonexistent/trmml");
    int8_t v[4] = {1, 0, -1, 1};
    EXPECT(ds_labels_import(v, 4, DS_LABELS_DUALCOOP, "x") == STATUS_OK && v[0] == 1 &&
           v[1] == -1 && v[2] == 0 && v[3] == 1, "DualCoOp 1/0/-1 -> +1/-1/0");
    int8_t w[3] = {1, 0, -1};
    EXPECT(ds_labels_import(w, 3, DS_LABELS_PM1, "x") == STATUS_OK && w[0] == 1 && w[1] == 0 &&
           w[2] == -1, "+1/-1/0 unchanged");
    int8_t bad[2] = {0, 2};
    EXPECT_ERROR(ds_labels_import(bad, 2, DS_LABELS_DUALCOOP, "labels.csv"), STATUS_ERR_FORMAT,
                 "labels.csv");
}

TEST(datasets_classnames) {
    int64_t c;
    const char *const *voc = ds_class_names("voc2012", &c);
    EXPECT(c == 20 && !strcmp(voc[10], "diningtable") && !strcmp(voc[15], "pottedplant"), "VOC");
    const char *const *coco = ds_class_names("coco2014", &c);
    EXPECT(c == 80 && !strcmp(coco[0], "person") && !strcmp(coco[62], "tv") &&
           !strcmp(coco[79], "toothbrush"), "COCO");
    const char *const *nus = ds_class_names("nuswide", &c);
    EXPECT(c == 81 && !strcmp(nus[0], "airport") && !strcmp(nus[80], "zebra"), "NUS");
    for (int64_t k = 1; k < c; k++)
        EXPECT(strcmp(nus[k - 1], nus[k]) < 0, "NUS concepts are alphabetical at %lld",
               (long long)k);
    EXPECT(ds_class_names("cub", &c) == NULL && c == 0, "CUB names come from its files");
    char buf[64];
    ds_cub_prompt_name("has_bill_shape::curved_(up_or_down)", buf, sizeof buf);
    EXPECT(!strcmp(buf, "has bill shape curved (up or down)"), "CUB prompt '%s'", buf);
    ds_cub_prompt_name("has_wing_color::blue", buf, 8);
    EXPECT(!strcmp(buf, "has win"), "truncation '%s'", buf);
}
