// Helpers the optimizers share to export and import their state (optim/optimizer.h
// export_state / import_state): building StateTensors, gathering the matrix optimizers'
// round-robin momentum to every rank, and copying device state to and from the host.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "optim/optimizer.h"

namespace speedrun::optim {

StateTensor f32_state(std::string name, std::vector<int64_t> shape, std::vector<float> values);
StateTensor i64_state(std::string name, int64_t value);

// The host copy of `n` f32 values at `src`, on `device` (a synchronous copy from CUDA).
std::vector<float> to_host(const float* src, int64_t n, Device device);
// Copies n host floats to `dst` on `device`.
void from_host(float* dst, const float* src, int64_t n, Device device);

class MatrixSharding;

// The momentum of a round-robin matrix optimizer (Muon, RMNP, Newton-Muon), whole:
// "<param name>.momentum_buffer" (torch's name) per parameter, broadcast from its owner
// (sharding.owner(k)), so every rank returns every matrix. On the CPU `cpu[k]` holds the
// momentum of each owned matrix; on CUDA (`device` non-empty) device[j] is the j-th owned
// matrix's momentum (owned matrices in parameter order, as DeviceMatrixSharding hands them).
std::vector<StateTensor> export_momentum(const std::vector<ParamRef>& params, const MatrixSharding& sharding,
                                         dist::Communicator& comm, const std::vector<std::vector<float>>& cpu,
                                         const std::vector<Tensor>& device);
// The inverse: each rank reads the momentum of the matrices it owns into `cpu` or `device`.
void import_momentum(const StateSource& source, const std::vector<ParamRef>& params, const MatrixSharding& sharding,
                     std::vector<std::vector<float>>& cpu, const std::vector<Tensor>& device);

// The shape of a tensor as a vector (what StateSource reads compare against).
std::vector<int64_t> shape_of(const Tensor& t);

}  // namespace speedrun::optim
