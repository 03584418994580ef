/* preprocess.h — CLIP's image transform (SPEC §1.9): RGB image -> normalised (3,N,N) float32.
 *
 * clip_preprocess reproduces OpenAI CLIP's `preprocess` (torchvision Compose of Resize(N,
 * BICUBIC), CenterCrop(N), convert('RGB'), ToTensor, Normalize(mean, std)) on a PIL image: the
 * shorter side is resized to N with Pillow's bicubic (tensor/resample.h), the centre N x N is
 * cropped, and each byte v becomes (v/255 − mean[c]) / std[c], evaluated in float32 exactly as
 * PyTorch does (so results equal PyTorch's bit for bit). Layout CHW, channels R, G, B. */
#pragma once
#include "tensor/image.h"
#include "tensor/tensor.h"

/* CLIP's normalisation constants (RGB, applied after scaling to [0,1]). */
extern const float CLIP_MEAN[3];
extern const float CLIP_STD[3];

/* Normalising without resampling (pipelines that resize themselves, straight to S x S):
 * image_normalize(im, CLIP_MEAN, CLIP_STD, out) (tensor/image.h). */

/* CLIP's transform into a caller buffer of 3*n*n floats (CHW). An image whose shorter side is
 * already n is not resampled (Pillow's resize to the same size is a copy). */
void clip_preprocess_into(const Image *im, int n, float *out);

/* The same into a new (3,n,n) tensor from the current arena. */
Tensor *clip_preprocess(const Image *im, int n);

/* A batch: (count,3,n,n) tensor from the current arena, image b in row b. Images are processed
 * in parallel (OpenMP). CHECKs count >= 1. */
Tensor *clip_preprocess_batch(const Image *ims, int count, int n);
