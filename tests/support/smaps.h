// What /proc/self/smaps says of the mapping that holds an address (Linux; -1 elsewhere).
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace ktl::testing {

// The "THPeligible:" value (1: the kernel may back it with transparent huge pages) of the
// mapping that holds `p`, or -1 when smaps does not say.
inline int thp_eligible(const void* p) {
  std::ifstream f("/proc/self/smaps");
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(f, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream range(line);
    if (range >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= a && a < hi;
      continue;
    }
    if (inside && line.rfind("THPeligible:", 0) == 0) return std::stoi(line.substr(12));
  }
  return -1;
}

}  // namespace ktl::testing
