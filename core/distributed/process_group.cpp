#include "core/distributed/process_group.h"

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#if defined(USE_C10D_GLOO)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/version.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>

namespace ktl {

namespace {

// LibTorch 2.x split ProcessGroup into a dispatcher over Backend objects; the concrete groups
// (Gloo, NCCL) derive from Backend there and from ProcessGroup in 1.13.
#if TORCH_VERSION_MAJOR >= 2
using C10dGroup = c10d::Backend;
#else
using C10dGroup = c10d::ProcessGroup;
#endif

std::string describe(const DistConfig& c) {
  return "rank " + std::to_string(c.rank) + "/" + std::to_string(c.world_size) + " (" +
         c.master_addr + ":" + std::to_string(c.master_port) + ")";
}

class C10dWork : public DistWork {
 public:
  C10dWork(c10::intrusive_ptr<c10d::Work> w, std::string what)
      : work_(std::move(w)), what_(std::move(what)) {}
  void wait() override {
    try {
      work_->wait();
    } catch (const std::exception& e) {
      throw DistError(what_ + " failed (a peer rank probably died or timed out): " + e.what());
    }
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::string what_;
};

class C10dProcessGroup : public ProcessGroup {
 public:
  C10dProcessGroup(DistConfig c, std::string backend, c10::intrusive_ptr<c10d::Store> store,
                   c10::intrusive_ptr<C10dGroup> pg, torch::Device scalar_device)
      : ProcessGroup(std::move(c), std::move(backend)),
        store_(std::move(store)),
        pg_(std::move(pg)) {
    scalar_device_ = scalar_device;
  }

  std::unique_ptr<DistWork> allreduce_sum_async(torch::Tensor& t) override {
    std::vector<at::Tensor> v{t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    return launch([&] { return pg_->allreduce(v, o); }, "all-reduce");
  }

  std::unique_ptr<DistWork> broadcast_async(torch::Tensor& t, int root) override {
    std::vector<at::Tensor> v{t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    return launch([&] { return pg_->broadcast(v, o); }, "broadcast");
  }

 private:
  template <class F>
  std::unique_ptr<DistWork> launch(F&& f, const char* what) {
    const std::string label = std::string(what) + " on " + describe(config_);
    try {
      return std::make_unique<C10dWork>(f(), label);
    } catch (const std::exception& e) {
      throw DistError(label + " failed (a peer rank probably died or timed out): " + e.what());
    }
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<C10dGroup> pg_;
};

bool gloo_built() {
#if defined(USE_C10D_GLOO)
  return true;
#else
  return false;
#endif
}

bool nccl_built() {
#if defined(USE_C10D_NCCL)
  return true;
#else
  return false;
#endif
}

}  // namespace

bool ProcessGroup::available(const torch::Device& device, std::string* why) {
  if (device.is_cpu()) {
    if (gloo_built()) return true;
    if (why) *why = "this build has no Gloo (install libgloo-dev and rebuild)";
    return false;
  }
  if (device.is_cuda()) {
    if (nccl_built()) return true;
    if (why) *why = "this build has no NCCL (LibTorch without USE_C10D_NCCL): use --device cpu";
    return false;
  }
  if (why) *why = "no c10d backend for device " + device.str() + " (use cpu or cuda)";
  return false;
}

double ProcessGroup::sum(double x) {
  auto t = torch::full({1}, x, torch::TensorOptions().dtype(torch::kFloat64));
  if (!scalar_device_.is_cpu()) t = t.to(scalar_device_);
  allreduce_sum(t);
  return t.to(torch::kCPU).item<double>();
}

std::shared_ptr<ProcessGroup> ProcessGroup::connect(const DistConfig& c,
                                                    const torch::Device& device) {
  c.validate();
  std::string backend = c.backend;
  if (backend == "auto") backend = device.is_cuda() && nccl_built() ? "nccl" : "gloo";
  if (backend == "nccl" && !nccl_built())
    throw DistError("backend nccl requested but this LibTorch has no NCCL");
  if (backend == "gloo" && !gloo_built())
    throw DistError("backend gloo requested but this build has no Gloo (install libgloo-dev)");
  if (backend == "gloo" && !device.is_cpu())
    throw DistError("the gloo backend here reduces CPU tensors; train on --device cpu or use nccl");
  const auto timeout = std::chrono::milliseconds(int64_t(c.timeout_s) * 1000);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions o;
    o.port = uint16_t(c.master_port);
    o.isServer = c.rank == 0;
    o.numWorkers = size_t(c.world_size);
    o.waitWorkers = true;
    o.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(c.master_addr, o);
  } catch (const std::exception& e) {
    throw DistError("rendezvous at " + c.master_addr + ":" + std::to_string(c.master_port) +
                    " failed for rank " + std::to_string(c.rank) + " within " +
                    std::to_string(c.timeout_s) + " s: " + e.what());
  }
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("ktl/" + backend, store);
  c10::intrusive_ptr<C10dGroup> pg;
  try {
    if (backend == "gloo") {
#if defined(USE_C10D_GLOO)
      auto o = c10d::ProcessGroupGloo::Options::create(timeout);
      // GLOO_SOCKET_IFNAME (as in PyTorch) picks the interface; else 127.0.0.1 for one
      // machine, and the interface the host name resolves to across machines.
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      const bool local = c.master_addr == "127.0.0.1" || c.master_addr == "localhost";
      if (ifname && *ifname)
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (local)
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, c.rank, c.world_size, o);
#endif
    } else {
#if defined(USE_C10D_NCCL)
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = timeout;
      pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, c.rank, c.world_size, o);
#endif
    }
  } catch (const std::exception& e) {
    throw DistError("creating the " + backend + " process group failed for " + describe(c) + ": " +
                    e.what());
  }
  return std::make_shared<C10dProcessGroup>(
      c, backend, store, pg, backend == "nccl" ? device : torch::Device(torch::kCPU));
}

}  // namespace ktl
