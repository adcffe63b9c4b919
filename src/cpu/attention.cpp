// Causal grouped-query attention (kernels.h §5): exact softmax over blocks of query rows, with the
// logsumexp saved so that the backward recomputes the probabilities instead of storing [T, S].
//
// Layouts: q, out, dOut, dQ [B, T, Hq, D]; k, v, dK, dV [B, S, Hkv, D]. The rows of one head are
// strided: row t of query head h starts at ((b·T + t)·Hq + h)·D, so consecutive rows are Hq·D apart
// (Hkv·D for keys and values). sgemm reads and writes them in place through that leading dimension.
//
// Forward, one task per (b, h, block of kBlock query rows):
//   S = scale · Q_blk · K[:n]ᵀ  [rows, n]   (n = keys the block's last row may see)
//   P = softmax of S over each row's visible keys, lse = logsumexp;   O_blk = P · V[:n].
// Backward, in two passes so that every output element is written by exactly one task (race-free
// and deterministic whatever the thread count), recomputing P from lse in each:
//   pass 1, per (b, h, query block):  dP = dO·Vᵀ, Di = rowsum(dO∘O), dS = P∘(dP − Di),
//                                       dQ_blk = scale · dS · K
//   pass 2, per (b, kv head, block of kBlock keys), over the group's query heads and the queries
//   that see the block:               dV_blk += Pᵀ·dO,  dK_blk += scale · dSᵀ · Q
// Pass 2 recomputes Sᵀ and dPᵀ (two more matmuls than a single pass with shared dK/dV
// accumulators), which buys parallelism over key blocks even for B = 1 and one kv head.
#include <algorithm>
#include <cmath>
#include <limits>

#include "../kernels.h"
#include "../memory.h"
#include "gemm.h"
#include "parallel.h"
#include "softmax_math.h"

namespace rlhf::cpu {
namespace {

constexpr int64_t kBlock = 64;         // query rows per forward/dQ task; key rows per dK/dV task
constexpr int64_t kQueryChunk = 256;   // query rows per step of a dK/dV task (bounds its scratch)
constexpr float kPosInf = std::numeric_limits<float>::infinity();
constexpr float kNegInf = -kPosInf;

// Shapes and visibility shared by the forward and the backward.
struct Geometry {
  int64_t batch, seqQ, seqK, headsQ, headsKv, dim;
  int64_t group;   // query heads per kv head
  int64_t offset;  // key position of query 0: S − T
  bool causal;
  const int32_t* keyMask;  // [B, S] or null

  int64_t qStride() const { return headsQ * dim; }
  int64_t kStride() const { return headsKv * dim; }
  // Offset of row t of query head h (q, out, dOut, dQ) and of key row j of kv head g (k, v, dK, dV).
  int64_t qRow(int64_t b, int64_t t, int64_t h) const { return ((b * seqQ + t) * headsQ + h) * dim; }
  int64_t kRow(int64_t b, int64_t j, int64_t g) const { return ((b * seqK + j) * headsKv + g) * dim; }
  // Keys [0, keysBefore(t)) pass the causal test for query t (all S when not causal).
  int64_t keysBefore(int64_t t) const { return causal ? std::min(seqK, offset + t + 1) : seqK; }
  // First query that key j is causally visible to.
  int64_t firstQuery(int64_t j) const { return causal ? std::max<int64_t>(0, j - offset) : 0; }
  const int32_t* mask(int64_t b) const { return keyMask ? keyMask + b * seqK : nullptr; }
};

Geometry geometry(int64_t batch, int64_t seqQ, int64_t seqK, int64_t headsQ, int64_t headsKv, int64_t dim,
                  bool causal, const int32_t* keyMask) {
  return {batch, seqQ, seqK, headsQ, headsKv, dim, headsQ / headsKv, seqK - seqQ, causal, keyMask};
}

// A row of scaled scores s[0, n) → its softmax over the visible keys (j < limit and mask[j] != 0),
// in place, with 0 for every other key. Returns the logsumexp, or −inf (and a zero row) when no key
// is visible. Masked scores become −inf, which fastExp maps to 0.
float softmaxRow(float* s, int64_t limit, int64_t n, const int32_t* mask) {
  std::fill(s + limit, s + n, 0.0f);
  if (mask) {
    for (int64_t j = 0; j < limit; ++j) s[j] = selectFloat(mask[j] != 0, s[j], kNegInf);
  }
  const float max = rowMax(s, limit);
  if (max == kNegInf) {
    std::fill(s, s + limit, 0.0f);
    return kNegInf;
  }
  for (int64_t j = 0; j < limit; ++j) s[j] = fastExp(s[j] - max);
  const float sum = rowSum(s, limit);
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < limit; ++j) s[j] *= inv;
  return max + std::log(sum);
}

// A row of scaled scores → P = exp(s − lse) on the visible keys, 0 elsewhere (the whole row when
// lse = −inf: the query saw no key).
void probabilitiesRow(float* s, int64_t limit, int64_t n, const int32_t* mask, float lse) {
  if (lse == kNegInf) limit = 0;
  for (int64_t j = 0; j < limit; ++j) s[j] = fastExp(s[j] - lse);
  if (mask) {
    for (int64_t j = 0; j < limit; ++j) s[j] = selectFloat(mask[j] != 0, s[j], 0.0f);
  }
  std::fill(s + limit, s + n, 0.0f);
}

// Query blocks of a (b, h) pair, and the task → (b, h, block) map shared by the forward and the dQ
// pass: the heaviest blocks (the latest ones, when causal) go first, so the dynamic scheduler ends
// with small tasks.
struct QueryBlock {
  int64_t b, h, t0, rows;
};
QueryBlock queryBlock(const Geometry& g, int64_t task) {
  const int64_t pairs = g.batch * g.headsQ;
  const int64_t blocks = (g.seqQ + kBlock - 1) / kBlock;
  const int64_t blk = blocks - 1 - task / pairs;
  const int64_t t0 = blk * kBlock;
  return {(task % pairs) / g.headsQ, task % g.headsQ, t0, std::min(kBlock, g.seqQ - t0)};
}
int64_t queryBlockTasks(const Geometry& g) { return g.batch * g.headsQ * ((g.seqQ + kBlock - 1) / kBlock); }

}  // namespace

