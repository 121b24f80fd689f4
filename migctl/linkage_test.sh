#!/bin/bash
# migctl's start is part of every restart's time (docs/design.md "Speed of the paths
# that copy"): it must load no shared library but libc's, so that the dynamic loader
# resolves a few libc symbols rather than thousands of Cap'n Proto's, KJ's and
# libstdc++'s. A dependency added without its static copy (migctl/meson.build) shows here.
# Args: MIGCTL
set -u
migctl=$1
source "$(dirname "$0")/../tests/lib/check.sh"
check_setup migctl-linkage
readelf -d "$migctl" > "$dir/dynamic" 2>&1 || { bad "readelf -d $migctl" "$dir/dynamic"; exit 1; }
needed=$(sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' "$dir/dynamic" | sort | tr '\n' ' ')
# The loader itself is named for DT_RELR's symbol version (GLIBC_ABI_DT_RELR).
if [ "$needed" = "ld-linux-x86-64.so.2 libc.so.6 " ] || [ "$needed" = "libc.so.6 " ]; then
  ok "migctl needs no shared library but libc's"
else
  bad "migctl needs shared libraries besides libc's: $needed" "$dir/dynamic"
fi
if grep -q '(RELR)' "$dir/dynamic"; then
  ok "migctl's relative relocations are packed (DT_RELR)"
else
  bad "migctl has no DT_RELR table (linked without -z pack-relative-relocs)" "$dir/dynamic"
fi
# Nor libcrypto linked in: its constructor (cpuid, which traps to the hypervisor on a
# VM) and its relocated tables ran on every restart (issue 14; the links' cipher
# loads it with dlopen at a link's handshake only: shadow/record_cipher.h).
nm "$migctl" > "$dir/symbols" 2>&1 || { bad "nm $migctl" "$dir/symbols"; exit 1; }
if grep -m5 'OPENSSL_' "$dir/symbols" > "$dir/openssl"; then
  bad "migctl has OpenSSL's libcrypto linked in" "$dir/openssl"
else
  ok "migctl carries no libcrypto"
fi
"$migctl" --version > "$dir/version" 2>&1 && grep -q '^mig ' "$dir/version" && ok "migctl runs" ||
  bad "migctl --version" "$dir/version"
exit $((fails > 0))
