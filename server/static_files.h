// Static files for the dashboard, confined to one root directory (web/).
// Thread-safe (pure functions over the filesystem).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace ktl::server {

// Maps a decoded URL path ("/", "/app.js", "/node_modules/uplot/dist/uPlot.min.css") to a
// regular file inside `root`, or nullopt: any "..", "." or empty-with-backslash segment, NUL,
// a percent sign that still decodes to a dot-segment, a symlink escaping the root, a directory
// or a missing file -> nullopt (the route answers 404). "/" maps to index.html.
std::optional<std::filesystem::path> resolve_static_path(const std::filesystem::path& root,
                                                         const std::string& url_path);

// Content-Type for a file name by extension ("text/html; charset=utf-8", ...).
std::string mime_type_for(const std::filesystem::path& file);

}  // namespace ktl::server