void attention(const AttentionArgs& p) {
  const Geometry g = geometry(p.batch, p.seqQ, p.seqK, p.headsQ, p.headsKv, p.headDim, p.causal, p.keyMask);
  const int64_t perThread = kBlock * g.seqK;  // one [rows, S] score block
  ScratchBuffer<float> scratch(static_cast<size_t>(numThreads() * perThread));
  parallelTasks(queryBlockTasks(g), [&](int64_t task, int thread) {
    const QueryBlock qb = queryBlock(g, task);
    const int64_t kvHead = qb.h / g.group;
    const int64_t n = g.keysBefore(qb.t0 + qb.rows - 1);
    float* scores = scratch.data() + thread * perThread;
    const float* k = p.k + g.kRow(qb.b, 0, kvHead);
    const float* v = p.v + g.kRow(qb.b, 0, kvHead);
    // scores = scale · Q_blk · K[:n]ᵀ  [rows, n]
    sgemm(false, true, qb.rows, n, g.dim, p.scale, p.q + g.qRow(qb.b, qb.t0, qb.h), g.qStride(), k, g.kStride(),
          0.0f, scores, n);
    float* lse = p.lse + (qb.b * g.headsQ + qb.h) * g.seqQ + qb.t0;
    for (int64_t r = 0; r < qb.rows; ++r) {
      lse[r] = softmaxRow(scores + r * n, g.keysBefore(qb.t0 + r), n, g.mask(qb.b));
    }
    // O_blk = P · V[:n]  [rows, D]
    sgemm(false, false, qb.rows, g.dim, n, 1.0f, scores, n, v, g.kStride(), 0.0f, p.out + g.qRow(qb.b, qb.t0, qb.h),
          g.qStride());
  });
}

