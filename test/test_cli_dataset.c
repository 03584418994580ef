/* test_cli_dataset.c — `trmml mask` and `trmml verify-dataset` on a small VOC tree written here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/csv.h"
#include "datasets/dataset.h"
#include "tensor/image.h"
#include "datasets/mask.h"
#include "test/test.h"

static char g_dir[64];

static void write_text(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, rel);
    FILE *f = fopen(path, "w");
    CHECK(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* VOCdevkit/VOC2007 with 4 images: dog; cat+person; a difficult-only bird; car. */
static void make_voc(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/trmml-cli-XXXXXX");
    CHECK(mkdtemp(g_dir), "mkdtemp");
    const char *dirs[] = {"VOCdevkit", "VOCdevkit/VOC2007", "VOCdevkit/VOC2007/JPEGImages",
                          "VOCdevkit/VOC2007/Annotations", "VOCdevkit/VOC2007/ImageSets",
                          "VOCdevkit/VOC2007/ImageSets/Main"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", g_dir, dirs[i]);
        CHECK(mkdir(p, 0755) == 0, "mkdir %s", p);
    }
    const char *objs[4] = {"<object><name>dog</name><difficult>0</difficult></object>",
                           "<object><name>cat</name><difficult>0</difficult></object>"
                           "<object><name>person</name><difficult>0</difficult></object>",
                           "<object><name>bird</name><difficult>1</difficult></object>",
                           "<object><name>car</name><difficult>0</difficult></object>"};
    Image im = {.w = 16, .h = 12};
    im.px = xcalloc(16 * 12 * 3, 1);
    for (int i = 0; i < 16 * 12 * 3; i++) im.px[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 4; i++) {
        char rel[256], xml[1024], path[512];
        snprintf(rel, sizeof rel, "VOCdevkit/VOC2007/Annotations/00000%d.xml", i + 1);
        snprintf(xml, sizeof xml, "<annotation><filename>00000%d.jpg</filename>%s</annotation>",
                 i + 1, objs[i]);
        write_text(rel, xml);
        snprintf(path, sizeof path, "%s/VOCdevkit/VOC2007/JPEGImages/00000%d.jpg", g_dir, i + 1);
        CHECK(image_save_jpeg(&im, path, 90) == STATUS_OK, "%s", error_last());
    }
    free(im.px);
    write_text("VOCdevkit/VOC2007/ImageSets/Main/trainval.txt", "000001\n000002\n000003\n000004\n");
    write_text("VOCdevkit/VOC2007/ImageSets/Main/test.txt", "000001\n000004\n");
}

TEST(cli_mask_and_verify_dataset) {
    char exe[4200], cmd[8192], out[8192], csv[256];
    if (!test_trmml_path(exe, sizeof exe)) return;
    make_voc();
    snprintf(csv, sizeof csv, "%s/mask.csv", g_dir);

    /* mask: exit 0, and the file equals the in-process protocol on the same labels. */
    snprintf(cmd, sizeof cmd, "'%s' mask --dataset voc2007 --root '%s' --split trainval --ratio 0.5 "
             "--out '%s' 2>&1", exe, g_dir, csv);
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, "sha256="), "mask: exit %d: %s", rc, out);
    Dataset *ds = NULL;
    CHECK(ds_open("voc2007", g_dir, "trainval", NULL, &ds) == STATUS_OK, "%s", error_last());
    int8_t want[4 * 20], *got = NULL;
    MaskInfo info;
    CHECK(ds_mask_partial(want, ds->labels, ds->n, ds->c, 0.5, 0, &info) == STATUS_OK, "mask");
    int64_t rows = 0, cols = 0;
    if (ds_csv_read_labels(csv, &got, &rows, &cols) != STATUS_OK)
        test_fail(__FILE__, __LINE__, "reading the mask back: %s", error_last());
    else
        EXPECT(rows == 4 && cols == 20 && memcmp(got, want, sizeof want) == 0,
               "mask file differs from ds_mask_partial (%lld x %lld)", (long long)rows, (long long)cols);
    free(got);
    ds_free(ds);

    /* Usage errors: exit 2, nothing written. */
    remove(csv);
    snprintf(cmd, sizeof cmd, "'%s' mask --dataset voc2007 --root '%s' --split trainval --ratio 1.5 "
             "--out '%s' 2>&1", exe, g_dir, csv);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 2 && strstr(out, "--ratio") && access(csv, F_OK) != 0, "bad ratio: exit %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' mask --dataset voc2007 --root '%s/nope' --split trainval "
             "--ratio 0.5 --out '%s' 2>&1", exe, g_dir, csv);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 1 && strstr(out, "nope") && access(csv, F_OK) != 0, "missing root: exit %d: %s", rc, out);

    /* verify-dataset: clean tree passes; a missing and a corrupt image are reported, exit 1. */
    snprintf(cmd, sizeof cmd, "'%s' verify-dataset --dataset voc2007 --root '%s' 2>&1", exe, g_dir);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, "trainval: 4 images, 20 classes") &&
               strstr(out, "test: 2 images") && strstr(out, "1 without a positive label"),
           "verify clean: exit %d: %s", rc, out);
    char p[512];
    snprintf(p, sizeof p, "%s/VOCdevkit/VOC2007/JPEGImages/000002.jpg", g_dir);
    remove(p);
    snprintf(p, sizeof p, "%s/VOCdevkit/VOC2007/JPEGImages/000004.jpg", g_dir);
    FILE *f = fopen(p, "r+b");
    CHECK(f, "open %s", p);
    CHECK(ftruncate(fileno(f), 40) == 0, "truncate");
    fclose(f);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 1 && strstr(out, "missing: ") && strstr(out, "000002.jpg") &&
               strstr(out, "unreadable: ") && strstr(out, "000004.jpg") &&
               strstr(out, "1 missing, 1 unreadable"),
           "verify damaged: exit %d: %s", rc, out);
    test_remove_tree(g_dir);
}
