// Dry-run routing, to answer 405 with an Allow header: GuardedServer::allowed_methods()
// replays a path with each method through the real routes while a RouteProbe is active on the
// thread; a route's handler that sees active() calls note_match() and does nothing else
// (route_util.h's guarded() and the jobs routes' authorize hook do this).
// Thread-safety: the probe is per thread.
#pragma once

namespace ktl::server {

class RouteProbe {
 public:
  RouteProbe();
  ~RouteProbe();
  RouteProbe(const RouteProbe&) = delete;
  RouteProbe& operator=(const RouteProbe&) = delete;

  bool matched() const { return matched_; }

  // True while this thread is probing.
  static bool active();
  // Called by a handler during a probe: its route matches.
  static void note_match();

 private:
  RouteProbe* previous_;
  bool matched_ = false;
};

}  // namespace ktl::server
