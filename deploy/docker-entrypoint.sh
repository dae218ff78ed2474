#!/bin/sh
# Starts `ktl serve` on all interfaces; an API key is mandatory because the port leaves the
# container. Any arguments are passed on to `ktl serve` (e.g. --model DIR, --quickstart).
set -eu
if [ -z "${KTL_API_KEY:-}" ]; then
  echo "docker-entrypoint: set KTL_API_KEY (docker run -e KTL_API_KEY=...): the server listens" \
       "on 0.0.0.0 and must not run without a key" >&2
  exit 64
fi
exec /usr/local/bin/ktl serve --data-dir /var/lib/ktl --host 0.0.0.0 --port 8080 "$@"
