/* synth.c — the synthetic multi-label world (docs/synthetic-world.md).
 *
 * An image is painted back to front in float RGB: a background (two-colour linear gradient plus
 * low-frequency colour blotches), 3–8 distractor strokes (polylines of round-capped segments in
 * arbitrary colours, including the category colours), then 1–4 objects of distinct categories,
 * then per-pixel sensor noise; it is rounded to 8 bits and encoded as JPEG.
 *
 * Every shape is drawn from its signed distance d (pixels, negative inside): pixel coverage is
 * clamp(0.5 − d, 0, 1), the area of a one-pixel box filter cut by a straight edge. That is
 * analytic anti-aliasing, equivalent to dense supersampling along edges at the cost of one
 * distance per pixel. Textures (stripes, dots, checks) are anti-aliased the same way with the
 * distance to the nearest pattern boundary.
 *
 * Occlusion: coverage a_i(p) of each object is kept; the visible area of object i is
 * Σ_p a_i(p) Π_{j>i} (1 − a_j(p)), divided by Σ_p a_i(p) it is the visible fraction. An object
 * less than 20 % visible is difficult. The last object painted is never occluded, so every image
 * has at least one positive label.
 *
 * Determinism: each image has its own generator seeded from (seed, split, index), and the order
 * of floating-point operations does not depend on threads, so the bytes of every file are a
 * function of the configuration alone. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "datasets/dataset.h"
#include "datasets/synth.h"
#include "tensor/clock.h"
#include "tensor/tensor.h"

#define SYNTH_PI 3.14159265358979323846f
#define SYNTH_DIFFICULT_VISIBLE 0.2f
#define SYNTH_BATCH 64 /* images rendered in parallel before their files are written */

/* ---- The categories ------------------------------------------------------------------------ */

typedef enum { SH_CIRCLE, SH_RING, SH_SQUARE, SH_TRIANGLE, SH_STAR, SH_CROSS, SH_DIAMOND,
               SH_HEXAGON } SynthShape;
typedef enum { TX_SOLID, TX_STRIPED, TX_DOTTED, TX_CHECKERED } SynthTexture;
typedef enum { CO_RED, CO_BLUE, CO_GREEN, CO_YELLOW, CO_PURPLE, CO_ORANGE, CO_COUNT } SynthColour;

static const char *const SHAPE_WORD[] = {"circle", "ring",  "square",  "triangle",
                                         "star",   "cross", "diamond", "hexagon"};
static const char *const COLOUR_WORD[] = {"red", "blue", "green", "yellow", "purple", "orange"};
static const float COLOUR_RGB[CO_COUNT][3] = {
    {215, 35, 35}, {35, 75, 215}, {35, 165, 55}, {235, 205, 35}, {145, 55, 185}, {240, 125, 25}};
/* Texture as an adjective ("striped circle") and after "with" ("a circle with stripes"). */
static const char *const TEXTURE_ADJ[] = {"", "striped", "dotted", "checkered"};
static const char *const TEXTURE_NOUN[] = {"", "stripes", "dots", "a checkered pattern"};

/* Each shape is in two categories, each colour in two or three, each texture in three or more,
 * so no single attribute names a category: telling "red circle" from "red ring" takes the
 * shape, "blue square" from "red checkered square" colour and texture together. */
static const struct {
    SynthShape shape;
    SynthColour colour;
    SynthTexture texture;
} CATEGORY[SYNTH_NC] = {
    {SH_CIRCLE, CO_RED, TX_SOLID},         {SH_CIRCLE, CO_BLUE, TX_DOTTED},
    {SH_SQUARE, CO_BLUE, TX_SOLID},        {SH_SQUARE, CO_RED, TX_CHECKERED},
    {SH_TRIANGLE, CO_GREEN, TX_SOLID},     {SH_TRIANGLE, CO_YELLOW, TX_STRIPED},
    {SH_STAR, CO_YELLOW, TX_SOLID},        {SH_STAR, CO_PURPLE, TX_DOTTED},
    {SH_RING, CO_RED, TX_SOLID},           {SH_RING, CO_GREEN, TX_STRIPED},
    {SH_CROSS, CO_PURPLE, TX_SOLID},       {SH_CROSS, CO_BLUE, TX_CHECKERED},
    {SH_DIAMOND, CO_ORANGE, TX_SOLID},     {SH_DIAMOND, CO_GREEN, TX_DOTTED},
    {SH_HEXAGON, CO_ORANGE, TX_STRIPED},   {SH_HEXAGON, CO_PURPLE, TX_CHECKERED},
};

/* "<colour> [<texture>] <shape>", the words of CATEGORY (test synth_class_names checks it). */
const char *const SYNTH_CLASSES[SYNTH_NC] = {
    "red circle",        "blue dotted circle",     "blue square",     "red checkered square",
    "green triangle",    "yellow striped triangle", "yellow star",    "purple dotted star",
    "red ring",          "green striped ring",     "purple cross",    "blue checkered cross",
    "orange diamond",    "green dotted diamond",   "orange striped hexagon",
    "purple checkered hexagon",
};

