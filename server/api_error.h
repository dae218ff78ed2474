// OpenAI-style API errors: {"error":{"message","type","code","param"}}.
// Plain data; thread-safe (no shared state).
#pragma once

#include <stdexcept>
#include <string>

namespace ktl::server {

// Thrown by request parsing and route handlers; the route turns it into an HTTP response.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string code = "", std::string param = "")
      : std::runtime_error(message),
        status(status),
        code(std::move(code)),
        param(std::move(param)) {}
  int status;         // HTTP status (400, 401, 404, 409, 413, 429, 500, 503)
  std::string code;   // machine-readable, e.g. "model_not_found"; defaults by status
  std::string param;  // the offending request field, when there is one
};

// The OpenAI error "type" for an HTTP status, e.g. 400 -> "invalid_request_error".
const char* error_type_for_status(int status);
// A default "code" for a status when the thrower gave none, e.g. 413 -> "payload_too_large".
const char* error_code_for_status(int status);
// The JSON body for an error.
std::string error_json(int status, const std::string& message, const std::string& code = "",
                       const std::string& param = "");
inline std::string error_json(const ApiError& e) {
  return error_json(e.status, e.what(), e.code, e.param);
}

}  // namespace ktl::server
