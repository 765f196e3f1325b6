#!/usr/bin/env bash
# The project's test command (README quick start, second command; CI runs exactly this).
# Creates .venv if needed, installs cidpipe with its dev extra, installs the Debian packages some tests use
# (OpenSSH server for the SSH device tests, Fashion-MNIST, Chromium for the report screenshot) when it can,
# then runs ruff and pytest. Tests whose system package is missing skip with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  missing=()
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || missing+=(dataset-fashion-mnist)
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || echo "warning: could not install ${missing[*]}; the tests that need them will skip"
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[dev]'
.venv/bin/ruff check cidpipe export tests benchmarks
# Two workers: the tests pin torch/ONNX Runtime to one thread each, so two processes use two cores without
# oversubscribing them (the suite takes about half the time). Pass -n 0 to run in one process.
.venv/bin/python -m pytest -q -n 2 "$@"
