/* CPU kernels for a linear probe's training step (lvseg/native.py builds and loads them).

   Each replaces a chain of PyTorch passes over the same bytes with one: on a 2-core CPU a step of
   64 base-sized frames spent ~9 ms gathering fp16 rows, casting them and multiplying, where one
   pass over the rows that reads them where they lie takes ~1 ms each way (BENCHMARKS.md).

   Every loop is split over the threads statically and every sum is taken in a fixed order, so
   that the results depend on the inputs and the thread count only. Work is split over the team
   OpenMP gives (omp_get_num_threads), which can be smaller than asked for (OMP_THREAD_LIMIT, a
   call from inside a parallel region): split over the count asked for, rows would go undone. */

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#ifndef __F16C__
#error "lvseg native kernels need F16C (x86-64 CPUs since 2012)"
#endif

typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
#define LANES 16
#define MAX_GRID 64    /* the largest patch-grid side the interpolation kernels take */
#define MAX_SIZE 1024  /* and the largest mask side */

static inline v16f load_half(const uint16_t *p)
{
#ifdef __AVX512F__
    return (v16f)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
#else
    __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8)));
    v16f v;
    memcpy(&v, &lo, sizeof lo);
    memcpy((char *)&v + sizeof lo, &hi, sizeof hi);
    return v;
#endif
}

static inline v16f load(const float *p) { v16f v; memcpy(&v, p, sizeof v); return v; }
static inline void store(float *p, v16f v) { memcpy(p, &v, sizeof v); }
static inline float lanes_sum(v16f v) { float s = 0; for (int i = 0; i < LANES; i++) s += v[i]; return s; }

/* The row of sample i's patch p: frames (the samples' rows in `rows`) or, NULL, i itself. */
static inline const uint16_t *row_at(const uint16_t *rows, const int64_t *frames, int64_t r, int64_t patches,
                                     int64_t channels)
{
    int64_t frame = frames ? frames[r / patches] : r / patches;
    return rows + (frame * patches + r % patches) * channels;
}

/* out[r, k] = bias[k] + sum_c weight[k, c] x_r[c] over the `patches` rows (channels-last fp16) of
   each of n samples. channels: a multiple of 16. */
void head_forward(const uint16_t *rows, const int64_t *frames, int64_t n, int64_t patches, int64_t channels,
                  const float *weight, const float *bias, int64_t outputs, float *out, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < n * patches; r++) {
        const uint16_t *x = row_at(rows, frames, r, patches, channels);
        for (int64_t k = 0; k < outputs; k++) {
            const float *w = weight + k * channels;
            v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}; /* four chains: an FMA's latency hidden */
            int64_t c = 0;
            for (; c + 4 * LANES <= channels; c += 4 * LANES) {
                a0 += load(w + c) * load_half(x + c);
                a1 += load(w + c + LANES) * load_half(x + c + LANES);
                a2 += load(w + c + 2 * LANES) * load_half(x + c + 2 * LANES);
                a3 += load(w + c + 3 * LANES) * load_half(x + c + 3 * LANES);
            }
            for (; c < channels; c += LANES)
                a0 += load(w + c) * load_half(x + c);
            out[r * outputs + k] = lanes_sum((a0 + a1) + (a2 + a3)) + (bias ? bias[k] : 0.0f);
        }
    }
}

/* grad_weight[k, c] = sum_r grad[r, k] x_r[c]; `partial` holds threads * outputs * channels floats
   (each thread's sum over its share of the rows, added in thread order). */
