#!/usr/bin/env bash
# Runs every p2pd check: formatting, lints, and the whole test suite, including the
# real-network lab tests (network namespaces, nftables NAT, coturn, mosquitto, miniupnpd).
#
# As root it first installs what the tests need (Debian packages, listed in
# lab/apt-packages.txt) and then requires the lab: a missing piece fails the run instead of
# skipping. As another user it installs nothing, and lab tests skip with a printed reason.
#
# Usage: bash scripts/test.sh        (from anywhere inside the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if [ "$(id -u)" = 0 ]; then
  step "installing test dependencies (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2046
  apt-get install -y -qq --no-install-recommends $(grep -v '^\s*#' lab/apt-packages.txt) >/dev/null
  export P2PD_LAB_REQUIRED=1
else
  echo "not root: installing nothing; lab tests will skip"
fi

step "rustfmt and clippy components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace --no-fail-fast

echo
echo "all checks passed"
