@0xbbf5b68ecd651e11;
# The RPC interfaces between shadowd daemons (TCP, after the cluster-key login) and
# between shadowd and the local tools (migctl, the deputy) on its owner-only Unix
# socket. A forwarded system call travels as the opaque bytes of rsc/wire.h.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mig::rpc");

interface Gate {
  # What a shadowd's TCP port offers before login: nothing but the challenge.
  challenge @0 () -> (nonce :Data);
  login @1 (proof :Data, clientNonce :Data) -> (node :Node, proof :Data);
  # proof = HMAC-SHA256(clusterKey, "mig-login" || nonce); the server answers with
  # HMAC-SHA256(clusterKey, "mig-server" || clientNonce) so the client knows it too
  # talks to a cluster member.
}

struct JobTicket {
  # What identifies a migrated job and authorises its calls home.
  jobId @0 :UInt64;
  token @1 :Data;          # 32 random bytes made by the home shadowd
  home @2 :Text;           # the home shadowd's address (host:port)
  vpid @3 :Int32;          # the job's PID at home
  command @4 :Text;        # for listings
  network @5 :NetworkPolicy;  # what becomes of its sockets on the new host
  sysv @6 :List(SysvName);  # the System V objects the job brings (a tree's, on its root's
                            # ticket): their keys and ids must be free on the new host, or
                            # it refuses the job before anything is frozen
  keepDeputy @7 :Bool;     # a hop home that keeps the job's deputy: a tree whose members
                           # share memory or System V objects comes home as moved jobs
                           # (shadow/tree_homecoming.h)
  awayPids @8 :List(Int32);  # the kernel PIDs on the sending host of the job's children born
                             # away that come with it (issue 12): restored with the same
                             # PIDs, so they must be free on the new host, or it refuses
                             # the job before anything is frozen
  keptFrozen @9 :Bool;     # a single job's hop home: its sender keeps it frozen until home's
                           # commit answers, so a restart at home that fails early gives the
                           # job back (deputy/homecoming.h); a tree's members do not
}

struct SysvName {
  # A System V IPC object as the kernel names it (resources/sysv_names.h).
  kind @0 :Text;           # "shm", "sem" or "msg"
  key @1 :Int32;           # 0: IPC_PRIVATE
  id @2 :Int32;
}

enum NetworkPolicy {
  # Where a migrated job's network is (migctl migrate --help says when to choose which).
  home @0;      # its sockets stay at home, and the internet sockets it makes are made there
  local @1;     # its sockets stay at home; the ones it makes are the new host's (--local-net)
  rebind @2;    # its listening TCP sockets are made again on the new host, at the same
                # port; its TCP connections are reset; new sockets are the host's (--rebind)
}

enum MigrationMode {
  # How a hop copies the job's memory (migctl migrate --precopy / --stop-and-copy).
  best @0;         # pre-copy where the job's writes can be tracked, else stop-and-copy
  precopy @1;      # copy while the job runs, then freeze for what it wrote meanwhile
  stopAndCopy @2;  # freeze, copy everything
  postcopy @3;     # freeze for the state and the small regions, run there at once; the big
                   # regions' pages follow on fault and in the background (PageSource)
}

struct NodeInfo {
  hostname @0 :Text;
  address @1 :Text;
  load1 @2 :Float64;       # /proc/loadavg
  jobs @3 :UInt32;         # jobs running on this host (local and migrated in)
  memAvailableKiB @4 :UInt64;
  drained @5 :Bool;        # migctl drain: refuses new jobs (docs/policies.md)
  ownerBack @6 :Bool;      # its own processes are busy (owner returns): refuses new jobs
  runnable @7 :Float64;    # threads running or waiting for a CPU on this host, averaged
                           # over the balance window (shadow/runnable.h): its own load,
                           # unlike load1, which simulated hosts on one machine share
  cpus @8 :Float64;        # the CPUs it counts as its own ([balance] cpus)
}

interface Node {
  # A shadowd as its peers see it after login.
  info @0 () -> (info :NodeInfo);

  receive @1 (ticket :JobTicket, imageBytes :UInt64) -> (sink :ImageSink, home :Bool);
  # An incoming migration: the image is streamed to `sink`; refused with an exception
  # (no room, binaries missing, ...). `home`: this host is the job's home and its
  # deputy is here: the job will be restored into the deputy (deputy/homecoming.h).