void head_weight_grad(const uint16_t *rows, const int64_t *frames, int64_t n, int64_t patches, int64_t channels,
                      const float *grad, int64_t outputs, float *grad_weight, float *partial, int threads)
{
    int64_t size = outputs * channels;
    memset(partial, 0, sizeof(float) * threads * size);
#pragma omp parallel num_threads(threads)
    {
        int64_t t = omp_get_thread_num(), team = omp_get_num_threads(), total = n * patches;
        float *mine = partial + t * size;
        for (int64_t r = total * t / team; r < total * (t + 1) / team; r++) {
            const uint16_t *x = row_at(rows, frames, r, patches, channels);
            for (int64_t k = 0; k < outputs; k++) {
                float g = grad[r * outputs + k];
                float *d = mine + k * channels;
                for (int64_t c = 0; c < channels; c += LANES)
                    store(d + c, load(d + c) + g * load_half(x + c));
            }
        }
    }
    for (int64_t j = 0; j < size; j++) {
        float s = 0;
        for (int t = 0; t < threads; t++)
            s += partial[t * size + j];
        grad_weight[j] = s;
    }
}

/* Bilinear upsampling of (h, w) grids to (H, W), separable: output row r mixes input rows
   row_taps[2r] and row_taps[2r+1] (weights row_weights[2r], row_weights[2r+1]) into w values, which
   `columns_t`, the (w, W_pad) transposed column interpolation matrix (zero past W, W_pad a multiple
   of 16), turns into the row's W values, 16 at a time, into `out` (W_pad floats). A block of 16
   output columns mixes only the few input columns of its span (`Spans`), not all w. */
typedef struct {
    int64_t first[MAX_SIZE / LANES], last[MAX_SIZE / LANES]; /* of each block's non-zero rows of columns_t */
} Spans;

static void find_spans(const float *columns_t, int64_t w, int64_t W, Spans *spans)
{
    int64_t padded = (W + LANES - 1) / LANES * LANES;
    for (int64_t c = 0; c < padded; c += LANES) {
        int64_t first = w, last = -1;
        for (int64_t j = 0; j < w; j++)
            for (int64_t i = 0; i < LANES; i++)
                if (columns_t[j * padded + c + i] != 0) {
                    first = j < first ? j : first;
                    last = j;
                }
        spans->first[c / LANES] = first, spans->last[c / LANES] = last;
    }
}

static void row_forward(const float *grid, int64_t r, int64_t w, int64_t W, const int32_t *row_taps,
                        const float *row_weights, const float *columns_t, const Spans *spans, float *out)
{
    int64_t padded = (W + LANES - 1) / LANES * LANES;
    float mixed[MAX_GRID];
    const float *a = grid + row_taps[2 * r] * w, *b = grid + row_taps[2 * r + 1] * w;
    for (int64_t j = 0; j < w; j++)
        mixed[j] = row_weights[2 * r] * a[j] + row_weights[2 * r + 1] * b[j];
    for (int64_t c = 0; c < padded; c += LANES) {
        v16f sum = {0};
        for (int64_t j = spans->first[c / LANES]; j <= spans->last[c / LANES]; j++)
            sum += mixed[j] * load(columns_t + j * padded + c);
        store(out + c, sum);
    }
}

/* The transpose, for `count` (at most 4) rows of a gradient, `stride` floats apart: each row back
   to the w columns through `columns`, the (W, w_pad) column interpolation matrix (zero past w),
   as eight independent chains of vector updates (a row at a time, or tap by tap, each update
   waited for the one before), then into the grid's rows through the row taps. Inlined for a
   constant count, the chains stay in registers. */
static inline __attribute__((always_inline)) void
rows_back(const float *g, int64_t stride, int64_t r0, int64_t count, int64_t w, int64_t W,
          const int32_t *row_taps, const float *row_weights, const float *columns, float *grid)
{
    int64_t padded = (w + LANES - 1) / LANES * LANES;
    float mixed[4][MAX_GRID];
    for (int64_t j = 0; j < padded; j += LANES) {
        v16f even[4] = {{0}, {0}, {0}, {0}}, odd[4] = {{0}, {0}, {0}, {0}};
        int64_t c = 0;
        for (; c + 1 < W; c += 2) {
            v16f column = load(columns + c * padded + j), next = load(columns + (c + 1) * padded + j);
            for (int64_t k = 0; k < count; k++) {
                even[k] += g[k * stride + c] * column;
                odd[k] += g[k * stride + c + 1] * next;
            }
        }
        for (; c < W; c++)
            for (int64_t k = 0; k < count; k++)
                even[k] += g[k * stride + c] * load(columns + c * padded + j);
        for (int64_t k = 0; k < count; k++)
            store(mixed[k] + j, even[k] + odd[k]);
    }
    for (int64_t k = 0; k < count; k++) {
        int64_t r = r0 + k;
        float *a = grid + row_taps[2 * r] * w, *b = grid + row_taps[2 * r + 1] * w;
        for (int64_t j = 0; j < w; j++) {
            a[j] += row_weights[2 * r] * mixed[k][j];
            b[j] += row_weights[2 * r + 1] * mixed[k][j];
        }
    }
}

