// A function of a library already loaded into the process (OpenBLAS, libgomp), looked up by
// name at run time so ktl links none of them; null where absent (or off Unix).
// Thread-safety: dlsym is thread-safe.
#pragma once

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#endif

namespace ktl {

template <typename Fn>
Fn find_symbol(const char* name) {
#if defined(__unix__) || defined(__APPLE__)
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
#else
  (void)name;
  return nullptr;
#endif
}

}  // namespace ktl
