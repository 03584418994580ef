/* fuzz_image.c — libFuzzer target: arbitrary bytes through the JPEG and PNG decoders.
 *
 * Each input is decoded by image_decode (format chosen by signature) in strict and in lax mode,
 * and additionally given to the decoder of the other format, which must refuse it cleanly. A
 * successful decode must be self-consistent (size within the limit, every pixel readable) and is
 * then resized, so odd decoded sizes also reach the resampler. Seeds: fuzz/corpus/fuzz_image/
 * (small JPEG and PNG variants from test/fixtures/image/). */
#include <stddef.h>
#include <stdint.h>

#include "tensor/image.h"
#include "tensor/resample.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ImageDecodeOpts opts = {.max_pixels = 1 << 20}; /* keep each run fast and small */
    for (int lax = 0; lax < 2; lax++) {
        opts.accept_warnings = lax;
        Image im;
        if (image_decode(data, size, "fuzz", &im, &opts) == STATUS_OK) {
            if (im.w < 1 || im.h < 1 || (int64_t)im.w * im.h > opts.max_pixels || !im.px)
                __builtin_trap();
            unsigned sum = 0;
            for (size_t i = 0; i < (size_t)im.w * im.h * 3; i++) sum += im.px[i];
            Image r = image_resize(&im, 1 + (int)(sum % 17), 1 + (int)(sum % 13), RESAMPLE_BICUBIC);
            image_free(&r);
            image_free(&im);
        } else if (im.px) {
            __builtin_trap(); /* a failed decode must not hand back pixels */
        }
    }
    Image im;
    if (image_sniff(data, size) == IMAGE_FORMAT_JPEG &&
        image_decode_png(data, size, "fuzz", &im, &opts) == STATUS_OK)
        __builtin_trap();
    if (image_sniff(data, size) == IMAGE_FORMAT_PNG &&
        image_decode_jpeg(data, size, "fuzz", &im, &opts) == STATUS_OK)
        __builtin_trap();
    return 0;
}
