# What `migctl ... --json` prints: one JSON object per command, made from these
# structs by capnp::JsonCodec, so the field names are these names and stay stable
# (docs/json.md says what each means). Ordinals are never renumbered; fields are only
# added. Sizes in bytes are Float64 (whole numbers; JSON numbers stay exact up to 2^53)
# because Cap'n Proto writes 64-bit integers as JSON strings.
@0xc76bb0d67037a10d;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mig::migctl::out");

struct Job {
  pid @0 :Int32;             # the job's PID at home (its virtual PID, forever)
  jobId @1 :Text;            # shadowd's id of the job, decimal ("0": not registered)
  home @2 :Text;             # home host (address as shadowd knows it)
  location @3 :Text;         # host it runs on now
  state @4 :Text;            # e.g. "running", "migrating", "running (migrated in)"
  rssKiB @5 :Float64;        # resident memory, KiB
  ageSeconds @6 :Float64;    # since it started
  command @7 :Text;          # its program
}

struct JobList {
  jobs @0 :List(Job);        # `migctl list --json`
}

struct Node {
  name @0 :Text;             # name in shadowd's nodes file (what --to takes)
  address @1 :Text;          # HOST:PORT
  reachable @2 :Bool;        # answered and logged in
  error @3 :Text;            # why not, when not reachable ("" otherwise)
  hostname @4 :Text;         # the host's own name (reachable only)
  load1 @5 :Float64;         # 1-minute load average (reachable only)
  jobs @6 :UInt32;           # jobs running there (reachable only)
  memAvailableKiB @7 :Float64;  # MemAvailable, KiB (reachable only)
  drained @8 :Bool;          # migctl drain: takes no new jobs (reachable only)
  ownerBack @9 :Bool;        # owner returns policy: its own processes are busy, takes no new jobs
  runnable @10 :Float64;     # threads running or waiting for a CPU there, averaged (reachable only)
  cpus @11 :Float64;         # the CPUs it counts as its own (reachable only)
}

struct NodeList {
  nodes @0 :List(Node);      # `migctl nodes --json`
}

struct Migration {
  pid @0 :Int32;             # the job moved (its PID at home)
  ok @1 :Bool;               # true: it runs on `destination` now; false: where it was
  error @2 :Text;            # why it failed ("" when ok)
  requested @3 :Text;        # what --to said (or "anywhere")
  destination @4 :Text;      # the host it went to (address)
  freezeMs @5 :Float64;      # how long the job was frozen
  imageBytes @6 :Float64;    # size of its image
  transferMs @7 :Float64;    # capture and send
  restoreMs @8 :Float64;     # restore on the destination
  problem @9 :Text;          # moved, but it cannot work there as it did: why ("" when none; exit status 3)
  mode @10 :Text;            # "pre-copy", "post-copy" or "stop-and-copy" ("" when it did not move)
  modeNote @11 :Text;        # why stop-and-copy although pre-copy was not refused by the user
  rounds @12 :UInt32;        # pre-copy rounds sent while the job ran
  bytesBeforeFreeze @13 :Float64;  # image bytes sent while the job ran
  bytesDuringFreeze @14 :Float64;  # image bytes sent while it was frozen
  bytesAfterFreeze @15 :Float64;   # post-copy: page bytes sent after the job ran on (0 otherwise)
}

struct Checkpoint {
  pid @0 :Int32;             # the process checkpointed
  file @1 :Text;             # the image written
  imageBytes @2 :Float64;
  pages @3 :Float64;         # memory pages saved
  threads @4 :UInt32;
  fds @5 :UInt32;
  frozenMs @6 :Float64;      # how long the process was frozen
  stopped @7 :Bool;          # --stop: the process ended (status 86) after the image
  mode @8 :Text;             # "concurrent: ..." or "stop-the-world[: why not concurrent]"
}

struct Section {
  index @0 :UInt32;
  type @1 :Text;             # section type name, or "unknown(N)"
  offset @2 :Float64;        # byte offset of its frame in the file
  metadataBytes @3 :UInt32;
  dataBytes @4 :Float64;
}

struct ImageInfo {
  file @0 :Text;
  fileBytes @1 :Float64;
  formatVersion @2 :UInt32;
  command @3 :Text;          # the process's program (argv[0])
  pid @4 :Int32;             # its virtual PID
  jobId @5 :Text;            # decimal; "0" when it never registered with a shadowd
  created @6 :Text;          # when, "YYYY-MM-DD HH:MM:SS UTC"
  createdUnixSeconds @7 :Float64;
  hostname @8 :Text;         # host that wrote it
  kernel @9 :Text;           # its kernel release
  arch @10 :Text;
  pageSize @11 :UInt32;
  cpuVendor @12 :Text;
  xcr0 @13 :Text;            # XSAVE components, hex "0x..."
  xsaveBytes @14 :UInt32;
  avx @15 :Bool;
  avx2 @16 :Bool;
  avx512f @17 :Bool;
  restorableHere @18 :Bool;  # this host's CPU can restore its register state
  notRestorableBecause @19 :Text;  # why not ("" when it can)
  sections @20 :List(Section);
  verified @21 :Bool;        # --verify: every checksum was read and matched
  ownerKnown @22 :Bool;      # false in images made before owners were recorded
  ownerUid @23 :UInt32;      # the process's real uid and gid as the kernel reported them:
  ownerGid @24 :UInt32;      # a restart runs as them
}

struct Move {
  time @0 :Text;             # when it was asked, UTC, ISO 8601 ("2026-12-06T14:30:05.123Z")
  unixTime @1 :Float64;      # the same, seconds since 1970
  pid @2 :Int32;             # the job's PID at home
  jobId @3 :Text;            # shadowd's id of the job, decimal ("0": refused at its first move)
  from @4 :Text;             # node name (shadowd's --nodes file) or address it ran on
  to @5 :Text;               # node name or address it was sent to
  mode @6 :Text;             # its network: "home", "local-net" or "rebind" (migrate's options)
  ok @7 :Bool;               # true: it moved; false: it stayed where it was
  outcome @8 :Text;          # "moved" or "failed"
  freezeMs @9 :Float64;      # how long it was frozen (0 when it failed)
  error @10 :Text;           # why it failed ("" when ok)
  command @11 :Text;         # its program
}

struct MoveList {
  moves @0 :List(Move);      # oldest first; the last 100 moves asked of this host's shadowd
}