static void rows_backward(const float *g, int64_t stride, int64_t r0, int64_t count, int64_t w, int64_t W,
                          const int32_t *row_taps, const float *row_weights, const float *columns, float *grid)
{
    if (count == 4)
        rows_back(g, stride, r0, 4, w, W, row_taps, row_weights, columns, grid);
    else
        rows_back(g, stride, r0, count, w, W, row_taps, row_weights, columns, grid);
}

/* `planes` (h, w) grids upsampled to (H, W) (row_forward) */
void upsample_forward(const float *in, int64_t planes, int64_t h, int64_t w, int64_t H, int64_t W,
                      const int32_t *row_taps, const float *row_weights, const float *columns_t, float *out,
                      int threads)
{
    Spans spans;
    find_spans(columns_t, w, W, &spans);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        float row[MAX_SIZE];
        for (int64_t r = 0; r < H; r++) {
            row_forward(in + p * h * w, r, w, W, row_taps, row_weights, columns_t, &spans, row);
            memcpy(out + (p * H + r) * W, row, sizeof(float) * W);
        }
    }
}

/* its transpose: grad (planes, H, W) -> out (planes, h, w) */
void upsample_backward(const float *grad, int64_t planes, int64_t h, int64_t w, int64_t H, int64_t W,
                       const int32_t *row_taps, const float *row_weights, const float *columns, float *out,
                       int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        float *grid = out + p * h * w;
        memset(grid, 0, sizeof(float) * h * w);
        for (int64_t r0 = 0; r0 < H; r0 += 4)
            rows_backward(grad + (p * H + r0) * W, W, r0, H - r0 < 4 ? H - r0 : 4, w, W, row_taps, row_weights,
                          columns, grid);
    }
}

/* glibc's vector exp (libmvec): 16 or 8 lanes at a time, within 4 ulp */
#ifdef __AVX512F__
__m512 _ZGVeN16v_expf(__m512);
static inline v16f vexp(v16f x) { return (v16f)_ZGVeN16v_expf((__m512)x); }
#else
__m256 _ZGVdN8v_expf(__m256);
static inline v16f vexp(v16f x)
{
    v8f lo, hi;
    memcpy(&lo, &x, sizeof lo);
    memcpy(&hi, (char *)&x + sizeof lo, sizeof hi);
    lo = (v8f)_ZGVdN8v_expf((__m256)lo), hi = (v8f)_ZGVdN8v_expf((__m256)hi);
    memcpy(&x, &lo, sizeof lo);
    memcpy((char *)&x + sizeof lo, &hi, sizeof hi);
    return x;
}
#endif

/* log(1 + e) for e in [0, 1]: 2 atanh(s) with s = e / (2 + e) in [0, 1/3], by atanh's series to
   s^15 (the terms left out add under 2e-9 of the sum): e itself where e is tiny, so a confident
   pixel's loss keeps its digits. A third of the time of libmvec's log1pf. */
static inline v16f log1p_unit(v16f e)
{
    v16f s = e / (2 + e), t = s * s;
    v16f series = (v16f){0} + 1.0f / 15;
    series = series * t + 1.0f / 13;
    series = series * t + 1.0f / 11;
    series = series * t + 1.0f / 9;
    series = series * t + 1.0f / 7;
    series = series * t + 1.0f / 5;
    series = series * t + 1.0f / 3;
    series = series * t + 1;
    return 2 * s * series;
}

