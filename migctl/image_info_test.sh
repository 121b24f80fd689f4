#!/bin/bash
# migctl image info, as a user runs it: good image, damaged images, bad usage.
# Args: MIGCTL SAMPLE_IMAGE_TOOL
set -u
migctl=$1 sample=$2
source "$(dirname "$0")/../tests/lib/check.sh"
check_setup image-info
check() {  # check NAME EXPECTED_RC PATTERN -- CMD...
  local name=$1 want=$2 pattern=$3; shift 4
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq "$want" ] && grep -qE -- "$pattern" <<<"$out"; then
    ok "$name"
  else
    bad "$name (exit $rc, wanted $want, pattern '$pattern')"
    echo "$out" | sed 's/^/    /'
  fi
}
"$sample" "$dir/good.img" 3 2 || { echo "FAIL - cannot make a sample image"; exit 1; }
size=$(stat -c %s "$dir/good.img")

check "info lists sections" 0 'pages +[0-9]+ +[0-9]+ +24576' -- "$migctl" image info "$dir/good.img"
check "an image without an owner says so" 0 '^  owner     not recorded' -- "$migctl" image info "$dir/good.img"
check "verify passes on a good image" 0 'verified: all 5 sections' -- "$migctl" image info --verify "$dir/good.img"
check "plan shows threads" 0 'thread 1234 \(main\)' -- "$migctl" image info --plan "$dir/good.img"

head -c $((size / 2)) "$dir/good.img" > "$dir/cut.img"
check "truncated image names the section" 1 '^migctl: image truncated: section 2 \(pages\)' -- "$migctl" image info "$dir/cut.img"

cp "$dir/good.img" "$dir/flip.img"
printf '\x55' | dd of="$dir/flip.img" bs=1 seek=9000 conv=notrunc status=none
check "a flipped data byte fails verify" 1 'section 2 \(pages\).*data checksum mismatch' -- "$migctl" image info --verify "$dir/flip.img"

echo "not an image" > "$dir/text.img"
check "a text file is not an image" 1 'not a mig image' -- "$migctl" image info "$dir/text.img"
check "a missing file says so" 1 'cannot open image .*No such file' -- "$migctl" image info "$dir/none.img"
check "no file is a usage error" 2 "^migctl image info: missing argument FILE \\(try 'migctl image info --help'\\)$" -- "$migctl" image info
check "unknown command is a usage error" 2 "^migctl: frobnicate: unknown command \\(try 'migctl --help'\\)$" -- "$migctl" frobnicate
check "--help works" 0 'image info FILE' -- "$migctl" --help
check "image --help works" 0 'verify' -- "$migctl" image info --help

[ "$fails" -eq 0 ]
