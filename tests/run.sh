#!/usr/bin/env bash
# The one command that runs luaspout's whole test suite (unit + end-to-end) on a fresh
# Debian machine as root. It installs what is missing (docker.io, busybox-static, rsyslog,
# rsyslog-gnutls for the TLS interop test, docker-compose, chromium for the web viewer test),
# starts dockerd in the background if its socket does not answer, then runs
# `cargo test --release` and exits with its status; without arguments, it first builds the
# binary the image ships (for the image test), and the tests that read containers then run a
# second time through the Docker API (LUASPOUT_SOURCE=api), the first pass having read
# json-file logs from their files. Safe to re-run.
#
# Usage (from anywhere): bash tests/run.sh [extra cargo test args...]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DOCKERD_LOG=/tmp/luaspout-dockerd.log
DOCKERD_WAIT_SECS=60

log() { printf 'run.sh: %s\n' "$*" >&2; }

# --- 1. packages --------------------------------------------------------------------------
# A package counts as present only if dpkg says it is installed: a dynamically linked
# /bin/busybox (package `busybox`) would not work inside a FROM-scratch image.
missing=()
for pkg in docker.io busybox-static rsyslog rsyslog-gnutls docker-compose chromium; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]} > 0)); then
    if [[ $(id -u) -ne 0 ]]; then
        log "missing packages (${missing[*]}) and not root: install them first"
        exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep apt from starting system services (dockerd, the system rsyslogd): we start
    # dockerd ourselves below, with a known log file, and rsyslogd only per test.
    policy_added=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
        trap '[[ $policy_added == 1 ]] && rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    if [[ $policy_added == 1 ]]; then
        rm -f /usr/sbin/policy-rc.d
        policy_added=0
    fi
fi
[[ -x /bin/busybox ]] || { log "/bin/busybox missing after installing busybox-static"; exit 1; }

# --- 2. dockerd -----------------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
    log "dockerd already answers"
else
    if [[ $(id -u) -ne 0 ]]; then
        log "dockerd does not answer and we are not root: start it first"
        exit 1
    fi
    log "starting dockerd (log: $DOCKERD_LOG)"
    # setsid: dockerd must outlive this script and not get its signals.
    setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    dockerd_pid=$!
    up=0
    for ((i = 0; i < DOCKERD_WAIT_SECS; i++)); do
        if docker info >/dev/null 2>&1; then
            up=1
            break
        fi
        if ! kill -0 "$dockerd_pid" 2>/dev/null; then
            log "dockerd exited early"
            break
        fi
        sleep 1
    done
    if [[ $up != 1 ]]; then
        log "dockerd did not come up (waited up to ${DOCKERD_WAIT_SECS}s); last lines of $DOCKERD_LOG:"
        tail -n 40 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    log "dockerd is up"
    # This script started dockerd, so a test may stop and start it the same way.
    export LUASPOUT_TEST_RESTART_DOCKERD=1
fi

# Containers left behind by an interrupted earlier run (tests name theirs lstest-*).
leftover=$(docker ps -aq --filter 'name=^/?lstest-' || true)
if [[ -n "$leftover" ]]; then
    log "removing leftover test containers"
    docker rm -f $leftover >/dev/null || true
fi

# --- 3. tests -------------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { log "cargo not found in PATH"; exit 1; }
output=$(mktemp)
trap 'rm -f "$output"' EXIT
status=0
# Without arguments, luaspout is first built as the Dockerfile's `build` stage builds it (glibc
# linked statically, the `dist` profile), and the image test (tests/e2e.rs) ships that binary in
# the image: LUASPOUT_DIST_BIN. It builds every dependency a second time, with a fat-LTO link:
# 8 minutes on a 2-core machine that was also running other builds. With arguments, the image
# test uses the test build (and says so); a LUASPOUT_DIST_BIN set by the caller is used as it is.
if (($# == 0)) && [[ -z "${LUASPOUT_DIST_BIN:-}" ]]; then
    target=$(rustc -vV | sed -n 's/^host: //p')
    log "RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile dist --locked --target $target"
    if RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile dist --locked --target "$target"; then
        LUASPOUT_DIST_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/$target/dist/luaspout"
        export LUASPOUT_DIST_BIN
    else
        log "the shipped binary did not build; the image test uses the test build"
        status=1
    fi
fi
log "cargo test --release --no-fail-fast $*"
cargo test --release --no-fail-fast "$@" 2>&1 | tee "$output" || status=${PIPESTATUS[0]}
# Run as root, that pass read json-file containers from their log files (LUASPOUT_SOURCE=auto);
# the tests that read containers run once more through the Docker API.
if (($# == 0)); then
    api_pass=(--test e2e --test reliability --test daemon_restart --test logs_stream --test templates
        --test lua_guard --test http_sink --test health_metrics)
    log "LUASPOUT_SOURCE=api cargo test --release --no-fail-fast ${api_pass[*]}"
    LUASPOUT_SOURCE=api cargo test --release --no-fail-fast "${api_pass[@]}" 2>&1 | tee -a "$output" \
        || status=${PIPESTATUS[0]}
fi
# One closing line over every test binary (the last binary cargo runs, the doc tests, has none).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "luaspout: %d passed, %d failed\n", p, f }' "$output"
exit "$status"
