# Shared by scripts/demo and scripts/test: install what is missing, build.
# Idempotent: a second run installs nothing and rebuilds only what changed.

LG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# root's tools (apt's dpkg, sysctl, mariadbd, nft, ethtool) live in sbin,
# which a plain `su` or cron leaves off PATH.
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
LG_BUILD=${LG_BUILD:-$LG_ROOT/build}

# Debian 12 packages the build and the tests need.
LG_PACKAGES=(
  meson ninja-build pkg-config g++ clang llvm
  libbpf-dev bpftool linux-libc-dev libelf-dev zlib1g-dev
  libdpdk-dev dpdk dpdk-dev libpcap-dev
  libhyperscan-dev libcli11-dev nlohmann-json3-dev libgtest-dev
  iproute2 ethtool procps kmod python3 python3-matplotlib
  mariadb-server mariadb-client nftables xdp-tools
)

say() { printf '==> %s\n' "$*"; }

ensure_packages() {
  local missing=() p
  for p in "${LG_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "Debian packages: all ${#LG_PACKAGES[@]} present"
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # mariadb-server's install starts and enables the system's own MariaDB on
  # 127.0.0.1:3306; the demo runs its own servers in namespaces and never
  # uses it. Stopped only when this run installed it.
  if [[ " ${missing[*]} " == *" mariadb-server "* ]] && command -v systemctl >/dev/null; then
    say "stopping and disabling the system MariaDB service the package started (linkgate does not use it)"
    systemctl disable --now mariadb >/dev/null 2>&1 || true
  fi
}

# bpffs is not mounted at boot on these hosts; linkgate pins under it.
ensure_bpffs() {
  if ! mountpoint -q /sys/fs/bpf; then
    say "mounting bpffs at /sys/fs/bpf"
    mount -t bpf bpf /sys/fs/bpf
  fi
}

# What a killed test run left behind before its cleanup ran. Test objects
# carry the test process's pid in their names: namespaces lgt<pid>-*, pins
# under /sys/fs/bpf, DPDK runtime dirs. Only a pid that no longer runs is
# swept.
sweep_test_leftovers() {
  local n d pid
  for n in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ $n =~ ^lgt([0-9]+)- ]] || continue
    pid=${BASH_REMATCH[1]}
    kill -0 "$pid" 2>/dev/null && continue
    say "removing namespace $n (left by test process $pid)"
    ip netns del "$n" || true
  done
  for d in /sys/fs/bpf/linkgate-test-* /sys/fs/bpf/lgtest-agent-* /sys/fs/bpf/lgbench-* /var/run/dpdk/lgt*; do
    [ -e "$d" ] || continue
    remove_if_dead "$d" "${d##*-}" "test process"
  done
  # scripts/e2e.py's linkgate-dpdk runtime dir: /var/run/dpdk/lge2e<pid>
  # (its namespaces and temp dirs the next e2e run removes itself).
  for d in /var/run/dpdk/lge2e*; do
    [ -e "$d" ] || continue
    remove_if_dead "$d" "${d##*/lge2e}" "e2e run"
  done
  # linkgate-bench dpdk's runs: /var/run/dpdk/lgbench<pid>_<run>
  for d in /var/run/dpdk/lgbench*; do
    [ -e "$d" ] || continue
    pid=${d##*/lgbench}
    remove_if_dead "$d" "${pid%%_*}" "benchmark run"
  done
}

# Removes $1 when process $2 (a pid) no longer runs; $3 says what ran.
remove_if_dead() {
  [[ $2 =~ ^[0-9]+$ ]] || return 0
  kill -0 "$2" 2>/dev/null && return 0
  say "removing $1 (left by $3 $2)"
  rm -rf "$1"
}

build() {
  if [ ! -f "$LG_BUILD/build.ninja" ]; then
    say "configuring $LG_BUILD"
    # meson prints a missing dependency on stdout: shown when it fails.
    local log
    log=$(mktemp)
    if ! meson setup "$LG_BUILD" "$LG_ROOT" --buildtype=debugoptimized >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      rm -f "$log"
      echo "configure failed" >&2
      exit 1
    fi
    rm -f "$log"
  fi
  say "building (log: $LG_BUILD/build.log)"
  if ! ninja -C "$LG_BUILD" >"$LG_BUILD/build.log" 2>&1; then
    grep -vE '^\[[0-9]+/[0-9]+\] ' "$LG_BUILD/build.log" | tail -n 60 >&2
    echo "build failed" >&2
    exit 1
  fi
}
