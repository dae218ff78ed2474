// LlmEngine's LoRA adapter registry: load, unload, list, and the per-request counts that let an
// unloaded adapter drain (engine.h).
#include <c10/core/InferenceMode.h>

#include <cctype>
#include <chrono>

#include "core/adapters/lora_adapter.h"
#include "core/engine/active_request.h"
#include "core/engine/engine_lora.h"
#include "core/engine/llm_engine.h"

namespace ktl {

using Clock = std::chrono::steady_clock;

namespace {

// Names go into URLs (DELETE /v1/adapters/NAME) and the "model" field: a safe set of characters.
void check_adapter_name(const std::string& name) {
  const bool ok =
      !name.empty() && name.size() <= 128 && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
               c == ':';
      });
  if (!ok)
    throw std::invalid_argument("adapter name '" + name +
                                "' must be 1-128 characters of A-Z a-z 0-9 - _ . :");
}

std::vector<std::string> target_names(const LoraConfig& c) {
  std::vector<std::string> out;
  for (LoraTarget t : c.targets) out.emplace_back(lora_target_short_name(t));
  return out;
}

}  // namespace

AdapterInfo LlmEngine::load_adapter(const std::string& name, const std::string& dir) {
  check_adapter_name(name);
  auto check_free = [&] {  // under adapters_mu_
    if (name == name_) throw AdapterConflict("'" + name + "' is the base model's name");
    if (adapters_.count(name))
      throw AdapterConflict("an adapter named '" + name + "' is already loaded" +
                            (adapters_.at(name)->info.draining ? " (draining)" : ""));
  };
  {
    std::lock_guard<std::mutex> lk(adapters_mu_);
    check_free();
  }
  const auto t0 = Clock::now();
  auto a = std::make_shared<ServedAdapter>();
  try {  // on this (the caller's) thread: the engine thread keeps stepping meanwhile
    c10::InferenceMode inference;
    const LoraAdapter lora = load_peft_adapter(dir, model_->config());
    // bf16 adapter weights on a bf16 / int8 base's CPU fast path: half the bytes a step reads.
    const bool bf16 = model_->dtype() != WeightDtype::kFp32 && !model_->torch_ops();
    a->weights = std::make_shared<const EngineLora>(lora, model_->config(), model_->device(),
                                                    bf16 ? torch::kBFloat16 : torch::kFloat32);
    a->info.rank = lora.config.rank;
    a->info.alpha = lora.config.alpha;
    a->info.targets = target_names(lora.config);
  } catch (const std::exception& e) {
    throw std::runtime_error(e.what());
  }
  a->info.name = name;
  a->info.path = dir;
  a->info.bytes = a->weights->bytes();
  a->info.load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  std::lock_guard<std::mutex> lk(adapters_mu_);
  check_free();  // another thread may have taken the name meanwhile
  a->salt = next_adapter_salt_++;
  adapters_[name] = a;
  return a->info;
}

AdapterUnload LlmEngine::unload_adapter(const std::string& name) {
  std::lock_guard<std::mutex> lk(adapters_mu_);
  auto it = adapters_.find(name);
  if (it == adapters_.end()) return AdapterUnload::kNotFound;
  if (it->second->info.in_flight == 0) {
    adapters_.erase(it);  // requests hold their own reference: none does now
    return AdapterUnload::kUnloaded;
  }
  it->second->info.draining = true;
  return AdapterUnload::kDraining;
}

std::vector<AdapterInfo> LlmEngine::adapters() const {
  std::lock_guard<std::mutex> lk(adapters_mu_);
  std::vector<AdapterInfo> out;
  for (const auto& [name, a] : adapters_) out.push_back(a->info);
  return out;
}

std::shared_ptr<ServedAdapter> LlmEngine::acquire_adapter(const std::string& name, int n) {
  if (name.empty()) return nullptr;
  std::lock_guard<std::mutex> lk(adapters_mu_);
  auto it = adapters_.find(name);
  if (it == adapters_.end()) throw AdapterNotFound("adapter '" + name + "' is not loaded");
  if (it->second->info.draining) throw AdapterNotFound("adapter '" + name + "' is being unloaded");
  it->second->info.in_flight += n;
  it->second->info.requests_total += static_cast<uint64_t>(n);
  return it->second;
}

void LlmEngine::release_adapter(const std::shared_ptr<ServedAdapter>& a) {
  std::lock_guard<std::mutex> lk(adapters_mu_);
  if (--a->info.in_flight > 0 || !a->info.draining) return;
  auto it = adapters_.find(a->info.name);
  if (it != adapters_.end() && it->second == a) adapters_.erase(it);
}

}  // namespace ktl
