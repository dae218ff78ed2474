#include "server/api_error.h"

#include <nlohmann/json.hpp>

namespace ktl::server {

const char* error_type_for_status(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

const char* error_code_for_status(int status) {
  switch (status) {
    case 400:
      return "invalid_request";
    case 401:
      return "invalid_api_key";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 405:
      return "method_not_allowed";
    case 408:
      return "request_timeout";
    case 409:
      return "conflict";
    case 413:
      return "payload_too_large";
    case 429:
      return "too_many_requests";
    case 503:
      return "unavailable";
    default:
      return status >= 500 ? "internal_error" : "invalid_request";
  }
}

std::string error_json(int status, const std::string& message, const std::string& code,
                       const std::string& param) {
  nlohmann::json e = {{"message", message},
                      {"type", error_type_for_status(status)},
                      {"code", code.empty() ? error_code_for_status(status) : code},
                      {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)}};
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false,
                                           nlohmann::json::error_handler_t::replace);
}

}  // namespace ktl::server
