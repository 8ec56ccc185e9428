#include "dist/grad_buckets.h"

#include <stdexcept>
#include <string>

namespace speedrun::dist {

std::vector<std::vector<size_t>> assign_buckets(const std::vector<size_t>& bytes, size_t bucket_bytes) {
  std::vector<std::vector<size_t>> buckets;
  size_t filled = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (buckets.empty() || (bucket_bytes > 0 && filled + bytes[i] > bucket_bytes && filled > 0)) {
      buckets.emplace_back();
      filled = 0;
    }
    buckets.back().push_back(i);
    filled += bytes[i];
  }
  return buckets;
}

GradBucketer::GradBucketer(size_t n_params, Fault fault)
    : users_(n_params), reported_(n_params, false), fault_(fault) {}

size_t GradBucketer::add(std::vector<size_t> params, Start start) {
  const size_t id = collectives_.size();
  for (size_t p : params) {
    if (p >= users_.size())
      throw std::logic_error("grad bucketer: parameter index " + std::to_string(p) + " of a model with " +
                             std::to_string(users_.size()) + " parameters");
    users_[p].push_back(id);
  }
  Collective c;
  c.pending = params.size();
  c.params = std::move(params);
  c.start = std::move(start);
  collectives_.push_back(std::move(c));
  return id;
}

void GradBucketer::launch(Collective& c) {
  if (c.request) return;
  if (fault_ == Fault::skip && &c == &collectives_.front()) {
    c.request = completed_request();
  } else {
    c.request = c.start();
    outstanding_.push_back(static_cast<size_t>(&c - collectives_.data()));
  }
  ++started_;
}

void GradBucketer::gradient_final(size_t index) {
  if (index >= reported_.size())
    throw std::logic_error("grad bucketer: parameter index " + std::to_string(index) + " out of range");
  if (collectives_.empty()) return;  // nothing registered: no step would ever reset the reports
  if (reported_[index])
    throw std::logic_error("grad bucketer: parameter " + std::to_string(index) + " reported final twice in one step");
  reported_[index] = true;
  for (size_t id : users_[index]) {
    Collective& c = collectives_[id];
    --c.pending;
    if (c.pending == 0 || fault_ == Fault::early) launch(c);
  }
  // Let MPI advance what is in flight while the backward goes on.
  for (size_t k = 0; k < outstanding_.size();) {
    if (collectives_[outstanding_[k]].request->test()) {
      ++completed_;
      outstanding_[k] = outstanding_.back();
      outstanding_.pop_back();
    } else {
      ++k;
    }
  }
}

void GradBucketer::wait(size_t id) {
  Collective& c = collectives_.at(id);
  if (c.waited) throw std::logic_error("grad bucketer: collective " + std::to_string(id) + " waited twice in one step");
  if (!waiting_) {
    waiting_ = true;
    started_in_backward_ = started_;
    completed_in_backward_ = completed_;
  }
  launch(c);
  c.request->wait();
  c.waited = true;
  if (++waited_ == collectives_.size()) next_step();
}

void GradBucketer::next_step() {
  for (Collective& c : collectives_) {
    c.request.reset();
    c.pending = c.params.size();
    c.waited = false;
  }
  reported_.assign(reported_.size(), false);
  outstanding_.clear();
  waited_ = started_ = completed_ = 0;
  waiting_ = false;
}

}  // namespace speedrun::dist
