// `migctl migrate`, `migctl list`, `migctl nodes`: what a user asks of this host's
// shadowd, over its local socket (rsc/mig.capnp, Local).
#include "image/image_error.h"
#include "migctl/commands.h"
#include "migctl/json_output.h"
#include "migctl/local_link.h"
#include "resources/proc_file.h"
#include "shadow/error.h"
#include "shadow/local_socket.h"
#include "shadow/mig.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <ctime>
#include <sys/utsname.h>
#include <unistd.h>

namespace mig::migctl {
namespace {

using image::fail;

constexpr uint64_t kMigrateTimeoutMs = 600000;
constexpr uint64_t kQueryTimeoutMs = 20000;

kj::String human(double seconds) {
  if (seconds < 120) return kj::str(static_cast<int>(seconds), "s");
  if (seconds < 7200) return kj::str(static_cast<int>(seconds / 60), "m");
  return kj::str(static_cast<int>(seconds / 3600), "h");
}

constexpr const char* kMigrateAbout =
    "Moves the job PID (as its home host knows it) to another host, live: it goes on "
    "there from where it was, its PID, files, terminal and parent stay at home. Run it "
    "on the job's home host, also to move a job that already migrated elsewhere.";
constexpr const char* kMigrateMore =
    "Its sockets stay at home: connections, listening sockets and bound addresses go "
    "on working, and the internet sockets it creates after the move are made at home "
    "too, so it keeps its network identity. Default (keep the network at home) when "
    "clients know the job by its home address or connections must not break; --rebind "
    "when clients find it again by themselves and the detour home would cost too much. "
    "Exit status: 0 moved; 1 not moved (it goes on where it was, one line says why); "
    "3 moved, but it cannot work there as it did (one line says why: its home sockets, "
    "pipes or terminal cannot be watched, so poll and epoll on them will not wake); "
    "5 this host's shadowd was lost during the hop, which may have moved the job (see "
    "`migctl list` on the destination). "
    "Its memory is copied while it runs (pre-copy: rounds, each sending what it wrote "
    "since the one before), then it is frozen only for what it wrote meanwhile and the "
    "rest of its state; where its writes cannot be tracked (a kernel before 6.7 or "
    "without userfaultfd) it is frozen for the whole copy (stop-and-copy), and the "
    "result line says so. A process with children moves with them (pre-copy as one "
    "process does, rounds of every member's memory, then one freeze of all), each "
    "becoming a deputy at home (and on with them from where they went); a tree that "
    "cannot move (a member not under mig, memory shared between members, a child born "
    "away from home) is refused before anything is frozen, with one line naming the "
    "member. --only moves the process alone, its children stay where they are.";

struct MigrateOptions {
  kj::String socket;
  kj::String pidArg;
  kj::String to;
  bool haveTo = false;
  bool anywhere = false;
  bool json = false;
  rpc::NetworkPolicy network = rpc::NetworkPolicy::HOME;
  rpc::MigrationMode mode = rpc::MigrationMode::BEST;
  bool only = false;
};

int migrate(const MigrateOptions& o, long pid);

kj::MainBuilder::Validity chooseNetwork(MigrateOptions& o, rpc::NetworkPolicy chosen) {
  if (o.network != rpc::NetworkPolicy::HOME && o.network != chosen) {
    return "--local-net and --rebind exclude each other: choose one";
  }
  o.network = chosen;
  return true;
}

kj::MainBuilder::Validity chooseMode(MigrateOptions& o, rpc::MigrationMode chosen) {
  if (o.mode != rpc::MigrationMode::BEST && o.mode != chosen) {
    return "--precopy, --postcopy and --stop-and-copy exclude each other: choose one";
  }
  o.mode = chosen;
  return true;
}

}  // namespace

kj::MainFunc migrateMain(cli::Context& cli) {
  auto opts = kj::heap<MigrateOptions>();
  MigrateOptions& o = *opts;
  kj::MainBuilder b(cli, cli::kVersion, kMigrateAbout, kMigrateMore);
  addSocketOption(b, o.socket)
      .addOptionWithArg({"to"}, [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
        o.to = kj::str(v);
        o.haveTo = true;
        return true;
      }, "NODE|HOST:PORT", "the destination: a name from shadowd's --nodes file, or an address")
      .addOption({"anywhere"}, [&o]() -> kj::MainBuilder::Validity {
        o.anywhere = true;
        return true;
      }, "the destination is the least loaded other host that answers (lowest 1-minute load, then "
         "fewest jobs; 'other': its host name is not this host's)")
      .addOption({"json"}, [&o]() -> kj::MainBuilder::Validity {
        o.json = true;
        return true;
      }, "print the result as one line of JSON, also when the move fails (docs/json.md)")
      .addOption({"local-net"}, [&o]() { return chooseNetwork(o, rpc::NetworkPolicy::LOCAL); },
                 "the internet sockets it creates on the new host are that host's (its own address, "
                 "no detour home): for jobs that want the new host's network. Sockets it already "
                 "had stay at home.")
      .addOption({"rebind"}, [&o]() { return chooseNetwork(o, rpc::NetworkPolicy::REBIND); },
                 "for a service behind a load balancer or a virtual IP: its listening TCP sockets "
                 "are made again on the new host, at the same port on every address; its TCP "
                 "connections are reset, so their peers reconnect (to the new host); new sockets "
                 "are the new host's. Its TCP service no longer passes through home (UDP sockets, "
                 "pipes, its terminal and files still do).")
      .addOption({"precopy"}, [&o]() { return chooseMode(o, rpc::MigrationMode::PRECOPY); },
                 "pre-copy, or fail if the job's writes cannot be tracked here")
      .addOption({"stop-and-copy"}, [&o]() { return chooseMode(o, rpc::MigrationMode::STOP_AND_COPY); },
                 "freeze first, then copy everything")
      .addOption({"postcopy"}, [&o]() { return chooseMode(o, rpc::MigrationMode::POSTCOPY); },
                 "freeze it only for its state and small regions and run it there at once; its big "
                 "memory regions follow, the pages it touches first (the destination needs root or "
                 "vm.unprivileged_userfaultfd = 1; a broken link is waited for and the pages go on once it is "
                 "back; if no page comes for shadowd's --transfer-timeout, the job is ended, exit status 4)")
      .addOption({"only"}, [&o]() -> kj::MainBuilder::Validity {
        o.only = true;
        return true;
      }, "move the process alone, even if it has children: they stay where they are (at home: "
         "the deputy's children, its waits for them go home)")
      .expectArg("PID", [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
        o.pidArg = kj::str(v);
        return true;
      })
      .callAfterParsing([&o, &cli]() -> kj::MainBuilder::Validity {
        long pid = 0;
        if (!parsePid(o.pidArg.cStr(), pid)) return kj::str("'", o.pidArg, "' is not a process ID");
        if (o.haveTo && o.anywhere) return "--to and --anywhere exclude each other: choose one";
        if (!o.haveTo && !o.anywhere) return "no destination given (--to NODE or --anywhere)";
        cli.status = migrate(o, pid);
        return true;
      });
  return cli::owning(kj::mv(opts), b.build());
}

namespace {

// --anywhere: the reachable node with the lowest load (then fewest jobs) whose host
// name is not this host's, by its name in the nodes file.
kj::String idlestOtherNode(LocalLink& link) {
  struct utsname self {};
  uname(&self);
  auto r = link.wait(link.local.nodesRequest().send(), kQueryTimeoutMs, "asking shadowd for its nodes");
  kj::Maybe<rpc::NodeStatus::Reader> best;
  for (auto n : r.getNodes()) {
    if (!n.getReachable() || n.getInfo().getHostname() == self.nodename) continue;
    KJ_IF_MAYBE(b, best) {
      auto bi = b->getInfo(), ni = n.getInfo();
      if (ni.getLoad1() > bi.getLoad1() || (ni.getLoad1() == bi.getLoad1() && ni.getJobs() >= bi.getJobs())) continue;
    }
    best = n;
  }
  KJ_IF_MAYBE(b, best) { return kj::str(b->getName()); }
  fail(kj::str("no other host answers (migctl nodes lists the hosts this shadowd knows)"));
}

int migrate(const MigrateOptions& o, long pid) {
  LocalLink link(o.socket);
  capnp::MallocMessageBuilder out;
  auto j = out.initRoot<out::Migration>();
  j.setPid(static_cast<int32_t>(pid));
  j.setRequested(o.anywhere ? kj::StringPtr("anywhere") : o.to.asPtr());
  j.setError("");  // unset Text is left out of the JSON: every field is always there
  j.setDestination("");
  j.setProblem("");
  j.setMode("");
  j.setModeNote("");
  kj::String to;
  bool asked = false;  // the hop was asked of shadowd: from then on it may be under way
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    to = o.anywhere ? idlestOtherNode(link) : kj::str(o.to);
    if (!o.json) {
      printf("migrating %ld to %s ...\n", pid, to.cStr());
      fflush(stdout);
    }
    auto req = link.local.migrateRequest();
    req.setPid(static_cast<int32_t>(pid));
    req.setTo(to);
    req.setNetwork(o.network);
    req.setMode(o.mode);
    req.setOnly(o.only);
    asked = true;
    auto r = link.wait(req.send(), kMigrateTimeoutMs, "the migration");
    auto m = r.getResult();
    j.setOk(true);
    j.setDestination(m.getDestination());
    j.setFreezeMs(m.getFreezeMs());
    j.setImageBytes(static_cast<double>(m.getImageBytes()));
    j.setTransferMs(m.getTransferMs());
    j.setRestoreMs(m.getRestoreMs());
    j.setProblem(m.getProblem());
    j.setMode(m.getMode());
    j.setModeNote(m.getModeNote());
    j.setRounds(m.getRounds());
    j.setBytesBeforeFreeze(static_cast<double>(m.getBytesBeforeFreeze()));
    j.setBytesDuringFreeze(static_cast<double>(m.getBytesDuringFreeze()));
    j.setBytesAfterFreeze(static_cast<double>(m.getBytesAfterFreeze()));
    if (m.getMode() == "postcopy-lost") {
      // Running there, its memory still half here, when the link broke (send_command.cc):
      // ended, neither moved nor left here.
      j.setOk(false);
      j.setError(m.getProblem());
      if (!o.json) {
        fprintf(stderr, "migctl migrate: %ld was moved to %s post-copy, but its memory could not follow: %s\n", pid,
                m.getDestination().cStr(), m.getProblem().cStr());
      }
      return;
    }
    if (m.getMode() == "deputy-died") {
      // Its process at home ended as it became its deputy (send_command.cc): ended
      // there too, neither moved nor left here.
      j.setOk(false);
      j.setError(m.getProblem());
      if (!o.json) {
        fprintf(stderr, "migctl migrate: %ld was moved to %s, but it cannot go on: %s\n", pid, m.getDestination().cStr(),
                m.getProblem().cStr());
      }
      return;
    }
    if (m.getMode() == "unconfirmed") {
      // Given up here after the destination was ready, which then did not say it runs
      // (docs/design.md, "One hop"): neither "moved" nor "stays".
      j.setOk(false);
      if (!o.json) {
        fprintf(stderr, "migctl migrate: %ld was handed over to %s, which did not confirm that it runs: %s; "
                "it no longer runs here (see `migctl list` on %s)\n", pid, m.getDestination().cStr(),
                m.getProblem().cStr(), m.getDestination().cStr());
      }
      return;
    }
    if (m.getMode() == "recovered" && !o.json) {
      // Its sender ended between the two phases; shadowd finished the hop (design.md).
      printf("migrated %ld to %s (its sender gave the job up, then ended or lost the destination's answer; shadowd committed the move: no "
             "figures)\n", pid, m.getDestination().cStr());
    } else if (!o.json) {
      // The figures in brackets are read by scripts (bench/migration_bench.sh): the mode
      // and the bytes sent before and while frozen come after them.
      constexpr double kMiB = 1 << 20;
      printf("migrated %ld to %s: frozen %.1f ms (image %.1f MiB, captured and sent in %.1f ms, restored in %.1f ms); ",
             pid, m.getDestination().cStr(), m.getFreezeMs(), static_cast<double>(m.getImageBytes()) / kMiB,
             m.getTransferMs(), m.getRestoreMs());
      auto note = m.getModeNote().size() > 0 ? kj::str(" (", m.getModeNote(), ")") : kj::str("");
      if (m.getMode() == "post-copy") {
        printf("post-copy: %.1f MiB sent while frozen, %.1f MiB after it ran on\n",
               static_cast<double>(m.getBytesDuringFreeze()) / kMiB, static_cast<double>(m.getBytesAfterFreeze()) / kMiB);
      } else if (m.getMode() == "pre-copy") {
        printf("pre-copy%s, %u rounds: %.1f MiB sent while it ran, %.1f MiB while frozen\n", note.cStr(), m.getRounds(),
               static_cast<double>(m.getBytesBeforeFreeze()) / kMiB, static_cast<double>(m.getBytesDuringFreeze()) / kMiB);
      } else {
        printf("stop-and-copy%s: %.1f MiB sent while frozen\n", note.cStr(), static_cast<double>(m.getBytesDuringFreeze()) / kMiB);
      }
    }
    if (m.getProblem().size() > 0 && !o.json) {
      fflush(stdout);
      fprintf(stderr, "migctl migrate: %ld moved to %s but cannot work there as it did: %s\n", pid,
              m.getDestination().cStr(), m.getProblem().cStr());
    }
  })) {
    auto why = shadow::oneLine(e->getDescription());
    // shadowd gone while it ran the hop: its sender finishes a hop on its own, so the
    // job may run at the destination now. Neither "moved" nor "stays" is known.
    const bool unknown = asked && e->getType() == kj::Exception::Type::DISCONNECTED;
    if (unknown) {
      fprintf(stderr, "migctl migrate: lost contact with shadowd during the hop of %ld to %s (%s): the job may have "
              "moved; check `migctl list` on %s, or here once shadowd runs again\n", pid, to.cStr(), why.cStr(),
              to.cStr());
    } else if (!resources::processRuns(static_cast<pid_t>(pid))) {
      fprintf(stderr, "migctl migrate: %ld ended while it was being moved to %s; nothing was moved (%s)\n", pid,
              to.size() > 0 ? to.cStr() : o.anywhere ? "another host" : o.to.cStr(), why.cStr());
    } else {
      fprintf(stderr, "migctl migrate: %ld stays where it was: moving it to %s failed: %s\n", pid,
              to.size() > 0 ? to.cStr() : o.anywhere ? "another host" : o.to.cStr(), why.cStr());
    }
    if (o.json) {
      j.setOk(false);
      j.setError(why);
      j.setDestination(to);
      if (unknown) j.setMode("unknown");
      printJson(j.asReader());
    }
    return unknown ? 5 : 1;
  }
  if (o.json) printJson(j.asReader());
  if (j.getMode() == "unconfirmed" || j.getMode() == "postcopy-lost" || j.getMode() == "deputy-died") return 4;
  return j.getProblem().size() > 0 ? 3 : 0;
}

