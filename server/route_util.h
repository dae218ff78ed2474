// Helpers shared by route files: exception-safe handler wrapping. Header-only.
#pragma once

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <utility>

#include "server/api_error.h"
#include "server/route_probe.h"
#include "server/server_context.h"

namespace ktl::server {

// Wraps a handler so ApiError becomes its JSON error and anything else a logged 500:
// a handler never takes the server down. During a route probe it only reports the match.
template <class F>
httplib::Server::Handler guarded(F f) {
  return [f = std::move(f)](const httplib::Request& req, httplib::Response& res) {
    if (RouteProbe::active()) return RouteProbe::note_match();
    try {
      f(req, res);
    } catch (const ApiError& e) {
      send_error(res, e.status, e.what(), e.code, e.param);
    } catch (const std::exception& e) {
      spdlog::error("{} {}: {}", req.method, req.path, e.what());
      send_error(res, 500, std::string("internal error: ") + e.what(), "internal_error");
    }
  };
}

}  // namespace ktl::server