void ds_synth_category(int k, const char **colour, const char **texture, const char **shape) {
    CHECK(k >= 0 && k < SYNTH_NC, "synth: category %d outside [0, %d)", k, SYNTH_NC);
    *colour = COLOUR_WORD[CATEGORY[k].colour];
    *texture = TEXTURE_ADJ[CATEGORY[k].texture];
    *shape = SHAPE_WORD[CATEGORY[k].shape];
}

SynthConfig ds_synth_default_config(void) {
    return (SynthConfig){.seed = 0, .n_train = 1000, .n_test = 500, .size = 224, .quality = 95};
}

/* ---- Random numbers ------------------------------------------------------------------------ */

/* splitmix64's finaliser: a bijection that spreads every input bit over the output. */
static uint64_t synth_mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static float uni(Rng *r, float lo, float hi) { return lo + (hi - lo) * (float)rng_uniform(r); }
/* Uniform integer in [0, n). */
static int pick(Rng *r, int n) { return (int)(rng_uniform(r) * n); }

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

/* ---- Signed distances, in the unit frame of a shape (its size is 1) ------------------------ */

typedef struct {
    SynthShape shape;
    float v[12][2]; /* polygon vertices, counter-clockwise */
    int nv;
} ShapeGeom;

static void regular_polygon(ShapeGeom *g, int n, float radius, float phase) {
    g->nv = n;
    for (int i = 0; i < n; i++) {
        float a = phase + 2.0f * SYNTH_PI * (float)i / (float)n;
        g->v[i][0] = radius * cosf(a);
        g->v[i][1] = radius * sinf(a);
    }
}

/* Unit-frame geometry; every shape lies inside the radius-1.05 disc (the bounding box uses it).
 * The sizes make the areas comparable (circle 2.3, square 1.7, star 1.3, triangle 1.4). */
static void shape_geom(SynthShape s, ShapeGeom *g) {
    g->shape = s;
    g->nv = 0;
    switch (s) {
    case SH_TRIANGLE: regular_polygon(g, 3, 1.05f, SYNTH_PI / 2); break;
    case SH_HEXAGON: regular_polygon(g, 6, 0.88f, 0.0f); break;
    case SH_DIAMOND: {
        static const float d[4][2] = {{0.6f, 0}, {0, 0.95f}, {-0.6f, 0}, {0, -0.95f}};
        memcpy(g->v, d, sizeof d);
        g->nv = 4;
        break;
    }
    case SH_STAR:
        g->nv = 10;
        for (int i = 0; i < 10; i++) {
            float a = SYNTH_PI / 2 + SYNTH_PI * (float)i / 5.0f, r = (i % 2) ? 0.42f : 1.0f;
            g->v[i][0] = r * cosf(a);
            g->v[i][1] = r * sinf(a);
        }
        break;
    default: break; /* circle, ring, square and cross have closed forms */
    }
}

/* Box of half-extents (bx, by) centred at the origin. */
static float sd_box(float x, float y, float bx, float by) {
    float dx = fabsf(x) - bx, dy = fabsf(y) - by;
    float ox = dx > 0 ? dx : 0, oy = dy > 0 ? dy : 0;
    float in = dx > dy ? dx : dy;
    return sqrtf(ox * ox + oy * oy) + (in < 0 ? in : 0);
}

/* Exact distance to a simple polygon; the sign flips at each edge crossed by a ray to +x
 * (even-odd rule), so it is negative inside. */
