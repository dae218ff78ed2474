#include "core/base/yaml_config.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <stdexcept>

namespace ktl {

int parse_int(const std::string& v) {
  long long x = parse_int64(v);
  if (x < -2147483648LL || x > 2147483647LL)
    throw std::invalid_argument("integer out of range: '" + v + "'");
  return static_cast<int>(x);
}

long long parse_int64(const std::string& v) {
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno)
    throw std::invalid_argument("expected an integer, got '" + v + "'");
  return x;
}

double parse_double(const std::string& v) {
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0') throw std::invalid_argument("expected a number, got '" + v + "'");
  return x;
}

bool parse_bool(const std::string& v) {
  if (v == "true" || v == "True" || v == "yes" || v == "1") return true;
  if (v == "false" || v == "False" || v == "no" || v == "0") return false;
  throw std::invalid_argument("expected true or false, got '" + v + "'");
}

void load_flat_yaml(const std::string& path, const std::map<std::string, ConfigSetter>& setters) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw std::runtime_error(path + ": cannot open config file");
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(path + ": invalid YAML: " + e.what());
  }
  if (root.IsNull()) return;
  if (!root.IsMap()) throw std::runtime_error(path + ": expected a mapping of key: value");
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    auto it = setters.find(key);
    if (it == setters.end()) throw std::runtime_error(path + ": unknown key '" + key + "'");
    if (!kv.second.IsScalar())
      throw std::runtime_error(path + ": key '" + key + "': expected a scalar value");
    try {
      it->second(kv.second.Scalar());
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(path + ": key '" + key + "': " + e.what());
    }
  }
}

}  // namespace ktl
