#!/bin/sh
# Installs a built ktl (after `make build`) and starts it as a service:
#   Linux: /usr/local/{bin/ktl, lib/libktl_spm.so, share/ktl/{web,configs}}, user ktl, systemd unit.
#   macOS: the same under $(brew --prefix), a launchd agent for the current user.
# Usage: deploy/install.sh [--no-service]     Environment: PREFIX, BUILD (default build).
# Explained in docs/deployment.md.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SERVICE=1
[ "${1:-}" = "--no-service" ] && SERVICE=0
[ -x "$BUILD/ktl" ] || { echo "install.sh: $BUILD/ktl not found: run 'make build' first" >&2; exit 1; }

install_files() {  # $1 = prefix, $2 = shim file name, $3 = command prefix (sudo or empty)
  $3 install -d "$1/bin" "$1/lib" "$1/share/ktl"
  $3 install -m 0755 "$BUILD/ktl" "$1/bin/ktl"
  $3 install -m 0644 "$BUILD/$2" "$1/lib/$2"   # found as <exe>/../lib/$2
  $3 rm -rf "$1/share/ktl/web" "$1/share/ktl/configs"
  $3 cp -R web "$1/share/ktl/web"
  $3 cp -R configs "$1/share/ktl/configs"
  echo "installed ktl into $1"
}

case "$(uname -s)" in
  Linux)
    PREFIX=${PREFIX:-/usr/local}
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    install_files "$PREFIX" libktl_spm.so "$SUDO"
    [ "$SERVICE" = 1 ] || exit 0
    id ktl >/dev/null 2>&1 ||
      $SUDO useradd --system --home-dir /var/lib/ktl --no-create-home --shell /usr/sbin/nologin ktl
    $SUDO install -d -m 0750 -o root -g ktl /etc/ktl
    if [ ! -f /etc/ktl/ktl.env ]; then
      echo "# KTL_API_KEY=change-me   (required once the port is reachable from other hosts)" |
        $SUDO tee /etc/ktl/ktl.env >/dev/null
      $SUDO chown root:ktl /etc/ktl/ktl.env
      $SUDO chmod 0640 /etc/ktl/ktl.env
    fi
    sed "s|/usr/local|$PREFIX|g" deploy/ktl.service | $SUDO tee /etc/systemd/system/ktl.service >/dev/null
    $SUDO systemctl daemon-reload
    $SUDO systemctl enable --now ktl
    echo "ktl is running: systemctl status ktl; journalctl -u ktl -f; http://127.0.0.1:8080"
    ;;
  Darwin)
    PREFIX=${PREFIX:-$(brew --prefix 2>/dev/null || echo /usr/local)}
    install_files "$PREFIX" libktl_spm.dylib ""
    [ "$SERVICE" = 1 ] || exit 0
    mkdir -p "$HOME/Library/Application Support/ktl" "$HOME/Library/Logs" "$HOME/Library/LaunchAgents"
    PLIST="$HOME/Library/LaunchAgents/com.korean-tiny-llm.ktl.plist"
    launchctl bootout "gui/$(id -u)/com.korean-tiny-llm.ktl" 2>/dev/null || true
    sed -e "s|__HOME__|$HOME|g" -e "s|__PREFIX__|$PREFIX|g" deploy/com.korean-tiny-llm.ktl.plist > "$PLIST"
    launchctl bootstrap "gui/$(id -u)" "$PLIST"
    echo "ktl is running: tail -f ~/Library/Logs/ktl.log; http://127.0.0.1:8080"
    ;;
  *)
    echo "install.sh: unsupported system $(uname -s)" >&2
    exit 1
    ;;
esac