  sendJob @2 (jobId :UInt64, token :Data, to :Text, network :NetworkPolicy, mode :MigrationMode, only :Bool) -> (result :MigrationResult);
  # Asked by the job's home: migrate job `jobId`, which runs here, to `to`. `only`:
  # the process alone, even if it has children here (migctl migrate --only).

  deputy @3 (jobId :UInt64, token :Data, location :Text, relayed :Bool) -> (deputy :Deputy, lostAfterMs :UInt64, stops :JobStops);
  # Asked of the job's home by the host the job runs on: the job's deputy, through
  # which its calls go home; `stops`, where that host tells home the job's stops there
  # (JobStops). `location` is the asking host's address: from now on the job is there.
  # `relayed`: this login is the job's own link home (its link process, `shadowd
  # --no-direct-link` there): home watches it for liveness, and a
  # login that breaks and is not made again within `lostAfterMs` (the job's limit:
  # its MIG_LINK_LOST_AFTER, else home's --link-lost-after) loses the job at home as a
  # direct link's deputy would (listed "lost", the deputy ends with status 87).

  signal @4 (jobId :UInt64, token :Data, signal :Int32, info :Data, toGroup :Bool) -> ();
  # Asked of the host the job runs on by its home: deliver `signal` to the job; with
  # `toGroup`, to its process group here (the job leads it: the job and its children
  # born here, deputy/stand_in.h), also for a few seconds after the job ended.
  # `info`: the siginfo_t the deputy got (128 bytes), or empty (as kill(2) sends it);
  # queued with its si_code, si_pid, si_uid and si_value where the kernel allows
  # (negative si_code other than SI_TKILL), else sent with kill(2).

  jobEnded @5 (jobId :UInt64, token :Data, status :Int32) -> ();
  # Told to the job's home by the host it ran on: wait status (as waitpid gives it).

  clock @6 () -> (realtimeNs :Int64);
  # This host's CLOCK_REALTIME, in nanoseconds since the epoch: a host that receives a
  # job measures how far home's clock is from its own (NTP style, several exchanges)
  # so the job's realtime clock can follow home's.

  setupCheck @7 (jobId :UInt64, token :Data) -> (problem :Text);
  # Asked by the job's home once a move to this host is done: what keeps the job from
  # working here as it did (one line: its home fds that could not be watched for its
  # readiness stand-ins), empty if nothing. Resolves once the stand-ins made at the
  # restore are watched or have failed.

  drain @8 (drained :Bool, all :Bool, timeLimitMs :UInt64) -> (moves :List(JobMove));
  # migctl drain / undrain of this host, asked from another: see Local.drain.
  commitHop @9 (jobId :UInt64, token :Data) -> (realPid :Int32, restoreMs :Float64);
  # ImageSink.commit for a job restored here up to "ready" whose sender ended (or lost
  # its link) after giving the job up: asked by the sender's shadowd, which saw it do
  # so. Within the transfer timeout of the sink's done; after it the copy is gone.

  directLink @10 (jobId :UInt64, token :Data) -> (address :Text, key :Data, lostAfterMs :UInt64);
  # Asked of the job's home by the host the job runs on: a ticket for a link of its own
  # straight to the job's deputy (shadow/direct_link.h), so its calls home no longer
  # pass through either shadowd. `address` (host:port) takes the first connection
  # within 10 s, and after it the link's resumptions with the same key; `key` (32
  # bytes, derived from the cluster key for this job and this ticket) keys those
  # connections' secure_stream handshakes in place of the cluster key. `lostAfterMs`:
  # a link that stays broken this long is given up by both ends, the job taken as lost
  # (home's shadowd --link-lost-after; 0 from an older home: the relay's default).

  claimSlot @11 (srcShare :Float64, minShareGain :Float64) -> (granted :Bool, reason :Text, claim :SlotClaim);
  # Asked by a host whose policy (balance, placement) means to send a job here, before
  # the move: granted when the job would still get at least `minShareGain` more CPU here
  # than the `srcShare` it has where it runs, counting the slots already promised here
  # (docs/policies.md, "Coordination between hosts"). Granted: `claim` holds the slot
  # until settled or dropped. Refused: `reason`, one line with the figures.