static float sd_polygon(const ShapeGeom *g, float x, float y) {
    float d = (x - g->v[0][0]) * (x - g->v[0][0]) + (y - g->v[0][1]) * (y - g->v[0][1]);
    float s = 1.0f;
    for (int i = 0, j = g->nv - 1; i < g->nv; j = i, i++) {
        float ex = g->v[j][0] - g->v[i][0], ey = g->v[j][1] - g->v[i][1];
        float wx = x - g->v[i][0], wy = y - g->v[i][1];
        float h = clampf((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0f, 1.0f);
        float bx = wx - ex * h, by = wy - ey * h;
        float dd = bx * bx + by * by;
        if (dd < d) d = dd;
        bool c1 = y >= g->v[i][1], c2 = y < g->v[j][1], c3 = ex * wy > ey * wx;
        if ((c1 && c2 && c3) || (!c1 && !c2 && !c3)) s = -s;
    }
    return s * sqrtf(d);
}

static float sd_shape(const ShapeGeom *g, float x, float y) {
    switch (g->shape) {
    case SH_CIRCLE: return sqrtf(x * x + y * y) - 0.85f;
    case SH_RING: return fabsf(sqrtf(x * x + y * y) - 0.62f) - 0.24f;
    case SH_SQUARE: return sd_box(x, y, 0.66f, 0.66f);
    case SH_CROSS: {
        /* Union of two bars: min of the two distances (exact outside, close enough inside for
         * the one-pixel coverage ramp). */
        float a = sd_box(x, y, 0.9f, 0.3f), b = sd_box(x, y, 0.3f, 0.9f);
        return a < b ? a : b;
    }
    default: return sd_polygon(g, x, y);
    }
}

/* Signed distance (pixels, negative in the second tone) to the texture's pattern at pattern
 * coordinates (u, v) in pixels with period p. */
static float sd_texture(SynthTexture t, float u, float v, float p) {
    float fu = u / p - floorf(u / p), fv = v / p - floorf(v / p);
    switch (t) {
    case TX_STRIPED:
        return fu >= 0.5f ? -fminf(fu - 0.5f, 1.0f - fu) * p : fminf(fu, 0.5f - fu) * p;
    case TX_DOTTED:
        return sqrtf((fu - 0.5f) * (fu - 0.5f) + (fv - 0.5f) * (fv - 0.5f)) * p - 0.28f * p;
    case TX_CHECKERED: {
        long parity = ((long)floorf(u / p) + (long)floorf(v / p)) & 1;
        float db = fminf(fminf(fu, 1.0f - fu), fminf(fv, 1.0f - fv)) * p;
        return parity ? -db : db;
    }
    default: return 1e9f;
    }
}

/* ---- Painting ------------------------------------------------------------------------------ */

typedef struct {
    int s;
    float *rgb;     /* s*s*3 */
    float *cover;   /* SYNTH_MAX_OBJECTS planes of s*s coverage */
} Canvas;

static void blend(float *px, const float col[3], float a) {
    for (int c = 0; c < 3; c++) px[c] += (col[c] - px[c]) * a;
}

static void jitter_colour(Rng *r, const float base[3], float out[3]) {
    float gain = uni(r, 0.85f, 1.1f);
    for (int c = 0; c < 3; c++) out[c] = clampf((base[c] + uni(r, -18, 18)) * gain, 0, 255);
}

static void paint_background(Canvas *cv, Rng *r) {
    int s = cv->s;
    float c0[3], c1[3];
    float g0 = uni(r, 70, 190), g1 = uni(r, 70, 190);
    for (int c = 0; c < 3; c++) {
        c0[c] = g0 + uni(r, -35, 35);
        c1[c] = g1 + uni(r, -35, 35);
    }
    float a = uni(r, 0, 2 * SYNTH_PI), dx = cosf(a), dy = sinf(a);
    /* Blotches: a 5x5 grid of per-channel offsets, bilinearly interpolated. */
    float grid[5][5][3];
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            for (int c = 0; c < 3; c++) grid[i][j][c] = uni(r, -28, 28);
    float step = 4.0f / (float)(s - 1);
    for (int y = 0; y < s; y++) {
        float gy = (float)y * step;
        int iy = gy >= 4.0f ? 3 : (int)gy;
        float ty = gy - (float)iy;
        for (int x = 0; x < s; x++) {
            float gx = (float)x * step;
            int ix = gx >= 4.0f ? 3 : (int)gx;
            float tx = gx - (float)ix;
            float t = clampf(((x + 0.5f - s * 0.5f) * dx + (y + 0.5f - s * 0.5f) * dy) / s + 0.5f,
                             0, 1);
            float *px = cv->rgb + ((size_t)y * s + x) * 3;
            for (int c = 0; c < 3; c++) {
                float b = (grid[iy][ix][c] * (1 - tx) + grid[iy][ix + 1][c] * tx) * (1 - ty) +
                          (grid[iy + 1][ix][c] * (1 - tx) + grid[iy + 1][ix + 1][c] * tx) * ty;
                px[c] = c0[c] + (c1[c] - c0[c]) * t + b;
            }
        }
    }
}

/* Round-capped segment from (ax, ay) to (bx, by) of width w, opacity op. */
static void paint_segment(Canvas *cv, float ax, float ay, float bx, float by, float w,
                          const float col[3], float op) {
    int s = cv->s;
    float half = 0.5f * w + 1.0f;
    int x0 = (int)floorf(fminf(ax, bx) - half), x1 = (int)ceilf(fmaxf(ax, bx) + half);
    int y0 = (int)floorf(fminf(ay, by) - half), y1 = (int)ceilf(fmaxf(ay, by) + half);
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > s - 1) x1 = s - 1;
    if (y1 > s - 1) y1 = s - 1;
    float ex = bx - ax, ey = by - ay, ee = ex * ex + ey * ey;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            float wx = x + 0.5f - ax, wy = y + 0.5f - ay;
            float h = ee > 0 ? clampf((wx * ex + wy * ey) / ee, 0, 1) : 0;
            float qx = wx - ex * h, qy = wy - ey * h;
            float cov = clampf(0.5f * w + 0.5f - sqrtf(qx * qx + qy * qy), 0, 1);
            if (cov > 0) blend(cv->rgb + ((size_t)y * s + x) * 3, col, cov * op);
        }
}

