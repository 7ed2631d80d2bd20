#!/usr/bin/env bash
# The system tools the suite runs for real (`make test` runs this first), each with the package that brings it:
# Prometheus and promtool (end-to-end and rule tests), Alertmanager (alerts delivered to a webhook), VictoriaMetrics
# and vmctl (a long-term store Prometheus remote-writes to), Chromium (the page), Podman with runc, netavark,
# aardvark-dns, iptables (netavark's firewall) and debootstrap (compose.yaml brought up for real), and Go
# (tests/support/go_upstream: Go's own net/http, what Ollama's HTTP layer is), Node.js and npm (Grafana's own
# dashboard types, tests/support/grafana_types), systemd-analyze (deploy/systemd verified), and the shared libraries
# llama.cpp's prebuilt server needs (xllamacpp: OpenMP's libgomp, libstdc++; tests/support/llama_server.py).
# Every missing one is named in one line with the command that installs it; as root on Debian or Ubuntu
# they are installed, then checked again.
set -uo pipefail

NEEDED="prometheus:prometheus promtool:prometheus prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager victoria-metrics:victoria-metrics vmctl:victoria-metrics chromium:chromium podman:podman runc:runc netavark:netavark
aardvark-dns:aardvark-dns iptables:iptables debootstrap:debootstrap go:golang-go node:nodejs npm:npm
systemd-analyze:systemd"

LIBRARIES=${TOOLS_LIBRARIES-"libgomp.so.1:libgomp1 libstdc++.so.6:libstdc++6"}

HELPERS=${PODMAN_HELPERS-/usr/lib/podman /usr/libexec/podman}  # netavark and aardvark-dns: Podman's helpers, not on PATH

present() {
    command -v "$1" >/dev/null && return 0
    for dir in $HELPERS; do [ -x "$dir/$1" ] && return 0; done
    return 1
}

missing=() packages=()
check() {
    missing=() packages=()
    for pair in $NEEDED; do
        tool=${pair%%:*} package=${pair#*:}
        present "$tool" && continue
        missing+=("$tool")
        [[ " ${packages[*]} " == *" $package "* ]] || packages+=("$package")
    done
    local libraries
    libraries=$(ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null)
    [ -n "$libraries" ] || return 0  # no loader cache to ask (not Linux): the libraries are not checked
    for pair in $LIBRARIES; do
        library=${pair%%:*} package=${pair#*:}
        [[ $libraries == *"$library "* ]] && continue
        missing+=("$library")
        packages+=("$package")
    done
}

check
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "missing: ${missing[*]}; installing them: apt-get install ${packages[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    check
    [ ${#missing[@]} -eq 0 ] && exit 0
    echo "still missing after apt-get install: ${missing[*]}" >&2
    exit 1
fi
echo "missing: ${missing[*]}. Install them with: sudo apt-get install ${packages[*]} (macOS: brew install ${packages[*]/golang-go/go}), then run make test again" >&2
exit 1