  sendTree @12 (jobs :List(JobKey), to :Text, network :NetworkPolicy, mode :MigrationMode) -> (result :MigrationResult);
  # Asked by the home of a process tree that moved here together (docs/design.md,
  # "Moving a process tree"): send every one of `jobs` (its root first), all running
  # here, to `to` in one freeze, all or nothing.

  resumePages @13 (jobId :UInt64, token :Data, source :PageSource) -> (finished :Bool);
  # Asked of the host a post-copy hop went to by its sender, over a new connection, when
  # its page link may be broken (no page asked for a while): `source` serves the pages
  # from now on, a page request waiting on the old link is asked again of it. `finished`:
  # the destination had every page already (its PageSource.finished may have been lost
  # with the old link). Fails when the job's pages could not come (it was ended there).

  treeOf @14 (jobId :UInt64, token :Data) -> (jobs :List(JobKey), hosts :List(Text), pids :List(Int32));
  # Asked of a job's home by a host it runs on (a drain there, shadow/drain.cc): the live
  # members of the process tree it moved with, its root first, where each runs and its
  # PID at home (`hosts[i]`, `pids[i]` for `jobs[i]`); all empty when it moved alone.


  homecomingOutcome @15 (jobId :UInt64, token :Data, vpid :Int32) -> (outcome :HomecomingOutcome);
  # Asked of a job's home (PID `vpid` there) by the host that keeps the job frozen and
  # stopped after a hop home whose commit got no answer (home's shadowd died then, or a
  # partition): whether home took the job (docs/design.md "A hop back home").
}

enum HomecomingOutcome {
  undecided @0;  # not known yet (home's restart of it still runs, or its deputy has not
                 # registered again): ask again
  resume @1;     # its deputy serves it away: the kept copy goes on
  end @2;        # home took it (it runs or ran there), or it is gone there: end the copy
}

struct JobKey {
  # A job as its home names it to another host.
  jobId @0 :UInt64;
  token @1 :Data;
}

interface SlotClaim {
  # A slot a host promised to a job another host's policy sends it (Node.claimSlot).
  settle @0 (arrived :Bool) -> ();
  # The move is over. Arrived: the job runs there now, and the slot counts until that
  # host's load average shows the job (one window). Not arrived: the slot is free again,
  # as it is when the capability is dropped unsettled.
}

struct JobMove {
  # One job moved off a draining host (or not).
  vpid @0 :Int32;           # its PID at home
  home @1 :Text;            # its home: name in the nodes file, else address
  command @2 :Text;
  moved @3 :Bool;
  destination @4 :Text;     # where it went (moved), or ""
  freezeMs @5 :Float64;     # how long it was frozen (moved)
  error @6 :Text;           # why it could not move (not moved)
}

interface ImageSink {
  write @0 (bytes :Data) -> ();
  # The sender keeps several writes in flight (a fixed window of its own: capnp's
  # stream flow control sizes its window by SO_SNDBUF, far below a useful one).
  done @1 () -> (realPid :Int32, restoreMs :Float64);
  # The image is complete: restore it up to "ready, not running" (every check passed,
  # fds in place, the restorer not started yet). Throws (and leaves nothing behind)
  # when it cannot be restored. Nothing of the job runs here before commit.
  commit @2 (treeHop :UInt64, treeMembers :UInt32) -> (realPid :Int32, restoreMs :Float64, homeFailed :Text);
  # Phase two of the hop: the sender has given the job up (at home it is the deputy
  # now). The job is released and runs here; returns once its calls reach home. A
  # sink dropped, or not committed within the transfer timeout, after done: the
  # prepared copy is killed and its image deleted (docs/design.md, "One hop").
  # A hop home (the sender keeps the job frozen until this answers): `homeFailed`
  # non-empty says the restore at home failed before anything of the deputy was
  # given up and the deputy is back; the sender resumes the job where it was.
  # A tree's hop home names itself (`treeHop`, the sender's random number, the same for
  # every member) and its count of members: home lets none of them run until every
  # one's restorer is at its point of no return (shadow/home_gate.h), or brings every
  # deputy back. 0 members: one job's hop.
  postcopy @3 (source :PageSource) -> ();
  # Before the freeze of a post-copy hop: the image's postcopyPages (section 15) are
  # fetched from `source` by the restored job's page server once it runs here.
  # Refused (exception) where this host cannot serve missing pages (no userfaultfd).
  # Returns once this host is ready to take the frozen job (home's clock measured, the
  # job's restart started and waiting for the image), or after 2 s without that.
}

