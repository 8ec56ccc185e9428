// Timing of work issued on cuda::stream() with CUDA events, for the benches (never used
// inside a training step). Plain C++: host code includes it; defined in
// kernels/runtime/device_timing.cu, CUDA builds only.
#pragma once

namespace speedrun::cuda {

class EventTimer {
 public:
  EventTimer();  // creates the two events
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  // Records the start event on the stream.
  void start();
  // Records the stop event, waits for it (this synchronizes with the stream) and returns
  // the milliseconds between the two events.
  double stop_ms();

 private:
  void* start_ = nullptr;  // cudaEvent_t, kept opaque so that this header needs no CUDA header
  void* stop_ = nullptr;
};

// Waits until everything issued on cuda::stream() has finished.
void synchronize_stream();

}  // namespace speedrun::cuda
