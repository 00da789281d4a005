// Multi-LoRA linear for CPU, one token at a time against its own adapter's weights (BGMV).
//
// Per adapter a step often has a few tokens only (decode: one per request), so torch's matmuls
// there are all call overhead and padding. Here every token reads its adapter's A and B in
// place (no copies) and does the minimal flops: VDPBF16PS for bf16 where the CPU has
// AVX512_BF16, AVX-512 float FMAs otherwise where the compiler targets it (-march=native), else
// loops the compiler vectorises (omp simd). One thread: it runs inside vLLM's CPU worker, whose
// threads vLLM sizes and pins itself; a parallel region of our own oversubscribed its core (an
// OpenMP team spinning at barriers on one core stalled steps for seconds). With many adapters the step is bound by reading
// their weights from memory (software prefetch measured slower than the hardware's).
//
// Numerics follow vLLM's CPU reference ops: the shrink accumulates in float32 and is scaled
// there, the result is rounded to the model dtype (vLLM casts its float32 buffer down), the
// expand accumulates in float32 and rounds once, and the add into y rounds once. Only the
// summation order differs. Tokens whose slot is negative (no adapter) are left untouched.
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

struct bf16 { uint16_t bits; };

inline float to_float(float v) { return v; }
inline float to_float(bf16 v) {
  uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
template <typename T> inline T from_float(float f);
template <> inline float from_float<float>(float f) { return f; }
template <> inline bf16 from_float<bf16>(float f) {
  // Round to nearest even, as torch does (NaN kept quiet).
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>(u >> 16)};
}