interface PageSource {
  # The sender of a post-copy hop (shadow/send_command.cc) serving the frozen job's
  # memory to the destination's page server (resources/network_page_source.h).
  read @0 (addr :UInt64, len :UInt64) -> (bytes :Data);
  # The job's pages [addr, addr+len), as they were at the freeze.
  finished @1 () -> ();
  # The destination has every page: the sender may let the frozen job go (deputy).
}

struct MigrationResult {
  freezeMs @0 :Float64;     # the job was frozen this long
  imageBytes @1 :UInt64;
  transferMs @2 :Float64;
  restoreMs @3 :Float64;
  destination @4 :Text;
  problem @5 :Text;         # the job runs at the destination but cannot work there as it
                            # did (Node.setupCheck): migctl says so and exits non-zero
  mode @6 :Text;               # "pre-copy" or "stop-and-copy"
  modeNote @7 :Text;           # why stop-and-copy when pre-copy was not asked against
  bytesBeforeFreeze @8 :UInt64;  # image bytes sent while the job ran (pre-copy rounds)
  bytesDuringFreeze @9 :UInt64;
  rounds @10 :UInt32;          # pre-copy rounds
  bytesAfterFreeze @11 :UInt64;  # post-copy: page bytes fetched by the destination after it
}

interface Deputy {
  # The job's home process, exec'd in place of the job at its first migration.
  call @0 (request :Data) -> (reply :Data);     # one forwarded system call (rsc/wire.h)
  ended @1 (status :Int32) -> ();                # the job ended with this wait status
  watch @2 (fd :Int32, readiness :Readiness) -> (watch :ReadinessWatch);
  # Watch the job's home fd `fd` for readability (shim/forward/readiness_stand_in.h):
  # `readiness.ready` is called when it is readable, then not again until a call that
  # takes input from the same file has run. Dropping `watch` ends it.

  openDirectLink @3 (key :Data, host :Text, plaintext :Bool, lostAfterMs :UInt64) -> (port :UInt16, lostAfterMs :UInt64);
  # From the home shadowd (Node.directLink): listen on `host`, port chosen by the
  # kernel, for connections keyed with `key` (secure_stream; in clear only when the
  # cluster runs --insecure-plaintext-links), and serve this Deputy on the newest: the
  # first within 10 s, then the link's resumptions after a break (shadow/direct_link.h).
  # A link broken (not closed) for `lostAfterMs` with no resumption: the job is lost
  # (Local.linkLost), the deputy exits with status 87. A new ticket replaces the old.
  # The answer's `lostAfterMs`: the limit the deputy keeps (the job's own,
  # MIG_LINK_LOST_AFTER, else the one asked), which the relay is given too.

  becomeJob @4 (image :Text, log :Text, migctl :Text, fault :Text, comeBack :Bool, gate :Text) -> ();
  # From the home shadowd, once a hop back home is committed (the job's process away
  # has ended): the deputy stops taking calls, ends or cancels the ones it runs
  # (deputy/homecoming.h), answers, then execs `migctl restart IMAGE --homecoming`
  # in place, its stderr appended to `log`: the job runs local again in this process.
  # With `comeBack` (the job's sender keeps it frozen: JobTicket.keptFrozen), a restart
  # that fails before the restorer execs the deputy again, which registers again
  # (deputy/homecoming.h); without, such a failure loses the job (killed). `fault`: shadowd's MIG_FAULT for the restart
  # (hop:home-restore:..., shadow/hop_fault.h), else empty. `gate`: a tree's hop home,
  # the socket where the restorer waits for its tree's go (shadow/home_gate.h), else empty.

  keepRecord @5 (record :HomeRecord) -> ();
  # From the home shadowd whenever the job's record there changes (where it runs): the
  # deputy keeps it and gives it back when it registers again with a restarted shadowd
  # (Local.registerDeputy with `again`), which learns the job back from it.

  cancel @6 (thread :UInt32, seq :UInt64) -> ();
  # The job's thread `thread` (its virtual TID) took a signal its program handles while
  # its call `seq` waits here (a read of a home stream; rsc/wire.h kCancel): that call
  # ends as soon as it can, with EINTR if it has done nothing yet, else with what it
  # did; its answer goes the usual way (call @0). A cancel that comes before its call
  # answers the call EINTR when it comes. Resolves once the call no longer waits.

