/* util_image.h — reference images for the Pillow comparisons (test_image.c, test_augment.c). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/image.h"

/* The whole file into a new buffer (*data, freed by the caller); fails the running test if
 * unreadable. */
bool test_read_file(const char *path, uint8_t **data, size_t *n);
/* A binary PPM (P6, maxval 255) as the fixture scripts write them; the size must match exactly.
 * Fails the running test (naming the file) otherwise. */
bool test_read_ppm(const char *path, Image *out);
/* Byte-exact comparison with Pillow's reference; on failure reports the number of differing
 * bytes and the largest difference with its pixel and channel. */
bool test_expect_same_image(const char *what, const Image *got, const Image *ref);