struct QueryOptions {
  kj::String socket;
  bool json = false;
};

// A command that only asks shadowd (list, nodes): --socket, no arguments.
kj::MainFunc queryMain(cli::Context& cli, kj::StringPtr about, int (*body)(const QueryOptions&)) {
  auto opts = kj::heap<QueryOptions>();
  QueryOptions& o = *opts;
  kj::MainBuilder b(cli, cli::kVersion, about);
  addSocketOption(b, o.socket)
      .addOption({"json"}, [&o]() -> kj::MainBuilder::Validity {
        o.json = true;
        return true;
      }, "print the answer as one line of JSON (docs/json.md)")
      .callAfterParsing([&o, &cli, body]() -> kj::MainBuilder::Validity {
    cli.status = body(o);
    return true;
  });
  return cli::owning(kj::mv(opts), b.build());
}

int list(const QueryOptions& o) {
  kj::StringPtr socket = o.socket;
  LocalLink link(socket);
  auto r = link.wait(link.local.listRequest().send(), kQueryTimeoutMs, "asking shadowd for its jobs");
  if (o.json) {
    capnp::MallocMessageBuilder m;
    auto jobs = m.initRoot<out::JobList>().initJobs(r.getJobs().size());
    for (unsigned i = 0; i < jobs.size(); ++i) {
      auto j = r.getJobs()[i];
      auto o = jobs[i];
      o.setPid(j.getVpid());
      o.setJobId(kj::str(j.getJobId()));
      o.setHome(j.getHome());
      o.setLocation(j.getLocation());
      o.setState(j.getState());
      o.setRssKiB(static_cast<double>(j.getRssKiB()));
      o.setAgeSeconds(j.getAgeSeconds());
      o.setCommand(j.getCommand());
    }
    printJson(m.getRoot<out::JobList>().asReader());
    return 0;
  }
  printf("%-8s %-22s %-22s %-22s %9s %6s  %s\n", "PID", "HOME", "WHERE", "STATE", "RSS", "AGE", "COMMAND");
  for (auto j : r.getJobs()) {
    printf("%-8d %-22s %-22s %-22s %8lluK %6s  %s\n", j.getVpid(), j.getHome().cStr(), j.getLocation().cStr(),
           j.getState().cStr(), static_cast<unsigned long long>(j.getRssKiB()), human(j.getAgeSeconds()).cStr(),
           j.getCommand().cStr());
  }
  return 0;
}

