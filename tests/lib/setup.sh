# Sourced by tests/run.sh and examples/*.sh: installs what mig needs on Debian 12
# (only what is missing) and configures and builds a meson build directory.

MIG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Debian packages the build, the tests and the demo use.
MIG_PACKAGES=(
  g++ meson ninja-build pkg-config
  capnproto libcapnp-dev libuv1-dev libffi-dev doctest-dev libxxhash-dev
  clang-14 libclang-rt-14-dev     # libFuzzer targets
  iproute2 util-linux procps      # simulated hosts: ip, unshare, nsenter, ps
  redis-server redis-tools nginx-light  # real servers the network tests migrate
  python3                         # Debian's python3: code_after_move.sh imports C extensions after a move
  memcached                       # restarted on its port (migctl-sockets-restart); lowers RLIMIT_NOFILE to 1024 (migration-memcached)
  groff-base man-db               # man-pages test: the pages rendered by groff -ww and man --warnings
  libsodium-dev                   # host-to-host links: the X25519 handshake, ChaCha20-Poly1305 records; the cluster key's HMAC
  libssl-dev                      # the links' records sealed by OpenSSL's libcrypto, loaded when used (shadow/record_cipher.h)
  tcpdump                         # cluster test: a capture on the simulated bridge holds no plaintext
  libtomlplusplus-dev             # shadowd --policy FILE: TOML parsed by toml++ (docs/policies.md)
  slurmctld slurmd slurm-client munge  # migration-slurm: a batch job moved live when Slurm drains its node
  sqlite3                         # migration-sqlite: Debian's sqlite3 reads the database at home and checks its integrity
  make                            # migration-tree-move: a make -j2 build is a real process tree
)

mig_install_deps() {
  local missing=() p
  for p in "${MIG_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "mig: installing missing packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "mig: need root (or sudo) to install: ${missing[*]}" >&2; return 1; }
    sudo=sudo
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { echo "mig: apt-get install failed for: ${missing[*]}" >&2; return 1; }
}

# mig_build DIR [meson options...]: configure DIR if needed, then build it.
mig_build() {
  local dir=$1; shift
  mkdir -p "$dir"
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$MIG_ROOT" "$@" >"$dir/mig-setup.log" 2>&1 ||
      { cat "$dir/mig-setup.log" >&2; echo "mig: meson setup of $dir failed" >&2; return 1; }
  fi
  echo "mig: building $dir"
  ninja -C "$dir" >"$dir/mig-build.log" 2>&1 ||
    { grep -E 'error|FAILED' -A5 "$dir/mig-build.log" | head -60 >&2
      echo "mig: build of $dir failed (log: $dir/mig-build.log)" >&2; return 1; }
}
