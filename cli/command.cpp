#include "cli/command.h"

#include <cstdlib>
#include <sstream>

namespace ktl::cli {

bool Args::has(const std::string& name) const {
  for (const auto& [k, v] : items_)
    if (k == name) return true;
  return false;
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  std::string out = fallback;
  for (const auto& [k, v] : items_)
    if (k == name) out = v;  // last one wins
  return out;
}

std::vector<std::string> Args::get_all(const std::string& name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : items_)
    if (k == name) out.push_back(v);
  return out;
}

long long Args::get_int(const std::string& name, long long fallback) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  char* end = nullptr;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0')
    throw UsageError("--" + name + " expects an integer, got '" + v + "'");
  return x;
}

double Args::get_double(const std::string& name, double fallback) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0')
    throw UsageError("--" + name + " expects a number, got '" + v + "'");
  return x;
}

bool Args::get_bool(const std::string& name) const {
  if (!has(name)) return false;
  const std::string v = get(name);
  if (v == "true" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "no") return false;
  throw UsageError("--" + name + " expects true or false, got '" + v + "'");
}

std::map<std::string, Command>& registry() {
  static std::map<std::string, Command> r;
  return r;
}

bool register_command(Command c) {
  registry()[c.name] = std::move(c);
  return true;
}

Args parse_args(const Command& c, int argc, char** argv) {
  Args args;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if ((a.rfind("--", 0) != 0 || a.size() == 2) && !c.positional.empty() &&
        !args.has(c.positional)) {  // `ktl doctor DIR`: the bare argument fills its flag
      args.add(c.positional, a);
      continue;
    }
    if (a.rfind("--", 0) != 0 || a.size() == 2)
      throw UsageError("unexpected argument '" + a + "' (flags start with --)");
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    const Flag* flag = nullptr;
    for (const auto& f : c.flags)
      if (f.name == name) flag = &f;
    if (!flag && !c.accepts_unknown_flags)
      throw UsageError("unknown flag --" + name + " (see 'ktl " + c.name + " --help')");
    if (flag && flag->is_bool) {
      args.add(name, has_value ? value : "true");
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) throw UsageError("flag --" + name + " needs a value");
      value = argv[++i];
    }
    if (flag && !flag->repeatable && args.has(name))
      throw UsageError("flag --" + name + " given twice");
    args.add(name, value);
  }
  for (const auto& f : c.flags)
    if (f.required && !args.has(f.name)) throw UsageError("missing required flag --" + f.name);
  return args;
}

std::string command_help(const Command& c) {
  std::ostringstream os;
  os << "usage: ktl " << c.name << (c.positional.empty() ? "" : " [" + c.positional + "]")
     << " [flags]\n\n"
     << c.summary << "\n";
  if (!c.flags.empty()) os << "\nflags:\n";
  for (const auto& f : c.flags) {
    std::string left = "  --" + f.name + (f.is_bool ? "" : " VALUE");
    if (left.size() < 28)
      left.resize(28, ' ');
    else
      left += "\n" + std::string(28, ' ');
    os << left << f.help;
    if (f.required) os << " (required)";
    if (!f.default_value.empty()) os << " [default: " << f.default_value << "]";
    if (f.repeatable) os << " (repeatable)";
    os << "\n";
  }
  return os.str();
}

}  // namespace ktl::cli
