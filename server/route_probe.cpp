#include "server/route_probe.h"

namespace ktl::server {
namespace {
thread_local RouteProbe* t_probe = nullptr;
}  // namespace

RouteProbe::RouteProbe() : previous_(t_probe) {
  t_probe = this;
}

RouteProbe::~RouteProbe() {
  t_probe = previous_;
}

bool RouteProbe::active() {
  return t_probe != nullptr;
}

void RouteProbe::note_match() {
  if (t_probe) t_probe->matched_ = true;
}

}  // namespace ktl::server
