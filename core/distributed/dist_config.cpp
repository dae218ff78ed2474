#include "core/distributed/dist_config.h"

#include <cstdlib>
#include <stdexcept>

extern char** environ;

namespace ktl {

namespace {

int parse_int(const std::string& name, const std::string& v) {
  size_t used = 0;
  int x = 0;
  try {
    x = std::stoi(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty())
    throw std::invalid_argument(name + ": expected an integer, got '" + v + "'");
  return x;
}

}  // namespace

void DistConfig::validate() const {
  if (world_size < 1) throw std::invalid_argument("WORLD_SIZE must be >= 1");
  if (rank < 0 || rank >= world_size)
    throw std::invalid_argument("RANK " + std::to_string(rank) + " is outside [0, WORLD_SIZE " +
                                std::to_string(world_size) + ")");
  if (local_rank < 0 || local_world_size < 1 || local_rank >= local_world_size)
    throw std::invalid_argument("LOCAL_RANK " + std::to_string(local_rank) +
                                " is outside [0, LOCAL_WORLD_SIZE " +
                                std::to_string(local_world_size) + ")");
  if (master_port < 1 || master_port > 65535)
    throw std::invalid_argument("MASTER_PORT must be in 1..65535");
  if (master_addr.empty()) throw std::invalid_argument("MASTER_ADDR is empty");
  if (backend != "auto" && backend != "gloo" && backend != "nccl")
    throw std::invalid_argument("distributed backend must be auto, gloo or nccl, got '" + backend +
                                "'");
  if (timeout_s < 1) throw std::invalid_argument("distributed timeout must be >= 1 second");
  if (!(bucket_mb > 0)) throw std::invalid_argument("bucket size must be > 0 MB");
}

DistConfig dist_config_from_env(const std::map<std::string, std::string>& env) {
  DistConfig c;
  auto get = [&](const char* k) -> const std::string* {
    auto it = env.find(k);
    return it == env.end() || it->second.empty() ? nullptr : &it->second;
  };
  if (auto v = get("WORLD_SIZE")) c.world_size = parse_int("WORLD_SIZE", *v);
  if (auto v = get("RANK"))
    c.rank = parse_int("RANK", *v);
  else if (c.world_size > 1)
    throw std::invalid_argument("WORLD_SIZE is " + std::to_string(c.world_size) +
                                " but RANK is not set (each process needs its own RANK)");
  if (auto v = get("LOCAL_RANK")) c.local_rank = parse_int("LOCAL_RANK", *v);
  c.local_world_size = c.world_size;  // one machine unless told otherwise
  if (auto v = get("LOCAL_WORLD_SIZE")) c.local_world_size = parse_int("LOCAL_WORLD_SIZE", *v);
  if (auto v = get("MASTER_ADDR")) c.master_addr = *v;
  if (auto v = get("MASTER_PORT")) c.master_port = parse_int("MASTER_PORT", *v);
  if (auto v = get("KTL_DIST_BACKEND")) c.backend = *v;
  if (auto v = get("KTL_DIST_TIMEOUT")) c.timeout_s = parse_int("KTL_DIST_TIMEOUT", *v);
  if (auto v = get("KTL_DIST_BUCKET_MB")) c.bucket_mb = std::atof(v->c_str());
  if (auto v = get("KTL_DIST_OVERLAP")) c.overlap = *v != "0" && *v != "false";
  c.validate();
  return c;
}

DistConfig dist_config_from_environ() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string kv = *e;
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return dist_config_from_env(env);
}

}  // namespace ktl
