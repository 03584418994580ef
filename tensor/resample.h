/* resample.h — resizing RGB images exactly as Pillow's Image.resize (SPEC §1.9).
 *
 * BILINEAR and BICUBIC are Pillow's convolution resampling: separable, horizontal pass first, each
 * pass rounding to 8 bits; the filter support widens by the downscale factor (antialiasing when
 * shrinking); bicubic uses a = −0.5; weights are fixed-point with 22 fractional bits as in
 * Pillow. NEAREST is Pillow's nearest-neighbour scaling. The results are bit-identical to Pillow
 * (tested against Pillow 9.4; docs/images.md). Single-threaded: callers parallelise over images. */
#pragma once
#include "tensor/image.h"

typedef enum { RESAMPLE_NEAREST = 0, RESAMPLE_BILINEAR, RESAMPLE_BICUBIC } ResampleFilter;

/* "nearest", "bilinear", "bicubic". */
const char *resample_filter_name(ResampleFilter f);

/* PIL's src.resize((w, h), filter) as a new Image (the caller frees it). Same size: a copy.
 * CHECKs 1 <= w, h <= IMAGE_MAX_SIDE. */
Image image_resize(const Image *src, int w, int h, ResampleFilter filter);

/* torchvision's Resize(n) on a PIL image: the shorter side becomes n, the longer one
 * floor(n·long/short), then image_resize. */
Image image_resize_shorter(const Image *src, int n, ResampleFilter filter);