int nodes(const QueryOptions& o) {
  kj::StringPtr socket = o.socket;
  LocalLink link(socket);
  auto r = link.wait(link.local.nodesRequest().send(), kQueryTimeoutMs, "asking shadowd for its nodes");
  if (o.json) {
    capnp::MallocMessageBuilder m;
    auto nodes = m.initRoot<out::NodeList>().initNodes(r.getNodes().size());
    for (unsigned i = 0; i < nodes.size(); ++i) {
      auto n = r.getNodes()[i];
      auto o = nodes[i];
      o.setName(n.getName());
      o.setAddress(n.getAddress());
      o.setReachable(n.getReachable());
      o.setError("");  // unset Text is left out of the JSON: every field is always there
      o.setHostname("");
      if (n.getReachable()) {
        auto info = n.getInfo();
        o.setHostname(info.getHostname());
        o.setLoad1(info.getLoad1());
        o.setJobs(info.getJobs());
        o.setMemAvailableKiB(static_cast<double>(info.getMemAvailableKiB()));
        o.setDrained(info.getDrained());
        o.setOwnerBack(info.getOwnerBack());
        o.setRunnable(info.getRunnable());
        o.setCpus(info.getCpus());
      } else {
        o.setError(n.getError());
      }
    }
    printJson(m.getRoot<out::NodeList>().asReader());
    return 0;
  }
  printf("%-12s %-22s %-12s %6s %5s %10s  %s\n", "NAME", "ADDRESS", "STATE", "LOAD", "JOBS", "MEM FREE", "HOSTNAME");
  for (auto n : r.getNodes()) {
    if (n.getReachable()) {
      auto i = n.getInfo();
      // Drained or busy with its owner's processes: up, but it takes no new jobs.
      const char* state = i.getDrained() ? "drained" : i.getOwnerBack() ? "owner-busy" : "up";
      printf("%-12s %-22s %-12s %6.2f %5u %9lluM  %s\n", n.getName().cStr(), n.getAddress().cStr(), state,
             i.getLoad1(), i.getJobs(), static_cast<unsigned long long>(i.getMemAvailableKiB() / 1024),
             i.getHostname().cStr());
    } else {
      printf("%-12s %-22s %-12s  (%s)\n", n.getName().cStr(), n.getAddress().cStr(), "unreachable", n.getError().cStr());
    }
  }
  return 0;
}