#if defined(__AVX512F__)
// 16 lanes at a time; `n` < 16 only for the tail of a row (masked, never reads past it).
inline __m512 load16(const float* p, int64_t n) {
  return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
}
inline __m512 load16(const bf16* p, int64_t n) {
  __m256i h = n >= 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                      : _mm256_maskz_loadu_epi16((__mmask16)((1u << n) - 1), p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline void store16(float* p, __m512 v, int64_t n) {
  if (n >= 16) _mm512_storeu_ps(p, v);
  else _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), v);
}
inline __m512 round_trip(__m512 v, const float*) { return v; }
inline __m256i to_bf16(__m512 v) {  // round to nearest even; NaN stays a (quiet) NaN
  __m512i u = _mm512_castps_si512(v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}
inline __m512 round_trip(__m512 v, const bf16*) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(to_bf16(v)), 16));
}
inline void store16(bf16* p, __m512 v, int64_t n) {
  __m256i h = to_bf16(v);
  if (n >= 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
  else _mm256_mask_storeu_epi16(p, (__mmask16)((1u << n) - 1), h);
}

#endif

// Packed weights, so that every loop below reads one contiguous stream (the hardware prefetcher
// keeps up; with vLLM's layout the expand read 16 rows at once and stalled on memory):
//   A  [slots][rank/8][hidden_p/16][8][16]   rows of A in groups of 8, 16 columns at a time
//   Bt [slots][out_p/64][rank][64]           B transposed, in blocks of 64 outputs
// rank is a multiple of 8, hidden_p of 16, out_p of 64; the padding holds zeros.
constexpr int64_t kRows = 8, kCols = 16, kOuts = 64;

// buf[k] = round(scale * A[k] . x) for k < rank. xf holds hidden_p floats (zeros past hidden).
template <typename T>
inline void shrink(const float* xf, const T* a, int64_t hidden_p, int64_t rank, float scale, float* buf) {
  for (int64_t kb = 0; kb < rank; kb += kRows) {
    const T* block = a + kb * hidden_p;
#if defined(__AVX512F__)
    __m512 acc[kRows];
    for (int j = 0; j < kRows; ++j) acc[j] = _mm512_setzero_ps();
    for (int64_t h = 0; h < hidden_p; h += kCols) {
      const __m512 xv = _mm512_loadu_ps(xf + h);
      const T* tile = block + h * kRows;
      for (int j = 0; j < kRows; ++j) acc[j] = _mm512_fmadd_ps(xv, load16(tile + j * kCols, kCols), acc[j]);
    }
    for (int j = 0; j < kRows; ++j) buf[kb + j] = to_float(from_float<T>(scale * _mm512_reduce_add_ps(acc[j])));
#else
    float acc[kRows] = {};
    for (int64_t h = 0; h < hidden_p; h += kCols) {
      const T* tile = block + h * kRows;
      for (int j = 0; j < kRows; ++j) {
        float dot = 0.f;
#pragma omp simd reduction(+ : dot)
        for (int c = 0; c < kCols; ++c) dot += xf[h + c] * to_float(tile[j * kCols + c]);
        acc[j] += dot;
      }
    }
    for (int j = 0; j < kRows; ++j) buf[kb + j] = to_float(from_float<T>(scale * acc[j]));
#endif
  }
}

// y[o] = round(y[o] + round(sum_k buf[k] * Bt[k][o])) for o < out, 64 outputs at a time.
template <typename T>
inline void expand(const float* buf, const T* bt, int64_t rank, int64_t out, T* y) {
  for (int64_t o = 0; o < out; o += kOuts) {
    const T* block = bt + o * rank;
#if defined(__AVX512F__)
    __m512 acc[kOuts / 16];
    for (int j = 0; j < kOuts / 16; ++j) acc[j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < rank; ++k) {
      const __m512 bk = _mm512_set1_ps(buf[k]);
      for (int j = 0; j < kOuts / 16; ++j)
        acc[j] = _mm512_fmadd_ps(bk, load16(block + k * kOuts + 16 * j, 16), acc[j]);
    }
    for (int j = 0; j < kOuts / 16; ++j) {
      const int64_t n = out - o - 16 * j;
      if (n <= 0) break;
      T* yo = y + o + 16 * j;
      store16(yo, _mm512_add_ps(load16(yo, n), round_trip(acc[j], yo)), n);
    }
#else
    float acc[kOuts] = {};
    for (int64_t k = 0; k < rank; ++k) {
      const float bk = buf[k];
#pragma omp simd
      for (int c = 0; c < kOuts; ++c) acc[c] += bk * to_float(block[k * kOuts + c]);
    }
    const int64_t n = out - o < kOuts ? out - o : kOuts;
    for (int64_t c = 0; c < n; ++c) y[o + c] = from_float<T>(to_float(y[o + c]) + to_float(from_float<T>(acc[c])));
#endif
  }
}

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// y[t, off_i : off_i + O_i] += B_i[s] @ round(scale * A_i[s] @ x[t]) for each slice i, s = slot[t].
//   x     [T, hidden] rows `x_stride` apart;  y [T, >= sum O_i] rows `y_stride` apart
//   a[i], bt[i]: packed as above, rank a multiple of 8
//   order: the `tokens` rows to do, slot by slot so that an adapter's weights are still in
//          cache for its next token.
template <typename T>
void lora_linear(const T* x, int64_t x_stride, T* y, int64_t y_stride, const int64_t* slot,
                 const int64_t* order, int64_t tokens, int64_t hidden, int64_t rank,
                 int64_t n_slices, const T* const* a, const T* const* bt, const int64_t* out_sizes,
                 float scale) {
  const int64_t hidden_p = round_up(hidden, kCols);
  {
    std::vector<float> xf(hidden_p, 0.f), buf(rank);
    for (int64_t i_t = 0; i_t < tokens; ++i_t) {
      const int64_t t = order[i_t];
      const int64_t s = slot[t];
      if (s < 0) continue;
      const T* xt = x + t * x_stride;
      for (int64_t h = 0; h < hidden; ++h) xf[h] = to_float(xt[h]);
      int64_t offset = 0;
      for (int64_t i = 0; i < n_slices; ++i) {
        const int64_t out = out_sizes[i];
        shrink(xf.data(), a[i] + s * rank * hidden_p, hidden_p, rank, scale, buf.data());
        expand(buf.data(), bt[i] + s * rank * round_up(out, kOuts), rank, out, y + t * y_stride + offset);
        offset += out;
      }
    }
  }
}

#if defined(__AVX512BF16__)
// bf16 with AVX512_BF16: VDPBF16PS multiplies 32 bf16 pairs and adds them into 16 float32 lanes,
// with no conversions; twice the work per instruction of the float path above. Layouts:
//   A  [slots][rank/8][hidden_p/32][8][32]       rows in groups of 8, 32 columns at a time
//   Bt [slots][out_p/64][rank/2][64][2]          per block of 64 outputs, ranks k, k+1 paired
// hidden_p a multiple of 32 (zeros past hidden), out_p of 64, rank of 8.
constexpr bool kPairedBf16 = true;

inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }

