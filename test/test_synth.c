/* test_synth.c — the synthetic world: the VOC reader loads what the generator writes (labels,
 * classes, captions, images), the bytes are a function of the configuration (seed, not threads),
 * the difficult rule, and `trmml synth` (same bytes as the library, usage errors exit 2). */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "datasets/dataset.h"
#include "tensor/image.h"
#include "datasets/synth.h"
#include "tensor/sha256.h"
#include "test/test.h"

/* A tiny world: 12 train + 6 test images of 64 px. */
static SynthConfig tiny(uint64_t seed) {
    SynthConfig cfg = ds_synth_default_config();
    cfg.seed = seed;
    cfg.n_train = 12;
    cfg.n_test = 6;
    cfg.size = 64;
    return cfg;
}

static void make_tmp(char dir[64]) {
    snprintf(dir, 64, "/tmp/trmml-synth-XXXXXX");
    CHECK(mkdtemp(dir), "mkdtemp");
}


/* SHA-256 over every regular file of a tree, in path order: "<relative path>\0<bytes>". */
static char **g_files;
static int g_nfiles;
static size_t g_root_len;
static int collect(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)ftw;
    if (flag != FTW_F) return 0;
    g_files = xrealloc(g_files, (size_t)(g_nfiles + 1) * sizeof *g_files);
    g_files[g_nfiles++] = ds_strdup(p + g_root_len);
    return 0;
}
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}
static void tree_hash(const char *dir, char hex[65], int *nfiles) {
    g_files = NULL;
    g_nfiles = 0;
    g_root_len = strlen(dir);
    nftw(dir, collect, 16, FTW_PHYS);
    qsort(g_files, (size_t)g_nfiles, sizeof *g_files, cmp_str);
    Sha256 h;
    sha256_init(&h);
    for (int i = 0; i < g_nfiles; i++) {
        sha256_update(&h, g_files[i], strlen(g_files[i]) + 1);
        char *path = ds_path_join(dir, g_files[i] + 1);
        FILE *f = fopen(path, "rb");
        CHECK(f, "cannot read %s", path);
        char buf[8192];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(&h, buf, n);
        fclose(f);
        free(path);
        free(g_files[i]);
    }
    free(g_files);
    uint8_t d[32];
    sha256_final(&h, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    *nfiles = g_nfiles;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = xmalloc((size_t)n + 1);
    s[fread(s, 1, (size_t)n, f)] = 0;
    fclose(f);
    return s;
}

TEST(synth_class_names) {
    for (int k = 0; k < SYNTH_NC; k++) {
        const char *col, *tex, *shape;
        ds_synth_category(k, &col, &tex, &shape);
        char want[96];
        snprintf(want, sizeof want, *tex ? "%s %s %s" : "%s%s %s", col, tex, shape);
        EXPECT(!strcmp(SYNTH_CLASSES[k], want), "class %d: name '%s', words '%s'", k,
               SYNTH_CLASSES[k], want);
        for (int j = 0; j < k; j++)
            EXPECT(strcmp(SYNTH_CLASSES[j], SYNTH_CLASSES[k]), "classes %d and %d share a name",
                   j, k);
    }
}

/* Over many scenes: the difficult rule, boxes, an always-visible top object, the caption naming
 * exactly the non-difficult objects, and the annotation read back by the VOC parser. */
TEST(synth_scene_rules) {
    const int size = 48, scenes = 400;
    int difficult = 0, objects = 0, counts[SYNTH_MAX_OBJECTS + 1] = {0};
    for (int i = 0; i < scenes && !test_failed(); i++) {
        Image im;
        SynthScene sc;
        ds_synth_render(11, SYNTH_TRAIN, i, size, &im, &sc);
        EXPECT(im.w == size && im.h == size, "scene %d: %dx%d", i, im.w, im.h);
        image_free(&im);
        EXPECT(sc.n >= 1 && sc.n <= SYNTH_MAX_OBJECTS, "scene %d: %d objects", i, sc.n);
        counts[sc.n]++;
        EXPECT(sc.obj[sc.n - 1].visible > 0.999f, "scene %d: top object %.3f visible", i,
               sc.obj[sc.n - 1].visible);
        for (int k = 0; k < sc.n; k++) {
            const SynthObject *o = &sc.obj[k];
            objects++;
            difficult += o->difficult;
            EXPECT(o->difficult == (o->visible < 0.2f), "scene %d object %d: visible %.3f, "
                   "difficult %d", i, k, o->visible, o->difficult);
            EXPECT(o->xmin >= 1 && o->xmin <= o->xmax && o->xmax <= size && o->ymin >= 1 &&
                       o->ymin <= o->ymax && o->ymax <= size,
                   "scene %d object %d: box %d %d %d %d", i, k, o->xmin, o->ymin, o->xmax, o->ymax);
            for (int j = 0; j < k; j++)
                EXPECT(sc.obj[j].cls != o->cls, "scene %d: category %d twice", i, o->cls);
            /* Named in the caption iff not difficult: by its shape word at least. */
            const char *col, *tex, *shape;
            ds_synth_category(o->cls, &col, &tex, &shape);
            bool other_same_shape = false;
            for (int j = 0; j < sc.n; j++) {
                const char *c2, *t2, *s2;
                ds_synth_category(sc.obj[j].cls, &c2, &t2, &s2);
                other_same_shape |= j != k && !sc.obj[j].difficult && !strcmp(s2, shape);
            }
            if (!o->difficult)
                EXPECT(strstr(sc.caption, shape) && strstr(sc.caption, col),
                       "scene %d: caption '%s' lacks %s", i, sc.caption, SYNTH_CLASSES[o->cls]);
            else if (!other_same_shape)
                EXPECT(!strstr(sc.caption, shape), "scene %d: caption '%s' names the difficult %s",
                       i, sc.caption, SYNTH_CLASSES[o->cls]);
        }
        int8_t want[SYNTH_NC], got[SYNTH_NC];
        ds_synth_labels(&sc, want);
        int positives = 0;
        for (int k = 0; k < SYNTH_NC; k++) positives += want[k] > 0;
        EXPECT(positives >= 1, "scene %d: no positive label", i);
        char xml[SYNTH_XML_MAX];
        int len = ds_synth_annotation(&sc, "000001", size, xml);
        Status st = ds_voc_parse_xml(xml, (size_t)len, "synth.xml", (char *const *)SYNTH_CLASSES,
                                     SYNTH_NC, got);
        EXPECT(st == STATUS_OK && !memcmp(got, want, sizeof want), "scene %d: XML read back: %s",
               i, st == STATUS_OK ? "labels differ" : error_last());
    }
    /* Every object count occurs; occlusion happens, and the difficult rule fires at times. */
    for (int n = 1; n <= SYNTH_MAX_OBJECTS; n++)
        EXPECT(counts[n] > scenes / 10, "%d scenes with %d objects", counts[n], n);
    EXPECT(difficult >= 1 && difficult < objects / 20, "%d difficult of %d objects", difficult,
           objects);
}

/* The VOC reader with the class list loads exactly what the generator reports. */
TEST(synth_world_round_trip) {
    char dir[64], path[256];
    make_tmp(dir);
    SynthConfig cfg = tiny(5);
    SynthReport rep;
    Status st = ds_synth_write(dir, &cfg, false, &rep);
    EXPECT(st == STATUS_OK, "ds_synth_write: %s", error_last());
    if (st != STATUS_OK) {
        test_remove_tree(dir);
        return;
    }
    EXPECT(rep.images == 18, "report: %lld images", (long long)rep.images);

    snprintf(path, sizeof path, "%s/classes.txt", dir);
    DsOptions opt = {.class_list = path};
    char *captions = NULL;
    {
        char cp[256];
        snprintf(cp, sizeof cp, "%s/captions.txt", dir);
        captions = read_text(cp);
        EXPECT(captions, "no captions.txt");
    }
    const char *line = captions;
    int64_t positives[SYNTH_NC] = {0};
    for (int s = 0; s < 2 && !test_failed(); s++) {
        SynthSplit split = s == 0 ? SYNTH_TRAIN : SYNTH_TEST;
        Dataset *ds = NULL;
        st = ds_open("voc2007", dir, s == 0 ? "trainval" : "test", &opt, &ds);
        EXPECT(st == STATUS_OK, "ds_open %s: %s", s == 0 ? "trainval" : "test", error_last());
        if (st != STATUS_OK) break;
        int64_t n = s == 0 ? cfg.n_train : cfg.n_test;
        EXPECT(ds->n == n && ds->c == SYNTH_NC, "split %d: N %lld C %lld", s, (long long)ds->n,
               (long long)ds->c);
        for (int k = 0; k < SYNTH_NC && k < ds->c; k++)
            EXPECT(!strcmp(ds->class_names[k], SYNTH_CLASSES[k]), "class %d: '%s'", k,
                   ds->class_names[k]);
        for (int64_t i = 0; i < n && i < ds->n && !test_failed(); i++) {
            Image want, got;
            SynthScene sc;
            ds_synth_render(cfg.seed, split, i, cfg.size, &want, &sc);
            int8_t row[SYNTH_NC];
            ds_synth_labels(&sc, row);
            for (int k = 0; k < SYNTH_NC; k++) positives[k] += row[k] > 0;
            EXPECT(!memcmp(ds_label_row(ds, i), row, sizeof row), "split %d image %lld: labels",
                   s, (long long)i);
            /* The image decodes, has the size, and is the render up to JPEG loss. */
            st = image_load(ds_image_path(ds, i), &got, NULL);
            EXPECT(st == STATUS_OK, "%s", error_last());
            if (st == STATUS_OK) {
                EXPECT(got.w == cfg.size && got.h == cfg.size, "%s: %dx%d", ds_image_path(ds, i),
                       got.w, got.h);
                double err = 0;
                for (int p = 0; p < cfg.size * cfg.size * 3; p++)
                    err += abs((int)got.px[p] - (int)want.px[p]);
                err /= cfg.size * cfg.size * 3;
                EXPECT(err < 6.0, "%s: mean |jpeg - render| = %.2f", ds_image_path(ds, i), err);
                image_free(&got);
            }
            image_free(&want);
            /* Caption line: "<id>\t<caption>\n", in id order. */
            char id[16], want_line[SYNTH_CAPTION_MAX + 32];
            ds_synth_image_id(&cfg, split, i, id);
            snprintf(want_line, sizeof want_line, "%s\t%s\n", id, sc.caption);
            EXPECT(line && !strncmp(line, want_line, strlen(want_line)),
                   "captions.txt: expected '%s'", want_line);
            line = line ? strchr(line, '\n') : NULL;
            if (line) line++;
        }
        ds_free(ds);
    }
    EXPECT(line && *line == 0, "captions.txt has more than %lld lines",
           (long long)(cfg.n_train + cfg.n_test));
    for (int k = 0; k < SYNTH_NC; k++)
        EXPECT(positives[k] == rep.positives[k], "class %d: %lld positives, report %lld", k,
               (long long)positives[k], (long long)rep.positives[k]);
    free(captions);

    /* An existing non-empty directory is refused unless forced. */
    st = ds_synth_write(dir, &cfg, false, NULL);
    EXPECT(st == STATUS_ERR_IO && strstr(error_last(), "--force"), "non-empty dir: %s",
           error_last());
    EXPECT(ds_synth_write(dir, &cfg, true, NULL) == STATUS_OK, "force: %s", error_last());
    cfg.size = 16;
    EXPECT(ds_synth_write(dir, &cfg, true, NULL) == STATUS_ERR_USAGE, "size 16 accepted");
    test_remove_tree(dir);
}

/* Same seed, same bytes in every file, whatever the thread count; another seed differs. */
TEST(synth_deterministic) {
    char a[64], b[64], c[64], ha[65], hb[65], hc[65];
    int na, nb, nc;
    make_tmp(a);
    make_tmp(b);
    make_tmp(c);
    SynthConfig cfg = tiny(3);
    EXPECT(ds_synth_write(a, &cfg, true, NULL) == STATUS_OK, "%s", error_last());
#ifdef _OPENMP
    int threads = omp_get_max_threads();
    omp_set_num_threads(threads > 1 ? 1 : 2);
#endif
    EXPECT(ds_synth_write(b, &cfg, true, NULL) == STATUS_OK, "%s", error_last());
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    cfg.seed = 4;
    EXPECT(ds_synth_write(c, &cfg, true, NULL) == STATUS_OK, "%s", error_last());
    tree_hash(a, ha, &na);
    tree_hash(b, hb, &nb);
    tree_hash(c, hc, &nc);
    /* 18 images and 18 annotations, 2 split lists, classes, captions, manifest. */
    EXPECT(na == 2 * 18 + 5 && nb == na && nc == na, "files: %d %d %d", na, nb, nc);
    EXPECT(!strcmp(ha, hb), "seed 3 twice: %s vs %s", ha, hb);
    /* Not only the manifest (which records the seed): the images and captions differ too. */
    char ja[128], jc[128], jha[65], jhc[65], *ca, *cc;
    snprintf(ja, sizeof ja, "%s/VOCdevkit/VOC2007/JPEGImages", a);
    snprintf(jc, sizeof jc, "%s/VOCdevkit/VOC2007/JPEGImages", c);
    tree_hash(ja, jha, &na);
    tree_hash(jc, jhc, &nc);
    EXPECT(strcmp(jha, jhc), "seeds 3 and 4 give the same images %s", jha);
    snprintf(ja, sizeof ja, "%s/captions.txt", a);
    snprintf(jc, sizeof jc, "%s/captions.txt", c);
    ca = read_text(ja);
    cc = read_text(jc);
    EXPECT(ca && cc && strcmp(ca, cc), "seeds 3 and 4 give the same captions");
    free(ca);
    free(cc);
    test_remove_tree(a);
    test_remove_tree(b);
    test_remove_tree(c);
}

/* `trmml synth` writes the same tree as the library; usage errors exit 2, a refused dir 1. */
TEST(synth_cli) {
    char exe[4200], cmd[8400], out[8192], dir[64], lib[64], hcli[65], hlib[65];
    if (!test_trmml_path(exe, sizeof exe)) return;
    make_tmp(dir);
    make_tmp(lib);
    snprintf(cmd, sizeof cmd, "'%s' synth --out '%s/w' --seed 5 --train 12 --test 6 --size 64 2>&1",
             exe, dir);
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, "train=12 test=6 size=64"), "synth: exit %d: %s", rc, out);
    SynthConfig cfg = tiny(5);
    EXPECT(ds_synth_write(lib, &cfg, true, NULL) == STATUS_OK, "%s", error_last());
    char w[80];
    snprintf(w, sizeof w, "%s/w", dir);
    int n1, n2;
    tree_hash(w, hcli, &n1);
    tree_hash(lib, hlib, &n2);
    EXPECT(n1 == n2 && !strcmp(hcli, hlib), "cli %s (%d files) vs library %s (%d files)", hcli,
           n1, hlib, n2);

    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 1 && strstr(out, "not empty"), "existing dir: exit %d: %s", rc, out);
    const char *bad[] = {"--size 5", "--size abc", "--size 2000", "--train 0", "--seed -1",
                         "--bogus 1", "--size"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "'%s' synth --out '%s/bad' %s 2>&1", exe, dir, bad[i]);
        rc = test_run_capture(cmd, out, sizeof out);
        char b[80];
        snprintf(b, sizeof b, "%s/bad", dir);
        EXPECT(rc == 2 && !ds_is_dir(b), "'%s': exit %d: %s", bad[i], rc, out);
    }
    snprintf(cmd, sizeof cmd, "'%s' synth --size 64 2>&1", exe);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 2 && strstr(out, "--out"), "no --out: exit %d: %s", rc, out);
    test_remove_tree(dir);
    test_remove_tree(lib);
}
