// The CUDA optimizers' device classes and helpers (kernels/optim/optim_cuda.h) for binaries
// built without CUDA, so that the optimizers (src/optim/*.cpp) are the same code in both
// builds. Nothing reaches them in such a binary: group_device (optim/device_path.h) refuses
// CUDA parameters there first. Should one be reached anyway, it throws std::logic_error
// naming itself ("built without CUDA"). Compiled only when the CUDA backend is not
// (CMakeLists.txt drops *_cpu_only.cpp from CUDA builds).
#include <stdexcept>
#include <string>

#include "kernels/optim/optim_cuda.h"

namespace speedrun::cuda {
namespace {

[[noreturn]] void no_cuda(const char* entry) {
  throw std::logic_error(std::string("cuda::") + entry + ": this binary was built without CUDA");
}

}  // namespace

struct AdamWDevice::Impl {};
AdamWDevice::AdamWDevice(const std::vector<AdamWSegment>&) { no_cuda("AdamWDevice"); }
AdamWDevice::~AdamWDevice() = default;
void AdamWDevice::step(const AdamWScalars&) { no_cuda("AdamWDevice::step"); }
size_t AdamWDevice::state_bytes() const { no_cuda("AdamWDevice::state_bytes"); }
Tensor AdamWDevice::first_moment() { no_cuda("AdamWDevice::first_moment"); }
Tensor AdamWDevice::second_moment() { no_cuda("AdamWDevice::second_moment"); }

struct MuonDevice::Impl {};
MuonDevice::MuonDevice(const std::vector<DeviceMatrix>&, const NewtonSchulzCoefficients&, bool) {
  no_cuda("MuonDevice");
}
MuonDevice::~MuonDevice() = default;
void MuonDevice::step(float, double, double) { no_cuda("MuonDevice::step"); }
size_t MuonDevice::state_bytes() const { no_cuda("MuonDevice::state_bytes"); }
std::vector<Tensor> MuonDevice::momentum() { no_cuda("MuonDevice::momentum"); }
double MuonDevice::newton_schulz_flops() const { no_cuda("MuonDevice::newton_schulz_flops"); }
void MuonDevice::newton_schulz_only() { no_cuda("MuonDevice::newton_schulz_only"); }

struct NewtonMuonStatsDevice::Impl {};
NewtonMuonStatsDevice::NewtonMuonStatsDevice(const std::vector<StatisticShape>&, const std::vector<PreconditionJob>&,
                                             double) {
  no_cuda("NewtonMuonStatsDevice");
}
NewtonMuonStatsDevice::~NewtonMuonStatsDevice() = default;
void NewtonMuonStatsDevice::accumulate(size_t, const Tensor&) { no_cuda("NewtonMuonStatsDevice::accumulate"); }
void NewtonMuonStatsDevice::refresh(double, double, double) { no_cuda("NewtonMuonStatsDevice::refresh"); }
std::vector<Tensor> NewtonMuonStatsDevice::accumulators() { no_cuda("NewtonMuonStatsDevice::accumulators"); }
void NewtonMuonStatsDevice::precondition() { no_cuda("NewtonMuonStatsDevice::precondition"); }
int64_t NewtonMuonStatsDevice::failures() const { no_cuda("NewtonMuonStatsDevice::failures"); }
size_t NewtonMuonStatsDevice::state_bytes() const { no_cuda("NewtonMuonStatsDevice::state_bytes"); }
void NewtonMuonStatsDevice::set_failures(int64_t) { no_cuda("NewtonMuonStatsDevice::set_failures"); }
Tensor NewtonMuonStatsDevice::covariance(size_t) { no_cuda("NewtonMuonStatsDevice::covariance"); }
Tensor NewtonMuonStatsDevice::inverse(size_t) { no_cuda("NewtonMuonStatsDevice::inverse"); }

struct RmnpDevice::Impl {};
RmnpDevice::RmnpDevice(const std::vector<DeviceMatrix>&, bool) { no_cuda("RmnpDevice"); }
RmnpDevice::~RmnpDevice() = default;
void RmnpDevice::step(float, float, double, double) { no_cuda("RmnpDevice::step"); }
size_t RmnpDevice::state_bytes() const { no_cuda("RmnpDevice::state_bytes"); }
std::vector<Tensor> RmnpDevice::momentum() { no_cuda("RmnpDevice::momentum"); }

// Poisoning scratch is a test setting, not device work: the flag is kept as in CUDA builds.
namespace {
bool g_poison_scratch = false;
}  // namespace
void set_poison_scratch(bool on) { g_poison_scratch = on; }
bool poison_scratch() { return g_poison_scratch; }

void copy_device_async(float*, const float*, int64_t) { no_cuda("copy_device_async"); }
void copy_state(void*, const void*, size_t) { no_cuda("copy_state"); }
void zero_device_async(float*, int64_t) { no_cuda("zero_device_async"); }
double time_device_ms(const std::function<void()>&, int, int) { no_cuda("time_device_ms"); }

}  // namespace speedrun::cuda