void lora_linear_paired(const bf16* x, int64_t x_stride, bf16* y, int64_t y_stride, const int64_t* slot,
                        const int64_t* order, int64_t tokens, int64_t hidden, int64_t rank,
                        int64_t n_slices, const bf16* const* a, const bf16* const* bt,
                        const int64_t* out_sizes, float scale) {
  const int64_t hidden_p = round_up(hidden, 32);
  {
    std::vector<bf16> xb(hidden_p, bf16{0});
    std::vector<bf16> buf(rank);
    for (int64_t i_t = 0; i_t < tokens; ++i_t) {
      const int64_t t = order[i_t];
      const int64_t s = slot[t];
      if (s < 0) continue;
      std::memcpy(xb.data(), x + t * x_stride, hidden * sizeof(bf16));
      int64_t offset = 0;
      for (int64_t i = 0; i < n_slices; ++i) {
        const int64_t out = out_sizes[i];
        // Shrink: buf[k] = round(scale * A[k] . x), 8 rows at a time.
        const bf16* ai = a[i] + s * rank * hidden_p;
        for (int64_t kb = 0; kb < rank; kb += 8) {
          const bf16* block = ai + kb * hidden_p;
          __m512 acc[8];
          for (int j = 0; j < 8; ++j) acc[j] = _mm512_setzero_ps();
          for (int64_t h = 0; h < hidden_p; h += 32) {
            const __m512bh xv = as_bh(_mm512_loadu_si512(xb.data() + h));
            const bf16* tile = block + h * 8;
            for (int j = 0; j < 8; ++j)
              acc[j] = _mm512_dpbf16_ps(acc[j], xv, as_bh(_mm512_loadu_si512(tile + j * 32)));
          }
          for (int j = 0; j < 8; ++j) buf[kb + j] = from_float<bf16>(scale * _mm512_reduce_add_ps(acc[j]));
        }
        // Expand: y[o] = round(y[o] + round(sum_k buf[k] * B[o][k])), 64 outputs at a time.
        const bf16* bi = bt[i] + s * rank * round_up(out, 64);
        bf16* yt = y + t * y_stride + offset;
        for (int64_t o = 0; o < out; o += 64) {
          const bf16* block = bi + o * rank;
          __m512 acc[4];
          for (int j = 0; j < 4; ++j) acc[j] = _mm512_setzero_ps();
          for (int64_t k = 0; k < rank; k += 2) {
            uint32_t pair = static_cast<uint32_t>(buf[k].bits) | (static_cast<uint32_t>(buf[k + 1].bits) << 16);
            const __m512bh bk = as_bh(_mm512_set1_epi32(static_cast<int>(pair)));
            const bf16* row = block + k * 64;
            for (int j = 0; j < 4; ++j)
              acc[j] = _mm512_dpbf16_ps(acc[j], bk, as_bh(_mm512_loadu_si512(row + 32 * j)));
          }
          for (int j = 0; j < 4; ++j) {
            const int64_t n = out - o - 16 * j;
            if (n <= 0) break;
            bf16* yo = yt + o + 16 * j;
            store16(yo, _mm512_add_ps(load16(yo, n), round_trip(acc[j], yo)), n);
          }
        }
        offset += out;
      }
    }
  }
}
#else
constexpr bool kPairedBf16 = false;
#endif

}  // namespace

extern "C" {

// Which bf16 layout lora_linear_bf16 expects: 1 = the paired one (AVX512_BF16), 0 = the float one.
int lora_bf16_paired_layout() { return kPairedBf16 ? 1 : 0; }

// Which code path this build runs: 2 = AVX512_BF16 (bf16) + AVX-512 (float), 1 = AVX-512, 0 = the
// portable loops (what AVX2-only CPUs run).
int lora_kernel_path() {
#if defined(__AVX512BF16__)
  return 2;
#elif defined(__AVX512F__)
  return 1;
#else
  return 0;
#endif
}

void lora_linear_bf16(const void* x, int64_t x_stride, void* y, int64_t y_stride,
                      const int64_t* slot, const int64_t* order, int64_t tokens, int64_t hidden, int64_t rank,
                      int64_t n_slices, const void* const* a, const void* const* bt,
                      const int64_t* out_sizes, float scale) {
#if defined(__AVX512BF16__)
  lora_linear_paired(static_cast<const bf16*>(x), x_stride, static_cast<bf16*>(y), y_stride, slot, order,
                     tokens, hidden, rank, n_slices, reinterpret_cast<const bf16* const*>(a),
                     reinterpret_cast<const bf16* const*>(bt), out_sizes, scale);
#else
  lora_linear<bf16>(static_cast<const bf16*>(x), x_stride, static_cast<bf16*>(y), y_stride, slot,
                    order, tokens, hidden, rank, n_slices, reinterpret_cast<const bf16* const*>(a),
                    reinterpret_cast<const bf16* const*>(bt), out_sizes, scale);
#endif
}

void lora_linear_f32(const void* x, int64_t x_stride, void* y, int64_t y_stride,
                     const int64_t* slot, const int64_t* order, int64_t tokens, int64_t hidden, int64_t rank,
                     int64_t n_slices, const void* const* a, const void* const* bt,
                     const int64_t* out_sizes, float scale) {
  lora_linear<float>(static_cast<const float*>(x), x_stride, static_cast<float*>(y), y_stride,
                     slot, order, tokens, hidden, rank, n_slices,
                     reinterpret_cast<const float* const*>(a),
                     reinterpret_cast<const float* const*>(bt), out_sizes, scale);
}

}
