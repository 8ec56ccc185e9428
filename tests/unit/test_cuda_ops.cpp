// Every CUDA op against the CPU op (the reference checked against PyTorch and finite
// differences), on fresh random inputs, for f32 and bf16 activations, over shapes that are
// and are not multiples of the kernels' tiles (32-column tiles, 64-row attention tiles,
// 8-row norm blocks, 512-thread cross-entropy rows). Compiled only in CUDA builds; without a
// visible device every test reports "skipped: no CUDA device" (GTEST_SKIP, shown by CTest
// as skipped, not passed).
//
// Method. Inputs are drawn in fp32 and, for bf16 runs, rounded to bf16 first, so that the
// CPU reference (fp32 on the CPU) sees exactly the values the device sees. Every output
// that an op writes is poisoned with NaN before the run (so an element left unwritten
// fails); outputs that an op accumulates into start from random values.
//
// Tolerances, |got - want| <= tol * (|want_i| + max_j |want_j|) (expect_near_rel):
//  - f32 runs: the device and the CPU sum in different orders. For the elementwise ops,
//    norms, rotary, embedding and cross-entropy 1e-5; for the GEMMs and attention (sums of
//    up to a few hundred products, ~sqrt(k) 2^-24 relative each) 1e-4.
//  - bf16 runs: bf16 keeps 8 significant bits, so one rounding to nearest moves a value by
//    at most 2^-9 relative (half an ulp; an ulp is 2^-8 relative at worst). The kernels
//    compute in fp32 and round once on store, so one output rounding is allowed as 2^-8
//    (twice the half-ulp, for the fp32 differences on top); ops whose output goes through
//    two roundings (the bf16 linear: product rounded, then bias added and rounded again;
//    attention's backward, whose inputs out/dout are themselves bf16-rounded results)
//    get 2^-7. f32 outputs of bf16 runs (lse, losses, rstd, parameter gradients) see only
//    fp32 arithmetic on exact bf16 inputs: 1e-4.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "bf16_host.h"
#include "core/buffer.h"
#include "core/cuda_info.h"
#include "core/device_memory.h"
#include "kernels/ops/ops_cuda.h"
#include "ops/ops.h"
#include "test_ops_common.h"

namespace speedrun::test {
namespace {

constexpr double kF32Tol = 1e-5;
constexpr double kF32SumTol = 1e-4;
constexpr double kBf16One = 1.0 / 256;    // one bf16 rounding (2^-8)
constexpr double kBf16Two = 1.0 / 128;    // two roundings (2^-7)

bool have_device() {
  static const bool yes = !query_cuda().devices.empty();
  return yes;
}


std::vector<float> round_to(DType t, std::vector<float> v) {
  if (t == DType::bf16) {
    for (float& x : v) x = from_bf16_bits(to_bf16_bits(x));
  }
  return v;
}

// A device copy of host values stored as dtype t (f32, bf16 or i32).
struct Dev {
  Buffer buf;
  DType dtype = DType::f32;
  int64_t n = 0;