typedef int32_t v16i __attribute__((vector_size(64)));
/* a where mask (a comparison's all-ones lanes), else b: C has no ?: over vectors */
static inline v16f where(v16i mask, v16f a, v16f b) { return (v16f)(((v16i)a & mask) | ((v16i)b & ~mask)); }
static inline v16f vabs(v16f x) { return (v16f)((v16i)x & 0x7fffffff); }
static inline v16f vmax0(v16f x) { return where(x > 0, x, (v16f){0}); }

typedef double v8d __attribute__((vector_size(64)));
#define LANE_INDEX ((v16i){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})

/* lanes of block b of z and y: a whole block loaded, the last one padded with z = 0, y = 0 */
static inline int64_t block(const float *z, const float *y, int64_t n, int64_t b, v16f *zb, v16f *yb)
{
    int64_t count = n - b * LANES < LANES ? n - b * LANES : LANES;
    if (count == LANES) {
        *zb = load(z + b * LANES), *yb = load(y + b * LANES);
    } else {
        *zb = (v16f){0}, *yb = (v16f){0};
        memcpy(zb, z + b * LANES, sizeof(float) * count);
        memcpy(yb, y + b * LANES, sizeof(float) * count);
    }
    return count;
}

/* BCE with logits z and targets y, lane by lane: relu(z) - z y + log1p(exp(-|z|)), with relu(z) -
   z y first (exactly 0 where a confident head is right, so the log1p term is added once), and,
   where `residual` is given, its gradient sigmoid(z) - y as sigmoid(z) (1 - y) - sigmoid(-z) y:
   both from exp(-|z|) (never overflows), and for y in {0, 1} without the cancellation of
   sigmoid(z) - 1 where z > 0. */
static inline v16f bce_lanes(v16f z, v16f y, v16f *residual)
{
    v16f e = vexp(-vabs(z));
    if (residual) {
        v16f big = 1 / (1 + e), small = e * big; /* sigmoid(|z|), sigmoid(-|z|) */
        v16i positive = z >= 0;
        *residual = where(positive, big, small) * (1 - y) - where(positive, small, big) * y;
    }
    return (vmax0(z) - z * y) + log1p_unit(e);
}

static inline void add_double(v8d *low, v8d *high, v16f x)
{
    v8f half;
    memcpy(&half, &x, sizeof half);
    *low += __builtin_convertvector(half, v8d);
    memcpy(&half, (char *)&x + sizeof half, sizeof half);
    *high += __builtin_convertvector(half, v8d);
}

static inline double lanes_total(v8d low, v8d high)
{
    double sum = 0;
    for (int i = 0; i < 8; i++)
        sum += low[i] + high[i];
    return sum;
}

#define MAX_THREADS 256

/* the sum over i < n of BCE with logits z, targets y: in double lanes per thread, then over the
   lanes and the threads in order */
double bce_sum(const float *z, const float *y, int64_t n, int threads)
{
    int64_t blocks = (n + LANES - 1) / LANES;
    double partial[MAX_THREADS] = {0};
    threads = threads > MAX_THREADS ? MAX_THREADS : threads;
#pragma omp parallel num_threads(threads)
    {
        int64_t t = omp_get_thread_num(), team = omp_get_num_threads();
        v8d low = {0}, high = {0};
        for (int64_t b = blocks * t / team; b < blocks * (t + 1) / team; b++) {
            v16f zb, yb;
            int64_t count = block(z, y, n, b, &zb, &yb);
            v16f loss = bce_lanes(zb, yb, NULL);
            add_double(&low, &high, count < LANES ? where(LANE_INDEX < (int32_t)count, loss, (v16f){0}) : loss);
        }
        partial[t] = lanes_total(low, high);
    }
    double total = 0;
    for (int t = 0; t < threads; t++)
        total += partial[t];
    return total;
}