static void paint_strokes(Canvas *cv, Rng *r) {
    int s = cv->s, n = 3 + pick(r, 6);
    for (int k = 0; k < n; k++) {
        float col[3];
        if (rng_uniform(r) < 0.5) {
            jitter_colour(r, COLOUR_RGB[pick(r, CO_COUNT)], col);
        } else {
            for (int c = 0; c < 3; c++) col[c] = uni(r, 0, 255);
        }
        float w = uni(r, 0.6f, 1.0f + 0.02f * s), op = uni(r, 0.6f, 1.0f);
        float x = uni(r, 0, s), y = uni(r, 0, s), a = uni(r, 0, 2 * SYNTH_PI);
        int segs = 1 + pick(r, 3);
        for (int i = 0; i < segs; i++) {
            float len = uni(r, 0.12f, 0.4f) * s;
            a += uni(r, -1.2f, 1.2f);
            float nx = x + len * cosf(a), ny = y + len * sinf(a);
            paint_segment(cv, x, y, nx, ny, w, col, op);
            x = nx;
            y = ny;
        }
    }
}

/* Paint object i (its fields cls, cx, cy, radius, angle set) with coverage into plane i; sets
 * its box and truncation. (lx, ly) is the scene's light direction for the shading ramp. */
static void paint_object(Canvas *cv, Rng *r, SynthObject *o, int i, float lx, float ly) {
    int s = cv->s;
    ShapeGeom g;
    shape_geom(CATEGORY[o->cls].shape, &g);
    SynthTexture tex = CATEGORY[o->cls].texture;
    float base[3], tone[3];
    jitter_colour(r, COLOUR_RGB[CATEGORY[o->cls].colour], base);
    /* Dots are lighter than the body, stripes and checks darker. */
    for (int c = 0; c < 3; c++)
        tone[c] = tex == TX_DOTTED ? base[c] + (255 - base[c]) * 0.7f : base[c] * 0.35f;
    float period = fmaxf(2.5f, o->radius * uni(r, 0.3f, 0.45f));
    float ta = uni(r, 0, SYNTH_PI), tc = cosf(ta), ts = sinf(ta);
    float ca = cosf(o->angle), sa = sinf(o->angle), inv = 1.0f / o->radius;
    float ext = 1.05f * o->radius + 1.0f;
    int x0 = (int)floorf(o->cx - ext), x1 = (int)ceilf(o->cx + ext);
    int y0 = (int)floorf(o->cy - ext), y1 = (int)ceilf(o->cy + ext);
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > s - 1) x1 = s - 1;
    if (y1 > s - 1) y1 = s - 1;
    float *plane = cv->cover + (size_t)i * s * s;
    int bx0 = s, by0 = s, bx1 = -1, by1 = -1;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            float px = x + 0.5f - o->cx, py = y + 0.5f - o->cy;
            /* Rotate by −angle into the shape's frame, then scale to unit size. */
            float qx = (px * ca + py * sa) * inv, qy = (-px * sa + py * ca) * inv;
            float cov = clampf(0.5f - sd_shape(&g, qx, qy) * o->radius, 0, 1);
            if (cov <= 0) continue;
            float col[3], shade = 1.0f + 0.15f * (px * lx + py * ly) * inv;
            float m = tex == TX_SOLID
                          ? 0.0f
                          : clampf(0.5f - sd_texture(tex, px * tc + py * ts, -px * ts + py * tc,
                                                     period), 0, 1);
            for (int c = 0; c < 3; c++)
                col[c] = clampf((base[c] + (tone[c] - base[c]) * m) * shade, 0, 255);
            blend(cv->rgb + ((size_t)y * s + x) * 3, col, cov);
            plane[(size_t)y * s + x] = cov;
            if (cov >= 0.5f) {
                if (x < bx0) bx0 = x;
                if (x > bx1) bx1 = x;
                if (y < by0) by0 = y;
                if (y > by1) by1 = y;
            }
        }
    if (bx1 < 0) { /* smaller than a pixel centre: box of the centre pixel */
        bx0 = bx1 = (int)clampf(o->cx, 0, (float)(s - 1));
        by0 = by1 = (int)clampf(o->cy, 0, (float)(s - 1));
    }
    o->xmin = bx0 + 1;
    o->ymin = by0 + 1;
    o->xmax = bx1 + 1;
    o->ymax = by1 + 1;
    o->truncated = bx0 == 0 || by0 == 0 || bx1 == s - 1 || by1 == s - 1;
}