void attentionBackward(const AttentionBackwardArgs& p) {
  const Geometry g = geometry(p.batch, p.seqQ, p.seqK, p.headsQ, p.headsKv, p.headDim, p.causal, p.keyMask);
  const int threads = numThreads();
  // Di = rowsum(dO ∘ O) per (b, h, t), written by pass 1 and read by pass 2.
  ScratchBuffer<float> rowDot(static_cast<size_t>(g.batch * g.headsQ * g.seqQ));

  // Pass 1: dQ, one task per query block. Scratch: P and dP/dS blocks [rows, S].
  {
    const int64_t perThread = 2 * kBlock * g.seqK;
    ScratchBuffer<float> scratch(static_cast<size_t>(threads * perThread));
    parallelTasks(queryBlockTasks(g), [&](int64_t task, int thread) {
      const QueryBlock qb = queryBlock(g, task);
      const int64_t kvHead = qb.h / g.group;
      const int64_t n = g.keysBefore(qb.t0 + qb.rows - 1);
      float* prob = scratch.data() + thread * perThread;
      float* dS = prob + kBlock * g.seqK;
      const float* k = p.k + g.kRow(qb.b, 0, kvHead);
      const float* v = p.v + g.kRow(qb.b, 0, kvHead);
      const int64_t first = g.qRow(qb.b, qb.t0, qb.h);
      const float* lse = p.lse + (qb.b * g.headsQ + qb.h) * g.seqQ + qb.t0;
      float* di = rowDot.data() + (qb.b * g.headsQ + qb.h) * g.seqQ + qb.t0;
      sgemm(false, true, qb.rows, n, g.dim, p.scale, p.q + first, g.qStride(), k, g.kStride(), 0.0f, prob, n);
      for (int64_t r = 0; r < qb.rows; ++r) {
        probabilitiesRow(prob + r * n, g.keysBefore(qb.t0 + r), n, g.mask(qb.b), lse[r]);
      }
      // dP = dO_blk · V[:n]ᵀ  [rows, n]
      sgemm(false, true, qb.rows, n, g.dim, 1.0f, p.dOut + first, g.qStride(), v, g.kStride(), 0.0f, dS, n);
      for (int64_t r = 0; r < qb.rows; ++r) {
        const float* dO = p.dOut + first + r * g.qStride();
        const float* o = p.out + first + r * g.qStride();
        float dot = 0.0f;
        for (int64_t d = 0; d < g.dim; ++d) dot += dO[d] * o[d];
        di[r] = dot;
        float* dSr = dS + r * n;
        const float* pr = prob + r * n;
        for (int64_t j = 0; j < n; ++j) dSr[j] = pr[j] * (dSr[j] - dot);
      }
      // dQ_blk = scale · dS · K[:n]  [rows, D]
      sgemm(false, false, qb.rows, g.dim, n, p.scale, dS, n, k, g.kStride(), 0.0f, p.dQ + first, g.qStride());
    });
  }

  // Pass 2: dK and dV, one task per (b, kv head, key block), heaviest (earliest) key blocks first.
  // Scratch: Pᵀ and dPᵀ/dSᵀ chunks [keys, kQueryChunk] and the chunk's lse.
  const int64_t pairs = g.batch * g.headsKv;
  const int64_t keyBlocks = (g.seqK + kBlock - 1) / kBlock;
  const int64_t perThread = (2 * kBlock + 1) * kQueryChunk;
  ScratchBuffer<float> scratch(static_cast<size_t>(threads * perThread));
  parallelTasks(pairs * keyBlocks, [&](int64_t task, int thread) {
    const int64_t b = (task % pairs) / g.headsKv, kvHead = task % g.headsKv;
    const int64_t j0 = (task / pairs) * kBlock, keys = std::min(kBlock, g.seqK - j0);
    float* probT = scratch.data() + thread * perThread;
    float* dST = probT + kBlock * kQueryChunk;
    float* lseChunk = dST + kBlock * kQueryChunk;
    const int64_t kvFirst = g.kRow(b, j0, kvHead);
    const float* k = p.k + kvFirst;
    const float* v = p.v + kvFirst;
    float* dK = p.dK + kvFirst;
    float* dV = p.dV + kvFirst;
    for (int64_t j = 0; j < keys; ++j) {
      std::fill(dK + j * g.kStride(), dK + j * g.kStride() + g.dim, 0.0f);
      std::fill(dV + j * g.kStride(), dV + j * g.kStride() + g.dim, 0.0f);
    }
    const int32_t* mask = g.mask(b);
    for (int64_t h = kvHead * g.group; h < (kvHead + 1) * g.group; ++h) {
      const float* lseRow = p.lse + (b * g.headsQ + h) * g.seqQ;
      for (int64_t t0 = g.firstQuery(j0); t0 < g.seqQ; t0 += kQueryChunk) {
        const int64_t n = std::min(kQueryChunk, g.seqQ - t0);
        const int64_t first = g.qRow(b, t0, h);
        // The chunk's lse with −inf (a query that saw no key) turned into +inf, so exp(s − lse) = 0.
        for (int64_t c = 0; c < n; ++c) lseChunk[c] = lseRow[t0 + c] == kNegInf ? kPosInf : lseRow[t0 + c];
        const float* diChunk = rowDot.data() + (b * g.headsQ + h) * g.seqQ + t0;
        // Sᵀ = scale · K_blk · Q_chunkᵀ  [keys, n]
        sgemm(false, true, keys, n, g.dim, p.scale, k, g.kStride(), p.q + first, g.qStride(), 0.0f, probT, n);
        // dPᵀ = V_blk · dO_chunkᵀ  [keys, n]
        sgemm(false, true, keys, n, g.dim, 1.0f, v, g.kStride(), p.dOut + first, g.qStride(), 0.0f, dST, n);
        for (int64_t jj = 0; jj < keys; ++jj) {
          float* pr = probT + jj * n;
          float* dr = dST + jj * n;
          // Key j is seen by queries t ≥ firstQuery(j) (none when masked out) whose lse is finite.
          const int64_t j = j0 + jj;
          const int64_t from = (mask && mask[j] == 0) ? n : std::clamp<int64_t>(g.firstQuery(j) - t0, 0, n);
          std::fill(pr, pr + from, 0.0f);
          std::fill(dr, dr + from, 0.0f);
          for (int64_t c = from; c < n; ++c) {
            pr[c] = fastExp(pr[c] - lseChunk[c]);
            dr[c] = pr[c] * (dr[c] - diChunk[c]);
          }
        }
        // dV_blk += Pᵀ · dO_chunk,  dK_blk += scale · dSᵀ · Q_chunk  [keys, D]
        sgemm(false, false, keys, g.dim, n, 1.0f, probT, n, p.dOut + first, g.qStride(), 1.0f, dV, g.kStride());
        sgemm(false, false, keys, g.dim, n, p.scale, dST, n, p.q + first, g.qStride(), 1.0f, dK, g.kStride());
      }
    }
  });
}

}  // namespace rlhf::cpu
