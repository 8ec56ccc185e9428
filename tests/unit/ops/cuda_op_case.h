// The CUDA-vs-CPU harness of the ops tests, in the spirit of ggml's test-backend-ops: a
// case names its arguments (shape, dtype, and the range of their fresh random values),
// runs the op once on the CPU (the reference checked against PyTorch and finite
// differences) and once on the device through the same ops:: call, and compares each
// output with a tolerance whose reason is stated below. Each op's cases live in its test
// file, tests/unit/ops/test_<op>.cpp, next to the op's CPU tests, as
//
//   CUDA_OP_CASE(RotaryMatchesCpu) {
//     for_each_case<4>(kActs, {{1, 1, 1, 64}, {2, 37, 3, 64}}, [&](DType t, auto shape) { ... });
//   }
//
// over shapes that are and are not multiples of the kernels' tiles (32-column tiles,
// 64-row attention tiles, 8-row norm blocks, 512-thread cross-entropy rows). The cases are
// registered (as tests of the suite CudaOpsTest) only in CUDA builds; a CPU-only build
// still compiles them, unregistered. Without a visible device every case reports
// "skipped: no CUDA device" (test_support.h).
//
// Method. Every argument has host values (f32, or i32 indices) and a device buffer of the
// case's dtype holding the same values: inputs are drawn in fp32 and, for bf16 arguments,
// rounded to bf16 first, so that the CPU reference (fp32 on the CPU) sees exactly the
// values the device sees. Outputs are zeros on the host (the CPU op writes them) and NaN
// on the device (so an element the kernel leaves unwritten fails); accumulators start from
// the same random values on both sides.
//
// Tolerances, |got - want| <= tol * (|want_i| + max_j |want_j|) (expect_near_rel):
//  - f32 runs: the device and the CPU sum in different orders. For the elementwise ops,
//    norms, rotary, embedding and cross-entropy 1e-5 (kF32Tol); for the GEMMs and
//    attention (sums of up to a few hundred products, ~sqrt(k) 2^-24 relative each) 1e-4
//    (kF32SumTol).
//  - bf16 runs: bf16 keeps 8 significant bits, so one rounding to nearest moves a value by
//    at most 2^-9 relative (half an ulp; an ulp is 2^-8 relative at worst). The kernels
//    compute in fp32 and round once on store, so one output rounding is allowed as 2^-8
//    (kBf16One: twice the half-ulp, for the fp32 differences on top); ops whose output
//    goes through two roundings (the bf16 linear: product rounded, then bias added and
//    rounded again; attention's backward, whose inputs out/dout are themselves
//    bf16-rounded results) get 2^-7 (kBf16Two). f32 outputs of bf16 runs (lse, losses,
//    rstd, parameter gradients) see only fp32 arithmetic on exact bf16 inputs: 1e-4.
#pragma once

#include <algorithm>
#include <array>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "bf16_host.h"
#include "build_info.h"
#include "core/buffer.h"
#include "core/device_memory.h"
#include "kernels/ops/ops_cuda.h"
#include "ops/ops.h"
#include "test_ops_common.h"
#include "test_support.h"