/* Visible fraction of each object: coverage not hidden by the objects painted after it. */
static void measure_visibility(const Canvas *cv, SynthScene *sc) {
    size_t plane = (size_t)cv->s * cv->s;
    for (int i = 0; i < sc->n; i++) {
        const float *ai = cv->cover + i * plane;
        double total = 0, seen = 0;
        for (size_t p = 0; p < plane; p++) {
            if (ai[p] <= 0) continue;
            double v = ai[p];
            total += v;
            for (int j = i + 1; j < sc->n; j++) v *= 1.0 - cv->cover[j * plane + p];
            seen += v;
        }
        sc->obj[i].visible = total > 0 ? (float)(seen / total) : 0.0f;
        sc->obj[i].difficult = sc->obj[i].visible < SYNTH_DIFFICULT_VISIBLE;
    }
}

/* ---- Captions ------------------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t cap, len;
} Text;

TRMML_PRINTF(2, 3) static void text_add(Text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    CHECK(n >= 0 && (size_t)n < t->cap - t->len, "synth: caption longer than %zu bytes", t->cap);
    t->len += (size_t)n;
}

/* "a red striped circle", "a striped red circle", "a red circle with stripes" (solid: "a red
 * circle", "a solid red circle", "a plain red circle"). */
static void add_phrase(Text *t, Rng *r, int cls) {
    const char *col = COLOUR_WORD[CATEGORY[cls].colour], *shape = SHAPE_WORD[CATEGORY[cls].shape];
    SynthTexture tex = CATEGORY[cls].texture;
    double u = rng_uniform(r);
    int form = u < 0.6 ? 0 : u < 0.8 ? 1 : 2;
    char words[96];
    if (form == 0 && tex != TX_SOLID)
        snprintf(words, sizeof words, "%s %s %s", col, TEXTURE_ADJ[tex], shape);
    else if (form == 0)
        snprintf(words, sizeof words, "%s %s", col, shape);
    else if (form == 1 && tex != TX_SOLID)
        snprintf(words, sizeof words, "%s %s %s", TEXTURE_ADJ[tex], col, shape);
    else if (form == 1)
        snprintf(words, sizeof words, "solid %s %s", col, shape);
    else if (tex != TX_SOLID)
        snprintf(words, sizeof words, "%s %s with %s", col, shape, TEXTURE_NOUN[tex]);
    else
        snprintf(words, sizeof words, "plain %s %s", col, shape);
    bool vowel = strchr("aeiou", words[0]) != NULL;
    text_add(t, "%s %s", vowel ? "an" : "a", words);
}

/* The relation of object a to object b that a caption may state truthfully: occlusion when one
 * hides part of the other, else the dominant axis of the displacement. */
static const char *relation(const SynthScene *sc, int a, int b, Rng *r) {
    const SynthObject *oa = &sc->obj[a], *ob = &sc->obj[b];
    bool overlap = oa->xmin <= ob->xmax && ob->xmin <= oa->xmax && oa->ymin <= ob->ymax &&
                   ob->ymin <= oa->ymax;
    int behind = a < b ? a : b;
    if (overlap && sc->obj[behind].visible < 0.95f && rng_uniform(r) < 0.5)
        return a > b ? "in front of" : "behind";
    if (rng_uniform(r) < 0.3) return "next to";
    float dx = ob->cx - oa->cx, dy = ob->cy - oa->cy;
    if (fabsf(dx) >= fabsf(dy)) return dx > 0 ? "to the left of" : "to the right of";
    return dy > 0 ? "above" : "below";
}