  pushReads @7 (fd :Int32, from :UInt64, fresh :Bool, window :UInt32, sink :PushSink)
      -> (at :UInt64, end :PeekEnd, pushing :PushHandle);
  # Reads pushed ahead (shadow/pushed_reads.h): the bytes of the job's blocking
  # SOCK_STREAM socket or pipe `fd` from stream offset `from` on (offsets count the
  # bytes `taken` read; `fresh`: from wherever the stream is, `at` says where) go to
  # `sink` as they arrive, at most `window` of them not yet taken, looked at without
  # taking them: they stay in the kernel at home until `taken`, so a checkpoint, a hop
  # or a return home loses none. Until `pushing` is dropped, or the stream's end.

  taken @8 (fd :Int32, at :UInt64, reads :Data) -> ();
  # The job's reads (`reads`: their request headers, rsc/wire.h, each asking exactly
  # the bytes it was given) were served from peeked bytes starting at offset `at`:
  # they run at home now, in order, each answered for a call sent again
  # (deputy/answered.h). A batch sent again after a broken link runs once.
}

interface JobStops {
  # Home's shadowd, told by the job's link process (its parent where it runs) that the
  # job was stopped or continued there (a `kill -STOP` there, not from home): it stops
  # or continues the deputy alike, so the job's parent at home sees what a local
  # parent would (waitpid WUNTRACED, WCONTINUED). Not while the job moves, nor from a
  # host it no longer runs on; a stop that came from home is not followed again.
  stopped @0 (signal :Int32) -> ();
  continued @1 () -> ();
}

interface PushSink {
  bytes @0 (at :UInt64, data :Data, end :PeekEnd, error :Int32) -> ();
  # The stream's bytes from offset `at`; `end` other than `more`: nothing comes after.
}

interface PushHandle {
  # Held by the job's host while it wants the bytes.
}

enum PeekEnd {
  more @0;          # bytes; more may come
  endOfStream @1;   # no byte left: the peer closed (reads return 0)
  failed @2;        # no byte left and the stream failed with `error` (ECONNRESET)
  notPushable @3;   # not a blocking stream socket or pipe: its reads stay calls
  outOfStep @4;     # `from` is behind what was taken (someone else read it): start afresh
  shared @5;        # another process at home may read it (deputy/sole_reader.h): its reads stay calls
}

struct HomeRecord {
  # What a home shadowd knows of a job that runs elsewhere, beside its id and token,
  # kept by its deputy for a restarted shadowd.
  location @0 :Text;        # address of the shadowd of the host it runs on
  command @1 :Text;
  startedAt @2 :Float64;    # CLOCK_REALTIME seconds
  treeRoot @3 :UInt64;      # moved with a process tree: its root's job id; 0: alone
  relayed @4 :Bool;         # its calls come through home's shadowd (Node.deputy relayed): a
                            # restarted shadowd gives it its limit to come back
}

interface GuestControl {
  # The control lines between a job's link process and its shadowd (shadow/link_process.h)
  # once the link process has announced itself to a restarted shadowd (Local.relearnGuest):
  # each side's bytes, in order, to the other; the end of the connection ends them.
  write @0 (bytes :Data) -> ();
}

interface Readiness {
  # The relay's end of a readiness stand-in: each call puts one token into it.
  ready @0 () -> ();
}

interface ReadinessWatch {
  # Held by the relay for as long as its stand-in connection lives.
}

struct JobStatus {
  vpid @0 :Int32;
  home @1 :Text;
  location @2 :Text;
  state @3 :Text;           # running, migrating, deputy, lost
  rssKiB @4 :UInt64;
  ageSeconds @5 :Float64;
  command @6 :Text;
  jobId @7 :UInt64;
}

