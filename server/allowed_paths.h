// Confines user-supplied filesystem paths (model directories) to configured roots.
// Thread-safe (pure functions over the filesystem).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ktl::server {

// Resolves `path` (relative paths are relative to `base`) with symlinks and ".." collapsed and
// returns it when it lies inside one of `roots`; nullopt otherwise. The path need not exist.
std::optional<std::filesystem::path> confine_path(const std::string& path,
                                                  const std::filesystem::path& base,
                                                  const std::vector<std::filesystem::path>& roots);

}  // namespace ktl::server