static void make_caption(SynthScene *sc, Rng *r) {
    int order[SYNTH_MAX_OBJECTS], m = 0;
    for (int i = 0; i < sc->n; i++)
        if (!sc->obj[i].difficult) order[m++] = i;
    for (int i = m - 1; i > 0; i--) { /* random word order */
        int j = pick(r, i + 1), tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    Text t = {sc->caption, sizeof sc->caption, 0};
    sc->caption[0] = 0;
    if (m == 2 && rng_uniform(r) < 0.45) {
        static const char *const lead[] = {"", "a photo of ", "an image of "};
        text_add(&t, "%s", lead[pick(r, 3)]);
        add_phrase(&t, r, sc->obj[order[0]].cls);
        text_add(&t, " %s ", relation(sc, order[0], order[1], r));
        add_phrase(&t, r, sc->obj[order[1]].cls);
        return;
    }
    static const char *const before[] = {"a photo of ", "", "a picture of ", "an image showing ",
                                         "there is ", "", "a rendering of ", "a photo with "};
    static const char *const after[] = {"", "", " on a cluttered background", "", "",
                                        " over a noisy background", "", ""};
    int tpl = pick(r, 8);
    text_add(&t, "%s", tpl == 4 && m > 1 ? "there are " : before[tpl]);
    for (int k = 0; k < m; k++) {
        if (k > 0) text_add(&t, "%s", k == m - 1 ? " and " : ", ");
        add_phrase(&t, r, sc->obj[order[k]].cls);
    }
    text_add(&t, "%s", after[tpl]);
}

/* ---- A scene ------------------------------------------------------------------------------- */

void ds_synth_render(uint64_t seed, SynthSplit split, int64_t index, int size, Image *im,
                     SynthScene *scene) {
    CHECK(size >= SYNTH_MIN_SIZE && size <= SYNTH_MAX_SIZE, "synth: size %d outside [%d, %d]",
          size, SYNTH_MIN_SIZE, SYNTH_MAX_SIZE);
    CHECK(index >= 0, "synth: negative index %lld", (long long)index);
    Rng r;
    rng_seed(&r, synth_mix(synth_mix(synth_mix(seed) ^ (uint64_t)(split + 1)) ^ (uint64_t)index));
    size_t plane = (size_t)size * size;
    Canvas cv = {size, xmalloc(plane * 3 * sizeof(float)),
                 xcalloc(plane * SYNTH_MAX_OBJECTS, sizeof(float))};
    paint_background(&cv, &r);
    paint_strokes(&cv, &r);

    memset(scene, 0, sizeof *scene);
    double u = rng_uniform(&r); /* 1, 2, 3, 4 objects with probability .2, .3, .3, .2 */
    scene->n = u < 0.2 ? 1 : u < 0.5 ? 2 : u < 0.8 ? 3 : 4;
    int classes[SYNTH_NC];
    for (int k = 0; k < SYNTH_NC; k++) classes[k] = k;
    for (int i = 0; i < scene->n; i++) { /* distinct categories: partial Fisher–Yates */
        int j = i + pick(&r, SYNTH_NC - i), tmp = classes[i];
        classes[i] = classes[j];
        classes[j] = tmp;
    }
    float la = uni(&r, 0, 2 * SYNTH_PI), lx = cosf(la), ly = sinf(la);
    float shrink = scene->n >= 3 ? 0.85f : 1.0f;
    for (int i = 0; i < scene->n; i++) {
        SynthObject *o = &scene->obj[i];
        o->cls = classes[i];
        o->radius = uni(&r, 0.09f, 0.22f) * shrink * (float)size;
        /* Centres keep at least 60 % of the radius inside: some truncation, never much. */
        o->cx = uni(&r, 0.6f * o->radius, size - 0.6f * o->radius);
        o->cy = uni(&r, 0.6f * o->radius, size - 0.6f * o->radius);
        o->angle = uni(&r, 0, 2 * SYNTH_PI);
        paint_object(&cv, &r, o, i, lx, ly);
    }
    measure_visibility(&cv, scene);

    /* Sensor noise of amplitude a, then rounding to 8 bits. */
    *im = image_new(size, size);
    float amp = uni(&r, 3, 9);
    uint64_t bits = 0;
    for (size_t p = 0; p < plane * 3; p++) {
        if (p % 8 == 0) bits = rng_next(&r);
        float noise = ((float)(bits & 255) / 255.0f * 2.0f - 1.0f) * amp;
        bits >>= 8;
        im->px[p] = (uint8_t)lrintf(clampf(cv.rgb[p] + noise, 0, 255));
    }
    make_caption(scene, &r);
    free(cv.rgb);
    free(cv.cover);
}

void ds_synth_labels(const SynthScene *scene, int8_t row[SYNTH_NC]) {
    for (int k = 0; k < SYNTH_NC; k++) row[k] = -1;
    for (int i = 0; i < scene->n; i++)
        if (!scene->obj[i].difficult) row[scene->obj[i].cls] = 1;
}

int ds_synth_annotation(const SynthScene *scene, const char *id, int size,
                        char buf[SYNTH_XML_MAX]) {
    Text t = {buf, SYNTH_XML_MAX, 0};
    text_add(&t, "<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>%s.jpg</filename>\n"
             "\t<source>\n\t\t<database>trmml synthetic world</database>\n\t</source>\n"
             "\t<size>\n\t\t<width>%d</width>\n\t\t<height>%d</height>\n\t\t<depth>3</depth>\n"
             "\t</size>\n\t<segmented>0</segmented>\n", id, size, size);
    for (int i = 0; i < scene->n; i++) {
        const SynthObject *o = &scene->obj[i];
        text_add(&t, "\t<object>\n\t\t<name>%s</name>\n\t\t<pose>Unspecified</pose>\n"
                 "\t\t<truncated>%d</truncated>\n\t\t<difficult>%d</difficult>\n"
                 "\t\t<bndbox>\n\t\t\t<xmin>%d</xmin>\n\t\t\t<ymin>%d</ymin>\n"
                 "\t\t\t<xmax>%d</xmax>\n\t\t\t<ymax>%d</ymax>\n\t\t</bndbox>\n\t</object>\n",
                 SYNTH_CLASSES[o->cls], o->truncated, o->difficult, o->xmin, o->ymin, o->xmax,
                 o->ymax);
    }
    text_add(&t, "</annotation>\n");
    return (int)t.len;
}

void ds_synth_image_id(const SynthConfig *cfg, SynthSplit split, int64_t index, char id[16]) {
    int64_t number = 1 + index + (split == SYNTH_TEST ? cfg->n_train : 0);
    CHECK(index >= 0 && number <= 2 * (int64_t)SYNTH_MAX_IMAGES, "synth: image index %lld",
          (long long)index);
    snprintf(id, 16, "%06d", (int)number);
}

/* ---- Writing the tree ---------------------------------------------------------------------- */

static Status make_dir(const char *path) {
    if (mkdir(path, 0755) == 0 || (errno == EEXIST && ds_is_dir(path))) return STATUS_OK;
    return error_set(STATUS_ERR_IO, "%s: cannot create directory: %s", path, strerror(errno));
}

/* dir must be missing or empty unless force. */
static Status check_out_dir(const char *dir, bool force) {
    struct stat sb;
    if (stat(dir, &sb) != 0) return STATUS_OK;
    if (!S_ISDIR(sb.st_mode))
        return error_set(STATUS_ERR_IO, "%s: exists and is not a directory", dir);
    if (force) return STATUS_OK;
    DIR *d = opendir(dir);
    if (!d) return error_set(STATUS_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    bool empty = true;
    struct dirent *e;
    while (empty && (e = readdir(d)))
        empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    if (!empty)
        return error_set(STATUS_ERR_IO, "%s: exists and is not empty (use --force to write into "
                         "it)", dir);
    return STATUS_OK;
}

static Status check_config(const SynthConfig *cfg) {
    if (cfg->size < SYNTH_MIN_SIZE || cfg->size > SYNTH_MAX_SIZE)
        return error_set(STATUS_ERR_USAGE, "synth: size %d outside [%d, %d]", cfg->size,
                         SYNTH_MIN_SIZE, SYNTH_MAX_SIZE);
    if (cfg->n_train < 1 || cfg->n_train > SYNTH_MAX_IMAGES || cfg->n_test < 1 ||
        cfg->n_test > SYNTH_MAX_IMAGES)
        return error_set(STATUS_ERR_USAGE, "synth: %lld train and %lld test images (each must be "
                         "in [1, %d])", (long long)cfg->n_train, (long long)cfg->n_test,
                         SYNTH_MAX_IMAGES);
    if (cfg->quality < 1 || cfg->quality > 100)
        return error_set(STATUS_ERR_USAGE, "synth: JPEG quality %d outside [1, 100]",
                         cfg->quality);
    return STATUS_OK;
}

/* One image of a batch: rendered, encoded and annotated in parallel, written in order. */
typedef struct {
    SynthScene scene;
    uint8_t *jpeg;
    size_t jpeg_size;
    char xml[SYNTH_XML_MAX];
    Status status;
    char error[256];
} SynthItem;

/* Growing text buffer for the split lists and captions. */
static void text_grow_add(Text *t, const char *a, const char *b, const char *c) {
    size_t need = strlen(a) + strlen(b) + strlen(c);
    if (t->len + need + 1 > t->cap) {
        t->cap = 2 * (t->len + need + 1);
        t->buf = xrealloc(t->buf, t->cap);
    }
    t->len += (size_t)sprintf(t->buf + t->len, "%s%s%s", a, b, c);
}

static Status write_split(const char *voc, const SynthConfig *cfg, SynthSplit split,
                          Text *list, Text *captions, SynthReport *rep) {
    int64_t n = split == SYNTH_TRAIN ? cfg->n_train : cfg->n_test;
    char *jpg_dir = ds_path_join(voc, "JPEGImages"), *ann_dir = ds_path_join(voc, "Annotations");
    SynthItem *items = xcalloc(SYNTH_BATCH, sizeof *items);
    Status st = STATUS_OK;
    for (int64_t b0 = 0; b0 < n && st == STATUS_OK; b0 += SYNTH_BATCH) {
        int nb = (int)(n - b0 < SYNTH_BATCH ? n - b0 : SYNTH_BATCH);
#pragma omp parallel for schedule(dynamic, 1)
        for (int k = 0; k < nb; k++) {
            SynthItem *it = &items[k];
            char id[16];
            ds_synth_image_id(cfg, split, b0 + k, id);
            Image im;
            ds_synth_render(cfg->seed, split, b0 + k, cfg->size, &im, &it->scene);
            /* In-memory encoding of a valid image fails only on a library fault; the message is
             * copied out under a lock because the last-error buffer is shared. */
            it->status = image_encode_jpeg(&im, cfg->quality, &it->jpeg, &it->jpeg_size);
            if (it->status != STATUS_OK) {
#pragma omp critical(synth_error)
                snprintf(it->error, sizeof it->error, "%s.jpg: %s", id, error_last());
            }
            image_free(&im);
            ds_synth_annotation(&it->scene, id, cfg->size, it->xml);
        }
        for (int k = 0; k < nb; k++) {
            SynthItem *it = &items[k];
            char id[16], fname[32];
            ds_synth_image_id(cfg, split, b0 + k, id);
            if (st == STATUS_OK && it->status != STATUS_OK)
                st = error_set(it->status, "synth: %s", it->error);
            if (st == STATUS_OK) {
                snprintf(fname, sizeof fname, "%s.jpg", id);
                char *path = ds_path_join(jpg_dir, fname);
                st = xwrite_file_atomic(path, it->jpeg, it->jpeg_size);
                free(path);
            }
            if (st == STATUS_OK) {
                snprintf(fname, sizeof fname, "%s.xml", id);
                char *path = ds_path_join(ann_dir, fname);
                st = xwrite_file_atomic(path, it->xml, strlen(it->xml));
                free(path);
            }
            if (st == STATUS_OK) {
                text_grow_add(list, id, "\n", "");
                text_grow_add(captions, id, "\t", it->scene.caption);
                text_grow_add(captions, "\n", "", "");
                int8_t row[SYNTH_NC];
                ds_synth_labels(&it->scene, row);
                rep->images++;
                rep->objects += it->scene.n;
                for (int i = 0; i < it->scene.n; i++) {
                    rep->difficult += it->scene.obj[i].difficult;
                    rep->truncated += it->scene.obj[i].truncated;
                }
                for (int c = 0; c < SYNTH_NC; c++) rep->positives[c] += row[c] > 0;
            }
            free(it->jpeg);
            memset(it, 0, sizeof *it);
        }
    }
    free(items);
    free(jpg_dir);
    free(ann_dir);
    return st;
}

Status ds_synth_write(const char *dir, const SynthConfig *cfg, bool force, SynthReport *report) {
    const double t0 = time_now_s();
    SynthReport rep;
    memset(&rep, 0, sizeof rep);
    Status st = check_config(cfg);
    if (st == STATUS_OK) st = check_out_dir(dir, force);
    if (st != STATUS_OK) return st;

    const char *sub[] = {"", "VOCdevkit", "VOCdevkit/VOC2007", "VOCdevkit/VOC2007/JPEGImages",
                         "VOCdevkit/VOC2007/Annotations", "VOCdevkit/VOC2007/ImageSets",
                         "VOCdevkit/VOC2007/ImageSets/Main"};
    for (size_t i = 0; i < sizeof sub / sizeof *sub && st == STATUS_OK; i++) {
        char *p = *sub[i] ? ds_path_join(dir, sub[i]) : ds_strdup(dir);
        st = make_dir(p);
        free(p);
    }
    char *voc = ds_path_join(dir, "VOCdevkit/VOC2007");
    Text lists[2] = {{0}, {0}}, captions = {0};
    for (int s = 0; s < 2 && st == STATUS_OK; s++)
        st = write_split(voc, cfg, (SynthSplit)s, &lists[s], &captions, &rep);

    /* The small files last, the manifest very last: a tree with synth.txt is complete. */
    const char *list_name[2] = {"ImageSets/Main/trainval.txt", "ImageSets/Main/test.txt"};
    for (int s = 0; s < 2 && st == STATUS_OK; s++) {
        char *p = ds_path_join(voc, list_name[s]);
        st = xwrite_file_atomic(p, lists[s].buf, lists[s].len);
        free(p);
    }
    if (st == STATUS_OK) {
        Text names = {0};
        for (int k = 0; k < SYNTH_NC; k++) text_grow_add(&names, SYNTH_CLASSES[k], "\n", "");
        char *p = ds_path_join(dir, "classes.txt");
        st = xwrite_file_atomic(p, names.buf, names.len);
        free(p);
        free(names.buf);
    }
    if (st == STATUS_OK) {
        char *p = ds_path_join(dir, "captions.txt");
        st = xwrite_file_atomic(p, captions.buf, captions.len);
        free(p);
    }
    if (st == STATUS_OK) {
        char manifest[512];
        int n = snprintf(manifest, sizeof manifest,
                         "generator=trmml-synth version=1\nseed=%llu train=%lld test=%lld "
                         "size=%d quality=%d classes=%d\n",
                         (unsigned long long)cfg->seed, (long long)cfg->n_train,
                         (long long)cfg->n_test, cfg->size, cfg->quality, SYNTH_NC);
        char *p = ds_path_join(dir, "synth.txt");
        st = xwrite_file_atomic(p, manifest, (size_t)n);
        free(p);
    }
    free(lists[0].buf);
    free(lists[1].buf);
    free(captions.buf);
    free(voc);
    rep.seconds = time_now_s() - t0;
    if (report) *report = rep;
    return st;
}