kj::StringPtr modeName(rpc::NetworkPolicy n) {
  switch (n) {
    case rpc::NetworkPolicy::LOCAL: return "local-net";
    case rpc::NetworkPolicy::REBIND: return "rebind";
    default: return "home";
  }
}

// "2026-12-06T14:30:05.123Z" (sep 'T', zone "Z") or "2026-12-06 14:30:05" (sep ' ').
kj::String utcTime(double unixSeconds, bool iso) {
  time_t whole = static_cast<time_t>(unixSeconds);
  struct tm tm {};
  gmtime_r(&whole, &tm);
  char buf[40];
  strftime(buf, sizeof(buf), iso ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm);
  if (!iso) return kj::str(buf);
  int ms = static_cast<int>((unixSeconds - static_cast<double>(whole)) * 1000);
  char frac[8];
  snprintf(frac, sizeof(frac), ".%03dZ", ms < 0 ? 0 : ms > 999 ? 999 : ms);
  return kj::str(buf, frac);
}

int history(const QueryOptions& o) {
  kj::StringPtr socket = o.socket;
  LocalLink link(socket);
  auto r = link.wait(link.local.historyRequest().send(), kQueryTimeoutMs, "asking shadowd for its moves");
  if (o.json) {
    capnp::MallocMessageBuilder m;
    auto moves = m.initRoot<out::MoveList>().initMoves(r.getMoves().size());
    for (unsigned i = 0; i < moves.size(); ++i) {
      auto v = r.getMoves()[i];
      auto j = moves[i];
      j.setTime(utcTime(v.getTime(), true));
      j.setUnixTime(v.getTime());
      j.setPid(v.getPid());
      j.setJobId(kj::str(v.getJobId()));
      j.setFrom(v.getFrom());
      j.setTo(v.getTo());
      j.setMode(modeName(v.getNetwork()));
      j.setOk(v.getOk());
      j.setOutcome(v.getOk() ? "moved" : "failed");
      j.setFreezeMs(v.getFreezeMs());
      j.setError(v.getError());
      j.setCommand(v.getCommand());
    }
    printJson(m.getRoot<out::MoveList>().asReader());
    return 0;
  }
  printf("%-19s %-8s %-16s %-16s %-9s %9s  %s\n", "TIME (UTC)", "PID", "FROM", "TO", "MODE", "FROZEN", "OUTCOME");
  for (auto v : r.getMoves()) {
    char frozen[32] = "-";
    if (v.getOk()) snprintf(frozen, sizeof(frozen), "%.1f ms", v.getFreezeMs());
    auto outcome = v.getOk() ? kj::str("moved") : kj::str("failed: ", v.getError());
    printf("%-19s %-8d %-16s %-16s %-9s %9s  %s\n", utcTime(v.getTime(), false).cStr(), v.getPid(),
           v.getFrom().cStr(), v.getTo().cStr(), modeName(v.getNetwork()).cStr(), frozen, outcome.cStr());
  }
  return 0;
}

}  // namespace

kj::MainFunc historyMain(cli::Context& cli) {
  return queryMain(cli,
                   "The moves asked of this host's shadowd (migctl migrate here), oldest first: "
                   "when, which job, from and to which host, its network mode, how long it was "
                   "frozen, and whether it moved or why not. shadowd keeps the last 100 since it "
                   "started.",
                   history);
}

kj::MainFunc listMain(cli::Context& cli) {
  return queryMain(cli,
                   "Jobs on this host: those started here (also where they run now) and those that "
                   "migrated here.",
                   list);
}

kj::MainFunc nodesMain(cli::Context& cli) {
  return queryMain(cli,
                   "The hosts this host's shadowd knows (its --nodes file), whether they answer, and "
                   "their load.",
                   nodes);
}

}  // namespace mig::migctl