  Dev() = default;
  Dev(const std::vector<float>& v, DType t) : dtype(t), n(static_cast<int64_t>(v.size())) {
    buf = Buffer(Device::cuda, std::max<size_t>(1, v.size() * dtype_size(t)));
    write(v);
  }
  explicit Dev(const std::vector<int32_t>& v) : dtype(DType::i32), n(static_cast<int64_t>(v.size())) {
    buf = Buffer(Device::cuda, std::max<size_t>(1, v.size() * 4));
    if (!v.empty()) device_copy(buf.data(), v.data(), v.size() * 4);
  }
  void write(const std::vector<float>& v) {
    if (v.empty()) return;
    if (dtype == DType::bf16) {
      std::vector<uint16_t> bits(v.size());
      for (size_t i = 0; i < v.size(); ++i) bits[i] = to_bf16_bits(v[i]);
      device_copy(buf.data(), bits.data(), bits.size() * 2);
    } else {
      device_copy(buf.data(), v.data(), v.size() * 4);
    }
  }
  void poison() { write(std::vector<float>(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN())); }
  std::vector<float> read() const {
    std::vector<float> v(static_cast<size_t>(n));
    if (v.empty()) return v;
    if (dtype == DType::bf16) {
      std::vector<uint16_t> bits(v.size());
      device_copy(bits.data(), buf.data(), bits.size() * 2);
      for (size_t i = 0; i < v.size(); ++i) v[i] = from_bf16_bits(bits[i]);
    } else {
      device_copy(v.data(), buf.data(), v.size() * 4);
    }
    return v;
  }
  Tensor t(std::initializer_list<int64_t> shape) const { return Tensor(buf.data(), dtype, Device::cuda, shape); }
};

Tensor host(std::vector<float>& v, std::initializer_list<int64_t> shape) { return Tensor::of(v.data(), shape); }
Tensor host(std::vector<int32_t>& v, std::initializer_list<int64_t> shape) { return Tensor::of(v.data(), shape); }

std::vector<double> wide(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

const char* name(DType t) { return dtype_name(t); }

class CudaOpsTest : public OpsTest {
 protected:
  void SetUp() override {
    if (!have_device()) GTEST_SKIP() << "skipped: no CUDA device (" << query_cuda().no_device_reason << ")";
  }
  std::vector<float> rand(int64_t n, double lo = -1.0, double hi = 1.0) {
    const std::vector<double> d = uniform(n, lo, hi);
    return std::vector<float>(d.begin(), d.end());
  }
  std::vector<float> rand_as(DType t, int64_t n, double lo = -1.0, double hi = 1.0) { return round_to(t, rand(n, lo, hi)); }
};

constexpr DType kActs[] = {DType::f32, DType::bf16};

// ---- elementwise ------------------------------------------------------------------------------
TEST_F(CudaOpsTest, Relu2AndResidualMatchCpu) {
  for (DType t : kActs) {
    for (int64_t n : {1, 31, 1000, 70001}) {
      SCOPED_TRACE(std::string(name(t)) + " n=" + std::to_string(n));
      std::vector<float> x = rand_as(t, n), dout = rand_as(t, n), b = rand_as(t, n);
      std::vector<float> y(n), dx(n), sum(n);
      ops::relu2_forward(host(y, {n}), host(x, {n}));
      ops::relu2_backward(host(dx, {n}), host(dout, {n}), host(x, {n}));
      ops::residual_forward(host(sum, {n}), host(x, {n}), host(b, {n}));

      Dev dx_(x, t), ddout(dout, t), db_(b, t), dy(x, t), ddx(x, t), dsum(x, t);
      dy.poison();
      ddx.poison();
      dsum.poison();
      ops::relu2_forward(dy.t({n}), dx_.t({n}));
      ops::relu2_backward(ddx.t({n}), ddout.t({n}), dx_.t({n}));
      ops::residual_forward(dsum.t({n}), dx_.t({n}), db_.t({n}));
      const double tol = t == DType::f32 ? kF32Tol : kBf16One;
      expect_near_rel("relu2_forward", dy.read(), wide(y), tol);
      expect_near_rel("relu2_backward", ddx.read(), wide(dx), tol);
      expect_near_rel("residual_forward", dsum.read(), wide(sum), tol);

      // residual_backward accumulates into both branches.
      std::vector<float> da = rand_as(t, n), dbb = rand_as(t, n);
      Dev dda(da, t), ddbb(dbb, t);
      ops::residual_backward(host(da, {n}), host(dbb, {n}), host(dout, {n}));
      ops::residual_backward(dda.t({n}), ddbb.t({n}), ddout.t({n}));
      expect_near_rel("residual_backward da", dda.read(), wide(da), tol);
      expect_near_rel("residual_backward db", ddbb.read(), wide(dbb), tol);

      // In place (out aliasing x), as the model calls relu2_backward.
      ops::relu2_backward(ddout.t({n}), ddout.t({n}), dx_.t({n}));
      expect_near_rel("relu2_backward in place", ddout.read(), wide(dx), tol);
    }
  }
}

// ---- RMSNorm and QK-norm -------------------------------------------------------------------
TEST_F(CudaOpsTest, RmsNormMatchesCpu) {
  for (DType t : kActs) {
    for (auto [rows, ch] : Shapes<2>{{1, 1}, {3, 5}, {9, 64}, {33, 100}, {130, 768}}) {
      for (bool with_gains : {true, false}) {
        SCOPED_TRACE(std::string(name(t)) + " rows=" + std::to_string(rows) + " ch=" + std::to_string(ch) +
                     (with_gains ? " gains" : " no gains"));
        std::vector<float> x = rand_as(t, rows * ch), g = rand(ch, 0.5, 1.5), dout = rand_as(t, rows * ch);
        std::vector<float> y(rows * ch), rstd(rows), dx = rand(rows * ch), dg = rand(ch);
        const double eps = 1.0 / 128;
        const Tensor gains = with_gains ? host(g, {ch}) : Tensor();
        Dev dx_(x, t), dg_(g, DType::f32), ddout(dout, t), dy(y, t), drstd(rstd, DType::f32);
        Dev ddx(round_to(t, dx), t), ddg(dg, DType::f32);
        dx = round_to(t, dx);  // the accumulate run starts from the same values
        std::vector<float> dx_acc = dx, dg0 = dg;
        Dev ddx_acc(dx, t);

        ops::rmsnorm_forward(host(y, {rows, ch}), host(rstd, {rows}), host(x, {rows, ch}), gains, eps);
        dy.poison();
        drstd.poison();
        ops::rmsnorm_forward(dy.t({rows, ch}), drstd.t({rows}), dx_.t({rows, ch}),
                             with_gains ? dg_.t({ch}) : Tensor(), eps);
        expect_near_rel("rmsnorm_forward out", dy.read(), wide(y), t == DType::f32 ? kF32Tol : kBf16One);
        expect_near_rel("rmsnorm_forward rstd", drstd.read(), wide(rstd), t == DType::f32 ? kF32Tol : kF32SumTol);

        // Backward with the CPU's rstd on both sides: written dx, and accumulated dx + dgains.
        Dev drstd_ref(rstd, DType::f32);
        ops::rmsnorm_backward(host(dx, {rows, ch}), Tensor(), host(dout, {rows, ch}), host(x, {rows, ch}), gains,
                              host(rstd, {rows}), false);
        ddx.poison();
        ops::rmsnorm_backward(ddx.t({rows, ch}), Tensor(), ddout.t({rows, ch}), dx_.t({rows, ch}),
                              with_gains ? dg_.t({ch}) : Tensor(), drstd_ref.t({rows}), false);
        const double tol_dx = t == DType::f32 ? kF32SumTol : kBf16One;
        expect_near_rel("rmsnorm_backward dx", ddx.read(), wide(dx), tol_dx);

        ops::rmsnorm_backward(host(dx_acc, {rows, ch}), with_gains ? host(dg, {ch}) : Tensor(),
                              host(dout, {rows, ch}), host(x, {rows, ch}), gains, host(rstd, {rows}), true);
        ops::rmsnorm_backward(ddx_acc.t({rows, ch}), with_gains ? ddg.t({ch}) : Tensor(), ddout.t({rows, ch}),
                              dx_.t({rows, ch}), with_gains ? dg_.t({ch}) : Tensor(), drstd_ref.t({rows}), true);
        expect_near_rel("rmsnorm_backward dx accumulated", ddx_acc.read(), wide(dx_acc), tol_dx);
        if (with_gains) expect_near_rel("rmsnorm_backward dgains", ddg.read(), wide(dg), kF32SumTol);
        else expect_near_rel("dgains untouched", ddg.read(), wide(dg0), 0.0);
      }
    }
  }
}

TEST_F(CudaOpsTest, QkNormMatchesCpu) {
  for (DType t : kActs) {
    for (auto [rows, heads, hd] : Shapes<3>{{1, 1, 64}, {7, 3, 64}, {65, 6, 128}}) {
      SCOPED_TRACE(std::string(name(t)) + " rows=" + std::to_string(rows) + " heads=" + std::to_string(heads));
      const int64_t c = heads * hd;
      std::vector<float> x = rand_as(t, rows * c), dout = rand_as(t, rows * c);
      std::vector<float> y(rows * c), rstd(rows * heads), dx(rows * c);
      ops::qk_norm_forward(host(y, {rows, c}), host(rstd, {rows * heads}), host(x, {rows, c}), hd, 1.0 / 128);
      ops::qk_norm_backward(host(dx, {rows, c}), host(dout, {rows, c}), host(x, {rows, c}),
                            host(rstd, {rows * heads}), hd);
      Dev dx_(x, t), ddout(dout, t), dy(y, t), drstd(rstd, DType::f32), ddx(dx, t);
      dy.poison();
      drstd.poison();
      ddx.poison();
      ops::qk_norm_forward(dy.t({rows, c}), drstd.t({rows * heads}), dx_.t({rows, c}), hd, 1.0 / 128);
      expect_near_rel("qk_norm_forward", dy.read(), wide(y), t == DType::f32 ? kF32Tol : kBf16One);
      Dev drstd_ref(rstd, DType::f32);
      ops::qk_norm_backward(ddx.t({rows, c}), ddout.t({rows, c}), dx_.t({rows, c}), drstd_ref.t({rows * heads}), hd);
      expect_near_rel("qk_norm_backward", ddx.read(), wide(dx), t == DType::f32 ? kF32SumTol : kBf16One);
    }
  }
}

// ---- rotary -------------------------------------------------------------------------------------
TEST_F(CudaOpsTest, RotaryMatchesCpu) {
  for (DType t : kActs) {
    for (auto [B, T, H, D] : Shapes<4>{{1, 1, 1, 64}, {2, 37, 3, 64}, {1, 130, 2, 128}}) {
      SCOPED_TRACE(std::string(name(t)) + " T=" + std::to_string(T) + " D=" + std::to_string(D));
      const int64_t n = B * T * H * D, tp = T + 3;  // tables longer than the sequence
      std::vector<float> cos(tp * D / 2), sin(tp * D / 2);
      ops::rotary_tables(host(cos, {tp, D / 2}), host(sin, {tp, D / 2}), D, 1024.0);
      Dev dcos(cos, DType::f32), dsin(sin, DType::f32);
      dcos.poison();
      dsin.poison();
      ops::rotary_tables(dcos.t({tp, D / 2}), dsin.t({tp, D / 2}), D, 1024.0);
      expect_near_rel("rotary_tables cos", dcos.read(), wide(cos), 0.0);  // bitwise: built by the same code
      expect_near_rel("rotary_tables sin", dsin.read(), wide(sin), 0.0);

      std::vector<float> x = rand_as(t, n), y(n), dx(n);
      ops::rotary_forward(host(y, {B, T, H, D}), host(x, {B, T, H, D}), host(cos, {tp, D / 2}), host(sin, {tp, D / 2}));
      ops::rotary_backward(host(dx, {B, T, H, D}), host(x, {B, T, H, D}), host(cos, {tp, D / 2}),
                           host(sin, {tp, D / 2}));
      Dev dx_(x, t), dy(y, t), ddx(dx, t);
      dy.poison();
      ddx.poison();
      ops::rotary_forward(dy.t({B, T, H, D}), dx_.t({B, T, H, D}), dcos.t({tp, D / 2}), dsin.t({tp, D / 2}));
      ops::rotary_backward(ddx.t({B, T, H, D}), dx_.t({B, T, H, D}), dcos.t({tp, D / 2}), dsin.t({tp, D / 2}));
      const double tol = t == DType::f32 ? kF32Tol : kBf16One;
      expect_near_rel("rotary_forward", dy.read(), wide(y), tol);
      expect_near_rel("rotary_backward", ddx.read(), wide(dx), tol);
      // In place, as the model calls it.
      ops::rotary_forward(dx_.t({B, T, H, D}), dx_.t({B, T, H, D}), dcos.t({tp, D / 2}), dsin.t({tp, D / 2}));
      expect_near_rel("rotary_forward in place", dx_.read(), wide(y), tol);
    }
  }
}

// ---- embedding ----------------------------------------------------------------------------------
TEST_F(CudaOpsTest, EmbeddingMatchesCpuAndIsDeterministic) {
  for (DType t : kActs) {
    for (auto [rows, vocab, ch] : Shapes<3>{{1, 3, 1}, {100, 7, 33}, {1000, 50, 768}, {4097, 50304, 64}}) {
      SCOPED_TRACE(std::string(name(t)) + " rows=" + std::to_string(rows) + " vocab=" + std::to_string(vocab));
      std::vector<int32_t> tokens = indices(rows, static_cast<int32_t>(vocab));  // many repeats for small vocabs
      std::vector<float> table = rand(vocab * ch), out(rows * ch);
      ops::embedding_forward(host(out, {rows, ch}), host(tokens, {rows}), host(table, {vocab, ch}));
      Dev dtok(tokens), dtable(table, DType::f32), dout_(out, t);
      dout_.poison();
      ops::embedding_forward(dout_.t({rows, ch}), dtok.t({rows}), dtable.t({vocab, ch}));
      expect_near_rel("embedding_forward", dout_.read(), wide(round_to(t, out)), 0.0);  // a copy (and one rounding)

      std::vector<float> dout = rand_as(t, rows * ch), grad = rand(vocab * ch);
      Dev ddout(dout, t), dgrad(grad, DType::f32), dgrad2(grad, DType::f32);
      ops::embedding_backward(host(grad, {vocab, ch}), host(tokens, {rows}), host(dout, {rows, ch}));
      ops::embedding_backward(dgrad.t({vocab, ch}), dtok.t({rows}), ddout.t({rows, ch}));
      ops::embedding_backward(dgrad2.t({vocab, ch}), dtok.t({rows}), ddout.t({rows, ch}));
      const std::vector<float> got = dgrad.read();
      expect_near_rel("embedding_backward", got, wide(grad), kF32SumTol);
      expect_bitwise_equal("embedding_backward twice", got, dgrad2.read());
    }
  }
}

// ---- linear (cuBLASLt) ---------------------------------------------------------------------------
TEST_F(CudaOpsTest, LinearMatchesCpu) {
  for (DType t : kActs) {
    for (auto [rows, in, out] : Shapes<3>{{1, 1, 1}, {7, 13, 5}, {64, 768, 768}, {130, 100, 3072}, {33, 768, 50304}}) {
      for (bool bias : {true, false}) {
        SCOPED_TRACE(std::string(name(t)) + " rows=" + std::to_string(rows) + " in=" + std::to_string(in) +
                     " out=" + std::to_string(out) + (bias ? " bias" : ""));
        std::vector<float> x = rand_as(t, rows * in), w = rand_as(t, out * in), b = rand(out);
        std::vector<float> dy = rand_as(t, rows * out), y(rows * out);
        std::vector<float> dx(rows * in), dx_acc = rand_as(t, rows * in), dw = rand(out * in), db = rand(out);
        Dev dx_(x, t), dw_(w, t), db_(b, DType::f32), ddy(dy, t), dyv(y, t), ddx(dx, t), ddx_acc(dx_acc, t);
        Dev ddw(dw, DType::f32), ddb(db, DType::f32);

        ops::linear_forward(host(y, {rows, out}), host(x, {rows, in}), host(w, {out, in}),
                            bias ? host(b, {out}) : Tensor());
        dyv.poison();
        ops::linear_forward(dyv.t({rows, out}), dx_.t({rows, in}), dw_.t({out, in}), bias ? db_.t({out}) : Tensor());
        expect_near_rel("linear_forward", dyv.read(), wide(y), t == DType::f32 ? kF32SumTol : kBf16Two);

        ops::linear_backward(host(dx, {rows, in}), host(dw, {out, in}), bias ? host(db, {out}) : Tensor(),
                             host(dy, {rows, out}), host(x, {rows, in}), host(w, {out, in}), false);
        ops::linear_backward(host(dx_acc, {rows, in}), Tensor(), Tensor(), host(dy, {rows, out}), host(x, {rows, in}),
                             host(w, {out, in}), true);
        ddx.poison();
        ops::linear_backward(ddx.t({rows, in}), ddw.t({out, in}), bias ? ddb.t({out}) : Tensor(), ddy.t({rows, out}),
                             dx_.t({rows, in}), dw_.t({out, in}), false);
        ops::linear_backward(ddx_acc.t({rows, in}), Tensor(), Tensor(), ddy.t({rows, out}), dx_.t({rows, in}),
                             dw_.t({out, in}), true);
        const double tol_dx = t == DType::f32 ? kF32SumTol : kBf16One;
        expect_near_rel("linear_backward dx", ddx.read(), wide(dx), tol_dx);
        expect_near_rel("linear_backward dx accumulated", ddx_acc.read(), wide(dx_acc), tol_dx);
        expect_near_rel("linear_backward dw", ddw.read(), wide(dw), kF32SumTol);
        expect_near_rel("linear_backward db", ddb.read(), wide(db), kF32SumTol);
      }
    }
  }
}

// The LM head's product: bf16 inputs, f32 output (one rounding, to f32: the f32 sum tolerance
// applies, the inputs being exactly the CPU's bf16-rounded values), bias through the epilogue
// (aligned) or the kernel (unaligned: the bias one float into its buffer).
TEST_F(CudaOpsTest, LinearBf16InputsF32OutputMatchesCpu) {
  for (auto [rows, in, out] : Shapes<3>{{1, 1, 1}, {7, 13, 5}, {130, 768, 50304}}) {
    for (int bias_offset : {-1, 0, 1}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " in=" + std::to_string(in) + " out=" + std::to_string(out) +
                   " bias offset " + std::to_string(bias_offset));
      std::vector<float> x = rand_as(DType::bf16, rows * in), w = rand_as(DType::bf16, out * in);
      std::vector<float> b = rand(out + 1), y(rows * out);
      Dev dx(x, DType::bf16), dw(w, DType::bf16), db(b, DType::f32), dy(y, DType::f32);
      const Tensor bias_cpu = bias_offset < 0 ? Tensor() : Tensor::of(b.data() + bias_offset, {out});
      const Tensor bias_dev = bias_offset < 0 ? Tensor()
                                              : Tensor(static_cast<float*>(db.buf.data()) + bias_offset, DType::f32,
                                                       Device::cuda, {out});
      ops::linear_forward(host(y, {rows, out}), host(x, {rows, in}), host(w, {out, in}), bias_cpu);
      dy.poison();
      ops::linear_forward(dy.t({rows, out}), dx.t({rows, in}), dw.t({out, in}), bias_dev);
      expect_near_rel("linear_forward bf16 -> f32", dy.read(), wide(y), kF32SumTol);
    }
  }
}

// f32 <-> bf16 conversion: round to nearest even, exactly as the host's rounding.
TEST_F(CudaOpsTest, ConvertRoundsLikeTheHost) {
  const int64_t n = 10007;
  const std::vector<float> v = rand(n, -3.0, 3.0);
  Dev src(v, DType::f32), half(std::vector<float>(n), DType::bf16), back(std::vector<float>(n), DType::f32);
  half.poison();
  ops::convert(half.t({n}), src.t({n}));
  back.poison();
  ops::convert(back.t({n}), half.t({n}));
  const std::vector<float> want = round_to(DType::bf16, v);
  expect_bitwise_equal("convert f32 -> bf16", half.read(), want);
  expect_bitwise_equal("convert bf16 -> f32", back.read(), want);
}

// ---- soft cap and cross-entropy ---------------------------------------------------------------
TEST_F(CudaOpsTest, SoftcapCrossEntropyMatchesCpu) {
  using Kind = ops::SoftCap::Kind;
  const ops::SoftCap caps[] = {{Kind::algebraic, 15.0, 1.0}, {Kind::sigmoid, 30.0, 7.5 * 27.7128}, {Kind::none, 0.0, 1.0}};
  for (DType t : kActs) {
    for (const ops::SoftCap& cap : caps) {
      for (auto [rows, vocab] : Shapes<2>{{1, 1}, {3, 10}, {9, 1000}, {5, 50304}}) {
        SCOPED_TRACE(std::string(name(t)) + " cap kind " + std::to_string(static_cast<int>(cap.kind)) +
                     " rows=" + std::to_string(rows) + " vocab=" + std::to_string(vocab));
        std::vector<float> z = rand_as(t, rows * vocab, -40.0, 40.0);
        std::vector<int32_t> targets = indices(rows, static_cast<int32_t>(vocab));
        std::vector<float> losses(rows), dz(rows * vocab), capped(rows * vocab);
        ops::softcap_cross_entropy(host(losses, {rows}), host(dz, {rows, vocab}), host(z, {rows, vocab}),
                                   host(targets, {rows}), cap, 0.5);
        ops::softcap_forward(host(capped, {rows, vocab}), host(z, {rows, vocab}), cap);

        Dev dz_(z, t), dtg(targets), dl(losses, DType::f32), ddz(dz, t), dcap(capped, t);
        dl.poison();
        ddz.poison();
        dcap.poison();
        ops::softcap_cross_entropy(dl.t({rows}), ddz.t({rows, vocab}), dz_.t({rows, vocab}), dtg.t({rows}), cap, 0.5);
        ops::softcap_forward(dcap.t({rows, vocab}), dz_.t({rows, vocab}), cap);
        expect_near_rel("losses", dl.read(), wide(losses), kF32Tol);
        // dz = 0.5 (softmax - onehot) * cap': terms of size 0.5 (exactly 0 when vocab is 1).
        expect_near_rel("dz", ddz.read(), wide(dz), t == DType::f32 ? kF32Tol : kBf16One, 0.5);
        expect_near_rel("softcap_forward", dcap.read(), wide(capped), t == DType::f32 ? kF32Tol : kBf16One);
        EXPECT_NEAR(ops::sum_losses(dl.t({rows})), ops::sum_losses(host(losses, {rows})),
                    kF32Tol * (1 + std::fabs(ops::sum_losses(host(losses, {rows})))));

        // Losses only (evaluation), and the gradient in place over the logits (as the model).
        dl.poison();
        ops::softcap_cross_entropy(dl.t({rows}), Tensor(), dz_.t({rows, vocab}), dtg.t({rows}), cap, 0.5);
        expect_near_rel("losses without dz", dl.read(), wide(losses), kF32Tol);
        ops::softcap_cross_entropy(dl.t({rows}), dz_.t({rows, vocab}), dz_.t({rows, vocab}), dtg.t({rows}), cap, 0.5);
        expect_near_rel("dz in place", dz_.read(), wide(dz), t == DType::f32 ? kF32Tol : kBf16One, 0.5);
      }
    }
  }
}

// ---- attention -------------------------------------------------------------------------------------
// Picks the kernels bf16 attention runs on for one scope (cuda::set_attention_kernel),
// restoring the previous choice on exit.
struct AttentionKernelScope {
  cuda::AttentionKernel previous;
  explicit AttentionKernelScope(cuda::AttentionKernel k) : previous(cuda::set_attention_kernel(k)) {}
  ~AttentionKernelScope() { cuda::set_attention_kernel(previous); }
  AttentionKernelScope(const AttentionKernelScope&) = delete;
  AttentionKernelScope& operator=(const AttentionKernelScope&) = delete;
};

// f32 runs on the CUDA-core kernels; bf16 on both: the tensor-core kernels (the default)
// and the CUDA-core ones (SPEEDRUN_ATTENTION=simt).
TEST_F(CudaOpsTest, AttentionMatchesCpu) {
  struct Variant {
    DType t;
    cuda::AttentionKernel kernel;
    const char* name;
  };
  for (const Variant& variant : {Variant{DType::f32, cuda::AttentionKernel::simt, "simt"},
                                 Variant{DType::bf16, cuda::AttentionKernel::tensor_core, "tensor cores"},
                                 Variant{DType::bf16, cuda::AttentionKernel::simt, "simt"}}) {
    const DType t = variant.t;
    const AttentionKernelScope scope(variant.kernel);
    for (auto [B, T, H, D] : Shapes<4>{{1, 1, 1, 64}, {2, 37, 3, 64}, {1, 64, 2, 128}, {2, 130, 2, 128}, {1, 200, 1, 64}}) {
      SCOPED_TRACE(std::string(name(t)) + " (" + variant.name + ") B=" + std::to_string(B) +
                   " T=" + std::to_string(T) + " H=" + std::to_string(H) + " D=" + std::to_string(D));
      const int64_t n = B * T * H * D;
      const double scale = 0.12;
      // QK-normed, rotated inputs have unit-RMS rows: scores of a few units, like the model's.
      std::vector<float> q = rand_as(t, n, -1.7, 1.7), k = rand_as(t, n, -1.7, 1.7), v = rand_as(t, n);
      std::vector<float> out(n), lse(B * H * T);
      ops::attention_forward(host(out, {B, T, H, D}), host(lse, {B, H, T}), host(q, {B, T, H, D}),
                             host(k, {B, T, H, D}), host(v, {B, T, H, D}), scale);
      Dev dq_(q, t), dk_(k, t), dv_(v, t), dout_(out, t), dlse(lse, DType::f32);
      dout_.poison();
      dlse.poison();
      ops::attention_forward(dout_.t({B, T, H, D}), dlse.t({B, H, T}), dq_.t({B, T, H, D}), dk_.t({B, T, H, D}),
                             dv_.t({B, T, H, D}), scale);
      expect_near_rel("attention out", dout_.read(), wide(out), t == DType::f32 ? kF32SumTol : kBf16One);
      expect_near_rel("attention lse", dlse.read(), wide(lse), kF32SumTol);

      // Backward from the same (rounded) out and lse on both sides.
      std::vector<float> o = round_to(t, out), g = rand_as(t, n);
      std::vector<float> gq(n), gk(n), gv(n);
      ops::attention_backward(host(gq, {B, T, H, D}), host(gk, {B, T, H, D}), host(gv, {B, T, H, D}),
                              host(g, {B, T, H, D}), host(q, {B, T, H, D}), host(k, {B, T, H, D}),
                              host(v, {B, T, H, D}), host(o, {B, T, H, D}), host(lse, {B, H, T}), scale);
      Dev dgo(g, t), dout_ref(o, t), dlse_ref(lse, DType::f32), dgq(gq, t), dgk(gk, t), dgv(gv, t);
      dgq.poison();
      dgk.poison();
      dgv.poison();
      ops::attention_backward(dgq.t({B, T, H, D}), dgk.t({B, T, H, D}), dgv.t({B, T, H, D}), dgo.t({B, T, H, D}),
                              dq_.t({B, T, H, D}), dk_.t({B, T, H, D}), dv_.t({B, T, H, D}), dout_ref.t({B, T, H, D}),
                              dlse_ref.t({B, H, T}), scale);
      const double tol = t == DType::f32 ? kF32SumTol : kBf16Two;
      // dq, dk are sums of scale * P (dout.v - delta) * k: with one key (T = 1) exactly zero,
      // the two dot products cancelling; their terms are up to scale * D max|g| max|v| max|k|.
      const double term = T == 1 ? scale * static_cast<double>(D) * max_abs(g) * max_abs(v) * max_abs(k) : 0.0;
      expect_near_rel("attention dq", dgq.read(), wide(gq), tol, term);
      expect_near_rel("attention dk", dgk.read(), wide(gk), tol, term);
      expect_near_rel("attention dv", dgv.read(), wide(gv), tol);
    }
  }
}

TEST_F(CudaOpsTest, RefusesWhatItDoesNotSupport) {
  std::vector<float> x(2 * 3 * 1 * 32);
  Dev d(x, DType::f32), l(std::vector<float>(2 * 3), DType::f32);
  const Tensor q = d.t({2, 3, 1, 32});
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(q, l.t({2, 1, 3}), q, q, q, 0.12), "head_dim 64 and 128");
  Dev lb(std::vector<float>(2 * 3), DType::bf16);
  Dev xb(x, DType::bf16);
  const Tensor qb = xb.t({2, 3, 1, 32});
  EXPECT_INVALID_ARGUMENT(ops::attention_forward(qb, lb.t({2, 1, 3}), qb, qb, qb, 0.12), "lse", "expected f32");
}

}  // namespace
}  // namespace speedrun::test
