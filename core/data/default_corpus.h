// The built-in fallback corpus: Korean text shipped by Debian packages installed by `make deps`
// (libreoffice-help-ko: ~2,800 HTML help pages; debian-faq-ko: the Debian FAQ in HTML).
#pragma once

#include <string>
#include <vector>

namespace ktl {

// Directories that exist on this machine; throws with an install hint when none does.
std::vector<std::string> default_corpus_inputs();

}  // namespace ktl
