/* cmd_synth.c — `trmml synth`: write the synthetic multi-label world (datasets/synth.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/synth.h"
#include "tools/command.h"
#include "tools/flags.h"

typedef struct {
    const char *out;
    int64_t seed, train, test, size, quality;
    bool force;
} SynthFlags;

static const KeySpec SYNTH_FLAGS[] = {
    FLAG_ARG(SynthFlags, "out", out, "DIR", "where to write the tree"),
    FLAG_INT(SynthFlags, "seed", seed, 0, 9223372036854775807.0, "S",
             "generator seed (default 0); the same seed gives the same bytes"),
    FLAG_INT(SynthFlags, "train", train, 1, SYNTH_MAX_IMAGES, "N",
             "training images, listed in ImageSets/Main/trainval.txt (default 1000)"),
    FLAG_INT(SynthFlags, "test", test, 1, SYNTH_MAX_IMAGES, "M",
             "test images, listed in ImageSets/Main/test.txt (default 500)"),
    FLAG_INT(SynthFlags, "size", size, SYNTH_MIN_SIZE, SYNTH_MAX_SIZE, "PX",
             "square image side in pixels (default 224)"),
    FLAG_INT(SynthFlags, "quality", quality, 1, 100, "Q", "JPEG quality (default 95)"),
    FLAG_SWITCH(SynthFlags, "force", force,
                "write into a non-empty DIR (files of the same names are replaced)"),
};

COMMAND(synth, "write the synthetic multi-label world (VOC layout + captions)",
        "trmml synth --out DIR [options]\n"
        "Writes DIR/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}, DIR/classes.txt\n"
        "(16 categories), DIR/captions.txt (\"<id>\\t<caption>\" per image) and DIR/synth.txt.\n"
        "Load it with --dataset voc2007 --root DIR --class-list DIR/classes.txt.") {
    SynthConfig cfg = ds_synth_default_config();
    SynthFlags o = {.seed = (int64_t)cfg.seed, .train = cfg.n_train, .test = cfg.n_test,
                    .size = cfg.size, .quality = cfg.quality};
    const KeyGroup groups[] = {FLAGS_OF(SYNTH_FLAGS, &o)};
    int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
    if (rc != FLAGS_GO) return rc;
    if (!o.out) return tool_usage_error("--out DIR is required");
    cfg.seed = (uint64_t)o.seed;
    cfg.n_train = o.train;
    cfg.n_test = o.test;
    cfg.size = (int)o.size;
    cfg.quality = (int)o.quality;
    const char *out = o.out;
    SynthReport rep;
    Status st = ds_synth_write(out, &cfg, o.force, &rep);
    if (st != STATUS_OK) return tool_fail(st);
    printf("synth: %s: seed=%llu train=%lld test=%lld size=%d classes=%d objects=%lld "
           "difficult=%lld truncated=%lld seconds=%.2f images_per_s=%.0f\n",
           out, (unsigned long long)cfg.seed, (long long)cfg.n_train, (long long)cfg.n_test,
           cfg.size, SYNTH_NC, (long long)rep.objects, (long long)rep.difficult,
           (long long)rep.truncated, rep.seconds,
           rep.seconds > 0 ? (double)rep.images / rep.seconds : 0.0);
    printf("positives per class:");
    for (int k = 0; k < SYNTH_NC; k++) printf(" %lld", (long long)rep.positives[k]);
    printf("\n");
    return 0;
}
