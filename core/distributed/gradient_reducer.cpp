#include "core/distributed/gradient_reducer.h"

#include <torch/torch.h>

#include <chrono>

namespace ktl {

GradientReducer::GradientReducer(std::shared_ptr<ProcessGroup> pg,
                                 std::vector<torch::Tensor> params, double bucket_mb, bool overlap)
    : pg_(std::move(pg)), params_(std::move(params)), overlap_(overlap) {
  const int64_t cap = std::max<int64_t>(1, int64_t(bucket_mb * 1024 * 1024));
  bucket_of_.resize(params_.size());
  offset_of_.resize(params_.size());
  copied_.assign(params_.size(), 0);
  // Reverse order: the output layers' gradients are ready first in backward.
  std::vector<std::vector<size_t>> groups;
  int64_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    const int64_t nb = p.numel() * int64_t(p.element_size());
    const bool fits = !groups.empty() && bytes + nb <= cap &&
                      params_[groups.back().front()].scalar_type() == p.scalar_type() &&
                      params_[groups.back().front()].device() == p.device();
    if (!fits) groups.emplace_back(), bytes = 0;
    groups.back().push_back(k);
    bytes += nb;
  }
  for (auto& g : groups) {
    Bucket b;
    int64_t n = 0;
    for (size_t k : g) {
      bucket_of_[k] = buckets_.size();
      offset_of_[k] = size_t(n);
      n += params_[k].numel();
    }
    b.flat = torch::zeros({n}, params_[g.front()].options().requires_grad(false));  // [numel]
    b.params = std::move(g);
    stats_.bytes += n * int64_t(b.flat.element_size());
    buckets_.push_back(std::move(b));
  }
  stats_.buckets = int(buckets_.size());
  if (overlap_)
    for (size_t k = 0; k < params_.size(); ++k)
      hook_ids_.push_back(params_[k].register_hook([this, k](torch::Tensor grad) {
        on_grad(k, grad);
        return grad;  // unchanged: .grad keeps the local sum until finish()
      }));
}

GradientReducer::~GradientReducer() {
  for (size_t k = 0; k < hook_ids_.size(); ++k) params_[k].remove_hook(hook_ids_[k]);
}

void GradientReducer::arm(bool sync) {
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = sync && overlap_;
}

void GradientReducer::copy_in(size_t k, const torch::Tensor& grad) {
  torch::NoGradGuard no_grad;
  auto& b = buckets_[bucket_of_[k]];
  auto slot = b.flat.narrow(0, int64_t(offset_of_[k]), params_[k].numel());
  const auto& acc = params_[k].grad();  // gradient of earlier micro-batches (or undefined)
  if (grad.defined() && acc.defined())
    torch::add_out(slot, acc.reshape({-1}), grad.reshape({-1}));
  else if (grad.defined())
    slot.copy_(grad.reshape({-1}));
  else if (acc.defined())
    slot.copy_(acc.reshape({-1}));
  else
    slot.zero_();
  copied_[k] = 1;
  ++b.ready;
}

void GradientReducer::on_grad(size_t k, const torch::Tensor& grad) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!armed_ || copied_[k]) return;  // a second call would mean a re-used leaf: finish() redoes it
  copy_in(k, grad);
  launch_ready_locked();
}

void GradientReducer::launch_ready_locked() {
  while (next_launch_ < buckets_.size() &&
         buckets_[next_launch_].ready == buckets_[next_launch_].params.size()) {
    auto& b = buckets_[next_launch_++];
    b.work = pg_->allreduce_sum_async(b.flat);
    if (armed_) ++launched_now_;
  }
}

void GradientReducer::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
    // Parameters whose hook did not run (unused in this step, or overlap off).
    for (size_t k = 0; k < params_.size(); ++k)
      if (!copied_[k]) copy_in(k, torch::Tensor());
    launch_ready_locked();
  }
  torch::NoGradGuard no_grad;
  const double inv = 1.0 / double(pg_->world_size());
  for (auto& b : buckets_) {
    b.work->wait();
    b.work.reset();
    b.flat.mul_(inv);
    for (size_t k : b.params) {
      auto& p = params_[k];
      auto avg = b.flat.narrow(0, int64_t(offset_of_[k]), p.numel()).view(p.sizes());
      if (p.grad().defined())
        p.mutable_grad().copy_(avg);
      else
        p.mutable_grad() = avg.clone();
    }
    b.ready = 0;
  }
  std::fill(copied_.begin(), copied_.end(), 0);
  next_launch_ = 0;
  stats_.wait_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats_.launched_early = launched_now_;
  launched_now_ = 0;
}

double GradientReducer::probe_allreduce_seconds(int reps) {
  torch::NoGradGuard no_grad;
  auto probe = torch::zeros({std::max<int64_t>(1, stats_.bytes / 4)},
                            params_.front().options().dtype(torch::kFloat32));  // [bytes / 4]
  auto token = torch::zeros({1}, probe.options());
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    pg_->allreduce_sum(token);  // line the ranks up first
    const auto t0 = std::chrono::steady_clock::now();
    pg_->allreduce_sum(probe);
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

void GradientReducer::broadcast_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& p : params_) {
    auto t = p.detach();
    if (t.is_contiguous()) {
      pg_->broadcast(t, 0);
    } else {
      auto c = t.contiguous();
      pg_->broadcast(c, 0);
      t.copy_(c);
    }
  }
}

}  // namespace ktl
