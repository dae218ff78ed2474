#include "core/data/default_corpus.h"

#include <filesystem>
#include <stdexcept>

namespace ktl {

std::vector<std::string> default_corpus_inputs() {
  static const char* kCandidates[] = {
      "/usr/share/libreoffice/help/ko",  // libreoffice-help-ko
      "/usr/share/doc/debian/FAQ/ko",    // debian-faq-ko
  };
  std::vector<std::string> found;
  for (const char* p : kCandidates)
    if (std::filesystem::is_directory(p)) found.emplace_back(p);
  if (found.empty())
    throw std::runtime_error(
        "the default Korean corpus is not installed: run 'make deps' (or apt-get install "
        "libreoffice-help-ko debian-faq-ko), or pass --input FILE_OR_DIR");
  return found;
}

}  // namespace ktl
