#!/bin/sh
# Installs the Debian packages that berthd itself (MODE run), berth's tests (MODE test) or
# benchmarks (MODE bench) need, when they are missing. Runs as npm's `prestart` / `pretest` /
# `prebench:*`, so it must be quiet and fast
# when everything is present: each package is checked with `command -v` (a shell builtin, no fork)
# or, where a command does not tell the package apart, one `dpkg-query`. Only when something is
# missing does it run `apt-get update` (once) and one `apt-get install` for all missing packages.
#
# Exit status: 0 when every required package is present afterwards, 1 otherwise. A failed apt run
# that leaves everything present (someone else installed it meanwhile) is not an error.
set -u

mode="${1:-test}"
case "$mode" in
  run | test | bench) ;;
  *)
    echo "BERTH_ERR_DEPS: unknown mode \"$mode\"; hint: sh scripts/system-deps.sh run|test|bench" >&2
    exit 2
    ;;
esac

# package → how to tell it is installed. `cmd:NAME` checks `command -v NAME` (with the sbin dirs on
# PATH, as a non-root user's PATH may lack them); `pkg` asks dpkg (busybox-static: the dynamic
# `busybox` package also provides `busybox`, but rootfs images need the static binary).
# nftables: berthd keeps --port services private to this node and the fleet with an nftables
# table of its own (docs/proxy.md) and refuses to start without `nft`.
RUN_DEPS="nftables=cmd:nft"
TEST_DEPS="$RUN_DEPS busybox-static=pkg e2fsprogs=cmd:mkfs.ext4 iproute2=cmd:ip python3=cmd:python3 util-linux=cmd:unshare tar=cmd:tar gzip=cmd:gzip"
BENCH_DEPS="$TEST_DEPS runc=cmd:runc iperf3=cmd:iperf3 socat=cmd:socat"

PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export PATH

case "$mode" in
  run) deps="$RUN_DEPS" ;;
  bench) deps="$BENCH_DEPS" ;;
  *) deps="$TEST_DEPS" ;;
esac

missing_packages() {
  out=""
  for entry in $deps; do
    pkg="${entry%%=*}"
    check="${entry#*=}"
    case "$check" in
      cmd:*)
        command -v "${check#cmd:}" >/dev/null 2>&1 || out="$out $pkg"
        ;;
      pkg)
        st="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)"
        [ "$st" = "install ok installed" ] || out="$out $pkg"
        ;;
    esac
  done
  echo "${out# }"
}

missing="$(missing_packages)"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "BERTH_ERR_DEPS: missing Debian packages: $missing; hint: as root run apt-get install --no-install-recommends $missing" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "BERTH_ERR_DEPS: missing packages: $missing and no apt-get on this machine; hint: install them with the system's package manager" >&2
  exit 1
fi

log="${TMPDIR:-/tmp}/berth-system-deps.log"
echo "berth: installing $missing (log: $log)" >&2
# Lock timeout: another apt run (unattended-upgrades, a parallel npm script) may hold the lock.
ok=1
if ! apt-get -o DPkg::Lock::Timeout=120 update -qq >"$log" 2>&1; then
  ok=0
elif ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
  --no-install-recommends $missing >>"$log" 2>&1; then
  ok=0
fi

still="$(missing_packages)"
if [ -n "$still" ]; then
  if [ "$ok" -eq 1 ]; then why="installed but still not found"; else why="apt-get failed"; fi
  echo "BERTH_ERR_DEPS: missing Debian packages: $still ($why); hint: see $log, then apt-get install --no-install-recommends $still" >&2
  exit 1
fi
exit 0
