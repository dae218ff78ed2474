#include "server/static_files.h"

#include <algorithm>
#include <cctype>
#include <system_error>

namespace ktl::server {
namespace fs = std::filesystem;

namespace {

// Lower-cased percent-decoding of one segment, to catch double-encoded dots ("%2e%2e").
std::string percent_decoded(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool is_within(const fs::path& root, const fs::path& p) {
  auto q = p.begin();
  for (auto r = root.begin(); r != root.end(); ++r) {
    if (r->empty()) continue;  // trailing separator
    if (q == p.end() || *q != *r) return false;
    ++q;
  }
  return true;
}

}  // namespace

std::optional<fs::path> resolve_static_path(const fs::path& root, const std::string& url_path) {
  if (url_path.empty() || url_path[0] != '/') return std::nullopt;
  if (url_path.find('\0') != std::string::npos || url_path.find('\\') != std::string::npos)
    return std::nullopt;
  fs::path rel;
  size_t start = 1;
  while (start <= url_path.size()) {
    size_t end = url_path.find('/', start);
    if (end == std::string::npos) end = url_path.size();
    std::string seg = url_path.substr(start, end - start);
    start = end + 1;
    if (seg.empty()) continue;
    std::string decoded = percent_decoded(seg);
    if (seg == "." || seg == ".." || decoded == "." || decoded == ".." ||
        decoded.find('/') != std::string::npos || decoded.find('\\') != std::string::npos)
      return std::nullopt;
    if (seg[0] == '.') return std::nullopt;  // no dotfiles (.git, .env)
    rel /= seg;
  }
  if (rel.empty()) rel = "index.html";
  std::error_code ec;
  fs::path canon_root = fs::canonical(root, ec);
  if (ec) return std::nullopt;
  fs::path candidate = fs::canonical(canon_root / rel, ec);
  if (ec || !is_within(canon_root, candidate)) return std::nullopt;
  if (!fs::is_regular_file(candidate, ec)) return std::nullopt;
  return candidate;
}

std::string mime_type_for(const fs::path& file) {
  std::string ext = file.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (ext == ".html" || ext == ".htm") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json" || ext == ".map") return "application/json";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".jpg" || ext == ".jpeg") return "image/jpeg";
  if (ext == ".ico") return "image/x-icon";
  if (ext == ".woff2") return "font/woff2";
  if (ext == ".woff") return "font/woff";
  if (ext == ".ttf") return "font/ttf";
  if (ext == ".txt" || ext == ".md") return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

}  // namespace ktl::server
