#!/usr/bin/env bash
# Makes sure `bazel` is on PATH for `make bazel-test` / `make test`.
#
# When it is missing and this user can install packages (root, or passwordless sudo), installs Debian's
# bazel-bootstrap (Bazel 4.2.3, the supported version; it builds this workspace offline) through apt-get,
# quietly: its output is shown only when the install fails. Otherwise it fails with one line saying what to run.
set -euo pipefail

command -v bazel >/dev/null 2>&1 && exit 0

fail() {
  echo "error: bazel is missing and $1" >&2
  exit 1
}
RUN="run as root: apt-get update && apt-get install -y bazel-bootstrap"

if ! command -v apt-get >/dev/null 2>&1; then
  fail "this machine has no apt-get: install Bazel 4.2.3 (tested: Debian's bazel-bootstrap) and put it on PATH"
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  SUDO="sudo -n"
else
  fail "this user cannot install packages (not root, no passwordless sudo); $RUN"
fi

echo "--- bazel not found: installing Debian's bazel-bootstrap (Bazel 4.2.3) with apt-get" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 \
  || ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bazel-bootstrap >>"$log" 2>&1; then
  cat "$log" >&2
  fail "installing bazel-bootstrap with apt-get failed (output above); $RUN"
fi
command -v bazel >/dev/null 2>&1 || fail "apt-get installed bazel-bootstrap but no bazel is on PATH"
echo "--- installed bazel-bootstrap $(dpkg-query -W -f='${Version}' bazel-bootstrap 2>/dev/null)" >&2
