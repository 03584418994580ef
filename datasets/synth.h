/* synth.h — the synthetic multi-label world: scenes of coloured, textured shapes over clutter,
 * written in the PASCAL VOC layout with a class list and one caption per image.
 *
 *     SynthConfig cfg = ds_synth_default_config();      // seed 0, 1000 + 500 images, 224 px
 *     cfg.seed = 7;
 *     if (ds_synth_write("/data/synth", &cfg, false, NULL) != STATUS_OK) fail(error_last());
 *     // then: ds_open("voc2007", "/data/synth", "trainval",
 *     //               &(DsOptions){.class_list = "/data/synth/classes.txt"}, &ds)
 *
 * 16 categories, each a (shape, colour, texture) combination; 1–4 distinct categories per image,
 * painted back to front (so later objects occlude earlier ones) over a gradient, blotch noise and
 * distractor strokes. An object with more than 80 % of its area hidden by objects in front of it
 * is marked difficult (a negative label, not named in the caption). Every image depends only on
 * (seed, split, index within the split): the output is byte-identical for a seed whatever the
 * thread count. docs/synthetic-world.md describes the world, the caption grammar and the files. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "tensor/image.h"
#include "tensor/error.h"

#define SYNTH_NC 16          /* categories */
#define SYNTH_MAX_OBJECTS 4  /* objects per image (at least 1) */
#define SYNTH_MIN_SIZE 32    /* accepted image sides, pixels */
#define SYNTH_MAX_SIZE 1024
#define SYNTH_MAX_IMAGES 10000000 /* per split */
#define SYNTH_CAPTION_MAX 512

typedef enum { SYNTH_TRAIN = 0, SYNTH_TEST = 1 } SynthSplit;

/* The category names in index order: also the lines of classes.txt and the <name> of objects. */
extern const char *const SYNTH_CLASSES[SYNTH_NC];
/* The words of category k: its colour, its texture adjective ("" for solid) and its shape; the
 * name is "<colour> [<texture>] <shape>". */
void ds_synth_category(int k, const char **colour, const char **texture, const char **shape);

typedef struct {
    uint64_t seed;
    int64_t n_train, n_test; /* images per split, each in [1, SYNTH_MAX_IMAGES] */
    int size;                /* square side in pixels, [SYNTH_MIN_SIZE, SYNTH_MAX_SIZE] */
    int quality;             /* JPEG quality 1..100 */
} SynthConfig;

/* seed 0, 1000 train, 500 test, 224 px, JPEG quality 95. */
SynthConfig ds_synth_default_config(void);

/* One placed object of a scene. */
typedef struct {
    int cls;                     /* category index */
    float cx, cy, radius, angle; /* centre and size in pixels, rotation in radians */
    int xmin, ymin, xmax, ymax;  /* VOC box: 1-based, inclusive, clipped to the image; the whole
                                  * shape, occluded parts included */
    float visible;               /* fraction of its in-image area not hidden by later objects */
    bool difficult;              /* visible < 0.2 */
    bool truncated;              /* the shape extends past the image border */
} SynthObject;

typedef struct {
    int n;                                 /* objects, 1..SYNTH_MAX_OBJECTS, back to front */
    SynthObject obj[SYNTH_MAX_OBJECTS];
    char caption[SYNTH_CAPTION_MAX];       /* names every non-difficult object */
} SynthScene;

/* Render image `index` of `split` for `seed` at size x size pixels into *im (a new Image the
 * caller frees with image_free) and describe it in *scene. Pure function of its arguments;
 * thread-safe. CHECKs the size range. */
void ds_synth_render(uint64_t seed, SynthSplit split, int64_t index, int size, Image *im,
                     SynthScene *scene);

/* The scene's label row: row[k] = +1 when a non-difficult object of category k is present, else
 * −1 (exactly what the VOC reader derives from the annotation, SPEC §6.2). */
void ds_synth_labels(const SynthScene *scene, int8_t row[SYNTH_NC]);

/* The VOC annotation XML of an image (id such as "000001"), NUL-terminated in buf; returns its
 * length. */
#define SYNTH_XML_MAX 4096
int ds_synth_annotation(const SynthScene *scene, const char *id, int size,
                        char buf[SYNTH_XML_MAX]);

/* The image id of `index` in `split`: train images are 000001..N, test images follow (N+1..). */
void ds_synth_image_id(const SynthConfig *cfg, SynthSplit split, int64_t index, char id[16]);

/* What ds_synth_write produced. */
typedef struct {
    int64_t images, objects, difficult, truncated;
    int64_t positives[SYNTH_NC]; /* images (train + test) where category k is +1 */
    double seconds;
} SynthReport;

/* Write the world under dir:
 *   dir/VOCdevkit/VOC2007/{JPEGImages/<id>.jpg, Annotations/<id>.xml,
 *                          ImageSets/Main/{trainval,test}.txt}
 *   dir/classes.txt   the 16 category names, one per line
 *   dir/captions.txt  "<id>\t<caption>" per image, in id order
 *   dir/synth.txt     the generator and its configuration, written last
 * Every file goes to "<file>.tmp" and is renamed when complete. dir is created when missing;
 * an existing non-empty dir is refused (STATUS_ERR_IO) unless force, which writes over files of
 * the same names and leaves other files alone. Images are rendered and encoded in parallel
 * (OpenMP). report may be NULL. Config values out of range: STATUS_ERR_USAGE. */
Status ds_synth_write(const char *dir, const SynthConfig *cfg, bool force, SynthReport *report);
