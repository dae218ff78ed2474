#include "server/allowed_paths.h"

#include <system_error>

namespace ktl::server {
namespace fs = std::filesystem;

namespace {

bool is_within(const fs::path& root, const fs::path& p) {
  auto q = p.begin();
  for (auto r = root.begin(); r != root.end(); ++r) {
    if (r->empty()) continue;
    if (q == p.end() || *q != *r) return false;
    ++q;
  }
  return true;
}

}  // namespace

std::optional<fs::path> confine_path(const std::string& path, const fs::path& base,
                                     const std::vector<fs::path>& roots) {
  if (path.empty() || path.find('\0') != std::string::npos) return std::nullopt;
  std::error_code ec;
  fs::path p = fs::path(path).is_absolute() ? fs::path(path) : base / path;
  fs::path canon = fs::weakly_canonical(p, ec);
  if (ec) return std::nullopt;
  for (const auto& root : roots) {
    fs::path r = fs::weakly_canonical(root, ec);
    if (ec) continue;
    if (is_within(r, canon)) return canon;
  }
  return std::nullopt;
}

}  // namespace ktl::server