namespace speedrun::test {

inline constexpr double kF32Tol = 1e-5;
inline constexpr double kF32SumTol = 1e-4;
inline constexpr double kBf16One = 1.0 / 256;  // one bf16 rounding (2^-8)
inline constexpr double kBf16Two = 1.0 / 128;  // two roundings (2^-7)

// The activation dtypes every op case runs.
inline constexpr std::initializer_list<DType> kActs = {DType::f32, DType::bf16};

inline std::vector<float> round_to(DType t, std::vector<float> v) {
  if (t == DType::bf16) {
    for (float& x : v) x = from_bf16_bits(to_bf16_bits(x));
  }
  return v;
}

inline std::vector<double> wide(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// t with the dimensions `shape` (at most Tensor::kMaxDims).
inline Tensor with_shape(Tensor t, const std::vector<int64_t>& shape) {
  t.ndim = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t.dims[i] = shape[i];
  return t;
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
  Tensor t(const std::vector<int64_t>& shape) const {
    return with_shape(Tensor(buf.data(), dtype, Device::cuda, {}), shape);
  }
};

inline Tensor host(std::vector<float>& v, std::initializer_list<int64_t> shape) { return Tensor::of(v.data(), shape); }
inline Tensor host(std::vector<int32_t>& v, std::initializer_list<int64_t> shape) {
  return Tensor::of(v.data(), shape);
}

// One argument of a case on both sides.
struct OpArg {
  std::vector<int64_t> shape;
  DType dtype = DType::f32;
  std::vector<float> values;    // host values (f32 and bf16 arguments)
  std::vector<int32_t> indices;  // host values (i32 arguments)
  Dev dev;

  Tensor cpu() {
    return with_shape(dtype == DType::i32 ? Tensor::of(indices.data(), {}) : Tensor::of(values.data(), {}), shape);
  }
  Tensor cuda() const { return dev.t(shape); }
};

class CudaOpsTest : public OpsTest {
 public:
  // The arguments of one side of a run: side["x"] is x's CPU or device tensor; an empty
  // name is an absent argument (an empty Tensor).
  class Side {
   public:
    Side(CudaOpsTest& test, bool device) : test_(test), device_(device) {}
    Tensor operator[](const std::string& name) const {
      if (name.empty()) return Tensor();
      OpArg& a = test_.arg(name);
      return device_ ? a.cuda() : a.cpu();
    }
    // A view of `shape` starting `offset` elements into the argument (f32 and bf16).
    Tensor at(const std::string& name, int64_t offset, std::initializer_list<int64_t> shape) const {
      OpArg& a = test_.arg(name);
      if (device_)
        return Tensor(static_cast<char*>(a.dev.buf.data()) + offset * dtype_size(a.dtype), a.dtype, Device::cuda,
                      shape);
      return Tensor::of(a.values.data() + offset, shape);
    }
    bool device() const { return device_; }

   private:
    CudaOpsTest& test_;
    bool device_;
  };

 protected:
  void SetUp() override { SKIP_WITHOUT_CUDA(); }

  std::vector<float> rand(int64_t n, double lo = -1.0, double hi = 1.0) {
    const std::vector<double> d = uniform(n, lo, hi);
    return std::vector<float>(d.begin(), d.end());
  }
  std::vector<float> rand_as(DType t, int64_t n, double lo = -1.0, double hi = 1.0) {
    return round_to(t, rand(n, lo, hi));
  }

  // Runs fn(dtype, shape) for every dtype and shape with a trace naming both (and `what`),
  // each time on fresh arguments.
  template <size_t N, class Fn>
  void for_each_case(std::initializer_list<DType> dtypes, Shapes<N> shapes, Fn&& fn, const std::string& what = "") {
    for (DType t : dtypes) {
      for (const std::array<int64_t, N>& shape : shapes) {
        std::string trace = std::string(dtype_name(t)) + " shape (";
        for (size_t i = 0; i < N; ++i) trace += (i ? ", " : "") + std::to_string(shape[i]);
        SCOPED_TRACE(trace + ")" + (what.empty() ? "" : " " + what));
        args_.clear();
        fn(t, shape);
        args_.clear();
      }
    }
  }

  // --- arguments ----------------------------------------------------------------------------
  // Fresh random values in [lo, hi), rounded to t.
  OpArg& input(const std::string& name, DType t, std::vector<int64_t> shape, double lo = -1.0, double hi = 1.0) {
    std::vector<float> values = rand_as(t, numel(shape), lo, hi);
    return add(name, t, std::move(shape), std::move(values));
  }
  // Fresh random i32 indices in [0, limit).
  OpArg& indices_arg(const std::string& name, std::vector<int64_t> shape, int32_t limit) {
    OpArg& a = args_[name];
    a = OpArg{};
    a.shape = std::move(shape);
    a.dtype = DType::i32;
    a.indices = indices(numel(a.shape), limit);
    a.dev = Dev(a.indices);
    return a;
  }
  // Written by the op: zeros on the host, NaN on the device.
  OpArg& output(const std::string& name, DType t, std::vector<int64_t> shape) {
    std::vector<float> zeros(static_cast<size_t>(numel(shape)), 0.0f);
    OpArg& a = add(name, t, std::move(shape), std::move(zeros));
    a.dev.poison();
    return a;
  }
  // Accumulated into by the op: the same fresh random values (rounded to t) on both sides.
  OpArg& accumulator(const std::string& name, DType t, std::vector<int64_t> shape) {
    return input(name, t, std::move(shape));
  }
  // A new argument holding `source`'s values on the CPU side, rounded to t, on both sides:
  // what a backward reads from the CPU's forward, so that both sides start alike.
  OpArg& from_cpu(const std::string& name, const std::string& source, DType t) {
    const OpArg& s = arg(source);
    return add(name, t, s.shape, round_to(t, s.values));
  }
  // A new argument with the same values as `source` on both sides (before any run).
  OpArg& copy_of(const std::string& name, const std::string& source) {
    const OpArg& s = arg(source);
    return add(name, s.dtype, s.shape, s.values);
  }
  void poison(const std::string& name) { arg(name).dev.poison(); }

  // --- runs ---------------------------------------------------------------------------------
  // The op on the CPU, then on the device.
  void run(const std::function<void(const Side&)>& op) {
    op(Side(*this, false));
    op(Side(*this, true));
  }
  // The op on the device only (in-place variants, device-only ops).
  void run_cuda(const std::function<void(const Side&)>& op) { op(Side(*this, true)); }

  // --- comparisons --------------------------------------------------------------------------
  std::vector<float>& cpu(const std::string& name) { return arg(name).values; }
  std::vector<float> device(const std::string& name) { return arg(name).dev.read(); }
  // The device's values of `name` against the CPU's: expect_near_rel with tol, min_scale.
  void expect_near(const std::string& name, double tol, double min_scale = 0) {
    expect_near_rel(name, device(name), wide(cpu(name)), tol, min_scale);
  }

  OpArg& arg(const std::string& name) {
    auto it = args_.find(name);
    if (it == args_.end()) throw std::logic_error("op case: no argument \"" + name + "\"");
    return it->second;
  }

 private:
  static int64_t numel(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  OpArg& add(const std::string& name, DType t, std::vector<int64_t> shape, std::vector<float> values) {
    OpArg& a = args_[name];
    a = OpArg{};
    a.shape = std::move(shape);
    a.dtype = t;
    a.values = std::move(values);
    a.dev = Dev(a.values, t);
    return a;
  }

  std::map<std::string, OpArg> args_;
};

}  // namespace speedrun::test

// Registers a CUDA-vs-CPU case of the suite CudaOpsTest. Without the CUDA backend the body
// is compiled (so it stays in step with the ops API) but not registered: the binary has
// no device to run it on.
#if SPEEDRUN_HAVE_CUDA
#define CUDA_OP_CASE(name) TEST_F(CudaOpsTest, name)
#else
#define CUDA_OP_CASE(name)                                              \
  class CudaOpsTest_##name##_Unregistered : public CudaOpsTest {        \
    void TestBody() override;                                           \
  };                                                                    \
  void CudaOpsTest_##name##_Unregistered::TestBody()
#endif
