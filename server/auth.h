// API-key checks for /v1 routes. Thread-safe (pure functions).
#pragma once

#include <string>
#include <string_view>

namespace ktl::server {

// Compares in time that depends only on the lengths, not on where the bytes first differ.
bool constant_time_equals(std::string_view a, std::string_view b);

// True when no key is configured, or `authorization_header` is "Bearer <api_key>"
// (scheme case-insensitive, surrounding spaces ignored).
bool bearer_authorized(std::string_view authorization_header, std::string_view api_key);

// True for a loopback host: 127.0.0.0/8, ::1, localhost. Binding elsewhere needs a key.
bool is_loopback_host(const std::string& host);

}  // namespace ktl::server