interface Local {
  # shadowd's Unix socket (owner-only): migctl and the deputies.
  list @0 () -> (jobs :List(JobStatus));
  nodes @1 () -> (nodes :List(NodeStatus));
  migrate @2 (pid :Int32, to :Text, network :NetworkPolicy, mode :MigrationMode, only :Bool) -> (result :MigrationResult);
  # `only`: the process alone; without it a process with children is refused until
  # trees move whole (issue 12).
  registerDeputy @3 (jobId :UInt64, token :Data, deputy :Deputy, again :Bool, record :HomeRecord, standIn :Int32, lostAfterMs :UInt64) -> ();
  # `again`: a deputy whose shadowd restarted, with the record it was given (keepRecord);
  # the deputy must be the job's process at home (SO_PEERCRED: its PID, this user).
  # `standIn`: the PID of its group stand-in (deputy/stand_in.h; 0: none), whose death
  # with the deputy's tells a SIGKILL of the group.
  # `lostAfterMs`: the job's own limit for a broken link (MIG_LINK_LOST_AFTER); 0: home's.
  deputySignal @4 (jobId :UInt64, token :Data, signal :Int32, info :Data, toGroup :Bool) -> ();
  # From the deputy: a signal sent to the job's PID at home, with its siginfo_t
  # (128 bytes; empty: none), for the host the job runs on (Node.signal). `toGroup`:
  # one sent to the job's group at home (its stand-in caught it too,
  # deputy/stand_in.h), for the job's group there.
  history @5 () -> (moves :List(MoveRecord));
  # The moves asked of this shadowd (migrate), oldest first; the last 100 since it started.
  drain @6 (node :Text, drained :Bool, all :Bool, timeLimitMs :UInt64) -> (moves :List(JobMove), node :Text);
  # migctl drain (drained) / undrain: `node` (a name or address; "" = this host) refuses
  # new jobs, and every job that migrated in there leaves for the least loaded host that
  # accepts it (with `all`, the jobs at home there too); a move is not started after
  # timeLimitMs (0: the host's policy). Answers once every move is done, one per job.
  place @7 (pid :Int32) -> (moved :Bool, destination :Text, freezeMs :Float64, reason :Text);
  # migctl run --anywhere: the job `pid`, just started here, goes to the host where it
  # gets the most CPU (shadow/balance.h, placeJob), or stays (moved false, `reason`).
  relearnGuest @8 (guest :GuestRecord, control :GuestControl) -> (control :GuestControl);
  # From the link process (mig-link) of a job that runs here, once its shadowd restarted:
  # the job is this host's guest again. The caller must be that link process (SO_PEERCRED:
  # this user, its PID, the job's parent) and home must not refuse the token; `control`
  # carries the control lines both ways from then on.
  linkLost @9 (jobId :UInt64, token :Data, downMs :UInt64, limitMs :UInt64) -> ();
  # From the deputy: the job's direct link has been broken for `downMs`, past the limit
  # `limitMs` (--link-lost-after, or the job's own): the job is taken as lost (listed
  # "lost", logged) and the deputy exits with status 87 once this is answered.
}

struct GuestRecord {
  # A running guest, as its link process tells a restarted shadowd.
  jobId @0 :UInt64;
  token @1 :Data;
  home @2 :Text;
  vpid @3 :Int32;           # its PID at home
  realPid @4 :Int32;        # its process here (the link process's child)
  linkPid @5 :Int32;        # the link process
  command @6 :Text;
  startedAt @7 :Float64;    # when it came here, CLOCK_REALTIME seconds
  socket @8 :Text;          # where its shim sends its calls (link-ID.sock)
  forwardedCalls @9 :UInt64;  # its calls and bytes forwarded so far (the metrics)
  forwardedBytesOut @10 :UInt64;
  forwardedBytesIn @11 :UInt64;
  network @12 :NetworkPolicy;  # what it was moved here with (a drain moves it on with it)
}

struct MoveRecord {
  # One `migctl migrate` as this shadowd saw it (migctl history).
  time @0 :Float64;         # when it was asked, CLOCK_REALTIME seconds
  pid @1 :Int32;            # the job's PID at home
  jobId @2 :UInt64;         # 0: refused at its first move (it never became a job)
  from @3 :Text;            # node name (--nodes file) or address it ran on
  to @4 :Text;              # node name or address asked for
  network @5 :NetworkPolicy;
  ok @6 :Bool;
  freezeMs @7 :Float64;     # 0 unless ok
  error @8 :Text;           # why it failed; "" when ok
  command @9 :Text;
}

struct NodeStatus {
  name @0 :Text;
  address @1 :Text;
  reachable @2 :Bool;
  error @3 :Text;
  info @4 :NodeInfo;
}
