// Strict loading of flat YAML config files: every key must be known and well-typed.
#pragma once

#include <functional>
#include <map>
#include <string>

namespace ktl {

// A setter gets the raw scalar text and parses it, throwing std::invalid_argument on a bad value.
using ConfigSetter = std::function<void(const std::string& value)>;

// Reads `path` (a flat mapping of scalars) and calls setters[key](value) for every key.
// Throws std::runtime_error "path: unknown key 'x'" / "path: key 'x': <why>".
void load_flat_yaml(const std::string& path, const std::map<std::string, ConfigSetter>& setters);

// Typed parsers for setters: throw std::invalid_argument("expected an integer, got 'abc'").
int parse_int(const std::string& v);
long long parse_int64(const std::string& v);
double parse_double(const std::string& v);
bool parse_bool(const std::string& v);

}  // namespace ktl
