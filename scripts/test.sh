#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine or a developer's:
#
#   scripts/test.sh              install the missing peers (as root, or through sudo), then
#                                run `cargo test --workspace --locked` with any extra arguments
#   scripts/test.sh --install    only install the missing peers
#   scripts/test.sh --check      only say what is missing, and the one command that installs it
#
# The integration tests run real Kamailio, SIPp, baresip and rtpengine on loopback, capture
# with tshark, and make lossy links with ip netns and iptables (which need root). Without root
# and without sudo, the script prints the single apt-get command that installs what is missing
# and stops (exit 2): it never runs a suite that would fail for want of a package.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Everything the tests need from Debian: the peers (SIPp is the package sip-tester), tshark
# and sox for captures and audio files, network tools for the lossy-link tests, procps for
# kill(1), python3 for the side-by-side benchmark (standard library only) and pip for the
# Python modules below, g++ for the fuzzers' libFuzzer, xmllint (libxml2-utils) for the
# JUnit schema tests, groff for the man page test, and chromium (headless) for the HTML
# report's tests, which render the page offline and take its screenshot.
PACKAGES=(
    ca-certificates
    sip-tester
    kamailio
    kamailio-extra-modules
    kamailio-utils-modules
    # Kamailio's tls module: the SIP over TLS peer of tests/tls.rs, whose certificates the
    # openssl command line makes at test time.
    kamailio-tls-modules
    openssl
    # Kamailio's websocket module: the SIP over WebSocket (RFC 7118) peer of tests/ws.rs
    # (its xhttp module, which takes the HTTP handshake, ships with kamailio itself).
    kamailio-websocket-modules
    baresip-core
    # linphonec: the conference focus (its local conference's mixer) of tests/conference.rs.
    linphone-cli
    rtpengine-daemon
    tshark
    sox
    iproute2
    iptables
    procps
    python3
    python3-pip
    g++
    libxml2-utils
    groff-base
    chromium
)

missing_packages() {
    local pkg status
    for pkg in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        if [ "$status" != "installed" ]; then
            printf '%s\n' "$pkg"
        fi
    done
}

install_command() {
    printf 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends %s' "$*"
}

# Installs what is missing; returns 2 (after printing the command) when it cannot.
install_missing() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "test.sh: not a Debian system: install the equivalents of: ${PACKAGES[*]}" >&2
        return 0
    fi
    local missing
    missing=$(missing_packages | tr '\n' ' ')
    if [ -z "${missing// /}" ]; then
        echo "test.sh: all peers present (${#PACKAGES[@]} packages)"
        return 0
    fi
    echo "test.sh: missing: $missing"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo)
        else
            echo "test.sh: not root and no password-less sudo; install them with:" >&2
            echo "  sudo sh -c '$(install_command $missing)'" >&2
            return 2
        fi
    fi
    # shellcheck disable=SC2086 # one word per package
    "${sudo[@]}" sh -c "$(install_command $missing)"
    missing=$(missing_packages | tr '\n' ' ')
    if [ -n "${missing// /}" ]; then
        echo "test.sh: still missing after apt-get install: $missing" >&2
        return 1
    fi
}

# Python modules from PyPI (pinned): hdrh decodes the JSON summary's histograms in a test;
# prometheus_client parses the --metrics report (OpenMetrics) in another.
PYTHON_MODULES=("hdrh:hdrhistogram==0.10.8" "prometheus_client:prometheus-client==0.26.0")

missing_python_modules() {
    local entry
    for entry in "${PYTHON_MODULES[@]}"; do
        if ! python3 -c "import ${entry%%:*}" >/dev/null 2>&1; then
            printf '%s\n' "${entry#*:}"
        fi
    done
}

# Installs the missing Python modules with pip (Debian's own Python needs
# --break-system-packages: nothing of the system's depends on them).
install_python_modules() {
    local missing
    missing=$(missing_python_modules | tr '\n' ' ')
    if [ -z "${missing// /}" ]; then
        return 0
    fi
    echo "test.sh: missing Python modules: $missing"
    # shellcheck disable=SC2086 # one word per requirement
    python3 -m pip install --quiet $missing ||
        python3 -m pip install --quiet --break-system-packages $missing
    missing=$(missing_python_modules | tr '\n' ' ')
    if [ -n "${missing// /}" ]; then
        echo "test.sh: still missing after pip install: $missing" >&2
        return 1
    fi
}

case "${1:-}" in
--check)
    modules=$(missing_python_modules | tr '\n' ' ')
    if [ -n "${modules// /}" ]; then
        echo "missing Python modules: $modules (install with: python3 -m pip install $modules)"
    fi
    missing=$(missing_packages | tr '\n' ' ')
    if [ -z "${missing// /}" ]; then
        if [ -n "${modules// /}" ]; then
            exit 2
        fi
        echo "all peers present"
        exit 0
    fi
    echo "missing: $missing"
    echo "install with: sudo sh -c '$(install_command $missing)'"
    exit 2
    ;;
--install)
    install_missing || exit $?
    install_python_modules
    exit $?
    ;;
esac

install_missing || exit $?
install_python_modules || exit $?

# Kamailio and kamcmd live in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
exec cargo test --workspace --locked "$@"
