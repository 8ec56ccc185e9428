// What CUDA this process can see: the devices, or why there are none.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace speedrun {

struct CudaDevice {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  size_t total_memory = 0;
  size_t free_memory = 0;
  int sm_count = 0;
};

struct CudaStatus {
  bool built_with_cuda = false;
  std::vector<CudaDevice> devices;
  std::string no_device_reason;  // set when devices is empty: no driver, a driver too old, no device...
  std::string runtime_version;   // e.g. "13.0"
  std::string driver_version;    // the CUDA version the driver supports; "none" without a driver
  std::string cublas_version, cusolver_version, nccl_version;
};

// Never throws: a missing driver or device is reported in no_device_reason.
CudaStatus query_cuda();

}  // namespace speedrun
