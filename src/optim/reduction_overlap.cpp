#include "optim/reduction_overlap.h"

#include <algorithm>
#include <cmath>

#include <spdlog/spdlog.h>

#include "dist/fault_injection.h"

namespace speedrun::optim {

size_t grad_bucket_bytes(double bucket_mb) {
  // A positive size, however small, means buckets (of one parameter each), never "off".
  if (!(bucket_mb > 0.0)) return 0;
  return std::max<size_t>(1, static_cast<size_t>(std::llround(bucket_mb * 1048576.0)));
}

std::unique_ptr<dist::GradBucketer> overlap_gradient_reduction(std::vector<std::unique_ptr<Optimizer>>& optimizers,
                                                               size_t n_params, int world, double bucket_mb) {
  const size_t bytes = grad_bucket_bytes(bucket_mb);
  if (world == 1 || bytes == 0) {
    if (world > 1) spdlog::info("gradient reduction: after the backward (train.grad_bucket_mb 0)");
    return nullptr;
  }
  auto bucketer = std::make_unique<dist::GradBucketer>(n_params, dist::bucket_fault_for_test());
  for (auto& opt : optimizers) opt->overlap_reduction(*bucketer);
  spdlog::info("gradient reduction: {} collective(s) (buckets of {} MiB), each started as soon as the last "
               "micro-batch's backward has finished its gradients",
               bucketer->collectives(), bucket_mb);
  return bucketer;
}

}  // namespace speedrun::optim