/* out = (sigmoid(z) - y) * scale */
void bce_grad(const float *z, const float *y, int64_t n, float scale, float *out, int threads)
{
    int64_t blocks = (n + LANES - 1) / LANES;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        v16f zb, yb, residual;
        int64_t count = block(z, y, n, b, &zb, &yb);
        bce_lanes(zb, yb, &residual);
        residual *= scale;
        if (count == LANES)
            store(out + b * LANES, residual);
        else
            memcpy(out + b * LANES, &residual, sizeof(float) * count);
    }
}

/* `lanes` uint8 masks as floats, the rest 0 */
static inline v16f load_mask(const uint8_t *y, int64_t lanes)
{
    if (lanes == LANES) {
#ifdef __AVX512F__
        return (v16f)_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)y)));
#else
        __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)y)));
        __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(y + 8))));
        v16f target;
        memcpy(&target, &lo, sizeof lo);
        memcpy((char *)&target + sizeof lo, &hi, sizeof hi);
        return target;
#endif
    }
    v16f target = {0};
    for (int64_t i = 0; i < lanes; i++)
        target[i] = y[i];
    return target;
}

/* BCE of `planes` (h, w) logit grids upsampled bilinearly to (H, W) against uint8 masks in {0, 1},
   without the upsampled logits: each plane's rows are made four at a time (row_forward), their
   loss summed and their gradient taken back to the grid (rows_backward) while in the CPU's
   cache. Returns the loss summed over every pixel (double lanes per thread, threads in order);
   writes the gradient of that sum times `scale` to the grid into `grad` (planes, h, w). */
double bilinear_bce(const float *grids, const uint8_t *masks, int64_t planes, int64_t h, int64_t w, int64_t H,
                    int64_t W, const int32_t *row_taps, const float *row_weights, const float *columns_t,
                    const float *columns, float scale, float *grad, int threads)
{
    int64_t padded = (W + LANES - 1) / LANES * LANES;
    double partial[MAX_THREADS] = {0};
    threads = threads > MAX_THREADS ? MAX_THREADS : threads;
    Spans spans;
    find_spans(columns_t, w, W, &spans);
#pragma omp parallel num_threads(threads)
    {
        int64_t t = omp_get_thread_num(), team = omp_get_num_threads();
        v8d low = {0}, high = {0};
        float rows[4][MAX_SIZE];
        for (int64_t p = planes * t / team; p < planes * (t + 1) / team; p++) {
            float *back = grad + p * h * w;
            memset(back, 0, sizeof(float) * h * w);
            for (int64_t r0 = 0; r0 < H; r0 += 4) {
                int64_t count = H - r0 < 4 ? H - r0 : 4;
                for (int64_t k = 0; k < count; k++) {
                    const uint8_t *y = masks + (p * H + r0 + k) * W;
                    v16f row_loss = {0}; /* a row's in float (W / 16 terms a lane), the rows' in double */
                    row_forward(grids + p * h * w, r0 + k, w, W, row_taps, row_weights, columns_t, &spans, rows[k]);
                    for (int64_t c = 0; c < padded; c += LANES) {
                        int64_t lanes = W - c < LANES ? W - c : LANES;
                        v16f target = load_mask(y + c, lanes), residual;
                        v16f loss = bce_lanes(load(rows[k] + c), target, &residual);
                        row_loss += lanes < LANES ? where(LANE_INDEX < (int32_t)lanes, loss, (v16f){0}) : loss;
                        store(rows[k] + c, residual * scale);
                    }
                    add_double(&low, &high, row_loss);
                }
                rows_backward(rows[0], MAX_SIZE, r0, count, w, W, row_taps, row_weights, columns, back);
            }
        }
        partial[t] = lanes_total(low, high);
    }
    double total = 0;
    for (int t = 0; t < threads; t++)
        total += partial[t];
    return total;
}
