// The call table is the only place a call is declared: a row added to a table (a
// test's, made from the real forward_calls.def plus one line) is seen by every part,
// its id lookup, the shim's marshalling, the deputy's dispatcher and each decision the
// shim and the deputy take from its properties (call_policy.h). And the real table's
// properties are the lists the shim and the deputy used to keep by call id.
#include "rsc/call_policy.h"
#include "rsc/dispatch.h"
#include "rsc/forward_rows.h"
#include "rsc/marshal.h"
#include "rsc/wire.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

// The test row's function, found by the dispatcher as a libc function would be (the
// test executable exports its symbols). It writes what it got into buf.
extern "C" __attribute__((visibility("default"))) long mig_test_call(long fd, char* buf, long count,
                                                                     const char* path, const int64_t* in) {
  char text[128];
  const int n = snprintf(text, sizeof text, "fd=%ld path=%s in=%lld", fd, path, static_cast<long long>(*in));
  const long len = n < count ? n : count;
  memcpy(buf, text, static_cast<size_t>(len));
  return len;
}

namespace mig::rsc {
namespace {

using namespace rows;

// A system call number no x86_64 call has.
constexpr long kTestSysno = 500;
constexpr CallId kTestCall = static_cast<CallId>(kCallCount + 1);

// The real rows, then the one line a new call would be.
constexpr Row kTestRows[] = {
#define MIG_CALL(name, id, ...) withId(CallId::name, __VA_ARGS__),
#include "rsc/forward_calls.def"
    withId(kTestCall, call(kTestSysno, "mig_test_call", Ret::Long, Blocking::OnStream, 0,
                           {F, outBuf(2), I, P, inStruct(8)})
                          .with(kTakesInput | kSplitIo)
                          .ordered(Ordering::Always)
                          .handledBy(Handler::Receive)
                          .onDeputy(DeputyRuns::Worker)),
};
constexpr uint32_t kTestCount = sizeof(kTestRows) / sizeof(kTestRows[0]);
static_assert(tableIsSound(kTestRows, kTestCount));
constexpr Table kTestTable{kTestRows, kTestCount};

// What the shim knows, made up.
struct FakeFacts {
  bool cwdLocal = false;
  bool networkHome = true;
  int64_t homeFd = 3;
  bool cwdIsLocal() const { return cwdLocal; }
  bool internetSocketsAtHome() const { return networkHome; }
  bool pathIsHome(int64_t, const char* path) const { return path == nullptr || strncmp(path, "/home/", 6) == 0; }
  bool isHomeFd(int64_t fd) const { return fd == homeFd; }
};

int64_t P_(const void* p) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(p)); }

TEST_CASE("forward table: a row added to a table is found by its id and its system call") {
  const Row* row = kTestTable.byId(static_cast<uint32_t>(kTestCall));
  REQUIRE(row != nullptr);
  CHECK(row->function == std::string("mig_test_call"));
  const int64_t args[6] = {3, 0, 0, 0, 0, 0};
  CHECK(kTestTable.find(kTestSysno, args) == row);
  CHECK(kTestTable.byId(kTestCount + 1) == nullptr);
  // The real table knows nothing of it.
  CHECK(findRow(kTestSysno, args) == nullptr);
  CHECK(rowById(static_cast<uint32_t>(kTestCall)) == nullptr);
}

TEST_CASE("forward table: the added row is marshalled and dispatched from its spec") {
  const Row& row = *kTestTable.byId(static_cast<uint32_t>(kTestCall));
  Dispatcher deputy(true, kTestTable);
  char out[64] = {};
  const int64_t in = 42;
  const int64_t args[6] = {7, P_(out), sizeof out, P_("/home/x"), P_(&in), 0};
  std::vector<uint8_t> request(kMaxMessage);
  const int64_t n = encodeRequest(row, args, 9, 0, request.data(), request.size());
  REQUIRE(n > 0);
  kj::Array<kj::byte> reply = deputy.call(kj::arrayPtr(request.data(), static_cast<size_t>(n)));
  REQUIRE(reply.size() <= replyCapacity(row, args));
  int32_t error = -1;
  const int64_t r = decodeReply(row, args, 9, reply.begin(), reply.size(), &error);
  const std::string want = "fd=7 path=/home/x in=42";
  CHECK(r == static_cast<int64_t>(want.size()));
  CHECK(std::string(out) == want);

  // The real table's dispatcher does not run it: the table is the whitelist.
  Dispatcher real;
  reply = real.call(kj::arrayPtr(request.data(), static_cast<size_t>(n)));
  ReplyHeader h;
  memcpy(&h, reply.begin(), sizeof h);
  CHECK(h.error == ENOSYS);
}

TEST_CASE("forward table: the shim's and the deputy's decisions read the added row") {
  const Row& row = *kTestTable.byId(static_cast<uint32_t>(kTestCall));
  // Blocking::OnStream: patient on a stream only; may block when run here.
  CHECK(waitsPatiently(row, true));
  CHECK_FALSE(waitsPatiently(row, false));
  CHECK_FALSE(neverBlocksHere(&row, kTestSysno));
  // Input: readiness drained (streams only) and re-armed by the deputy.
  CHECK(drainsReadiness(row, true));
  CHECK_FALSE(drainsReadiness(row, false));
  CHECK(rearmsReadiness(row));
  // Not pipelinable; ordered after pipelined writes even on a file.
  CHECK_FALSE(isPipelined(row, true, false));
  CHECK_FALSE(mayComePipelined(row));
  CHECK(waitsForWrites(row, false));
  CHECK(isSplit(row, uint64_t{kMaxIo} + 1));
  CHECK_FALSE(isSplit(row, kMaxIo));
  // The handler the shim gives it, and where the deputy runs it (a worker, even on a file).
  CHECK(row.handler == Handler::Receive);
  CHECK(deputyRuns(row, FdKind::File, false) == Runs::Worker);
  // Where it goes: by its path.
  FakeFacts facts;
  int64_t a[6] = {5, 0, 0, P_("/home/x"), 0, 0};
  CHECK(whereRowGoes(row, a, facts) == Where::Home);
  a[3] = P_("/tmp/x");
  CHECK(whereRowGoes(row, a, facts) == Where::Local);
}

TEST_CASE("forward table: a dup3 onto a stream waits for the writes pipelined to it") {
  // bash's `echo x >&5` restores its stdout (a file, saved at 10) with dup3(10, 1)
  // right after its pipelined write to 1 (the FIFO at 5): that write must run first.
  const Row& dup3 = rowOf(CallId::Dup3);
  const int64_t a[6] = {10, 1, 0, 0, 0, 0};
  const auto isStream = [](int64_t fd) { return fd == 1; };
  CHECK(waitsForWrites(dup3, namesStream(dup3, a, isStream)));
  const int64_t other[6] = {10, 2, 0, 0, 0, 0};
  CHECK_FALSE(waitsForWrites(dup3, namesStream(dup3, other, isStream)));
  const int64_t fromStream[6] = {1, 10, 0, 0, 0, 0};
  CHECK(waitsForWrites(dup3, namesStream(dup3, fromStream, isStream)));
}

TEST_CASE("forward table: the decisions follow each property, not the call") {
  FakeFacts facts;
  Row r = call(kTestSysno, "f", Ret::Int, Blocking::Never, 0, {F, I});
  CHECK(neverBlocksHere(&r, kTestSysno));
  CHECK_FALSE(waitsPatiently(r, true));
  CHECK(deputyRuns(r, FdKind::File, false) == Runs::Here);
  CHECK(deputyRuns(r, FdKind::Stream, false) == Runs::Worker);
  CHECK(deputyRuns(r, FdKind::NonBlockingStream, false) == Runs::HereOnce);
  CHECK(deputyRuns(r, FdKind::NonBlockingStream, true) == Runs::Worker);
  CHECK(waitsForWrites(r, true));
  CHECK_FALSE(waitsForWrites(r, false));
  CHECK_FALSE(waitsForWrites(r.ordered(Ordering::Never), true));
  // Write-behind: what is not held back for every write waits for those to files,
  // but for a stream's read.
  CHECK(writesToWaitFor(r, true) == WaitFor::AllWrites);
  CHECK(writesToWaitFor(r, false) == WaitFor::FileWrites);
  CHECK(writesToWaitFor(r.ordered(Ordering::Never), true) == WaitFor::Nothing);
  CHECK(writesToWaitFor(r.ordered(Ordering::Never), false) == WaitFor::FileWrites);
  CHECK(writesToWaitFor(r.ordered(Ordering::Always), false) == WaitFor::AllWrites);
  CHECK(waitsPatiently(call(kTestSysno, "f", Ret::Int, Blocking::Always, -1, {I}), false));
  int64_t a[6] = {3, 0, 0, 0, 0, 0};
  CHECK(whereRowGoes(r, a, facts) == Where::Home);
  a[0] = 4;
  CHECK(whereRowGoes(r, a, facts) == Where::Local);
  CHECK(whereRowGoes(r.goes(Locality::Home), a, facts) == Where::Home);
  CHECK(whereRowGoes(r.goes(Locality::Cwd), a, facts) == Where::Home);
  facts.cwdLocal = true;
  CHECK(whereRowGoes(r.goes(Locality::Cwd), a, facts) == Where::Local);
  a[0] = AF_INET6;
  CHECK(whereRowGoes(r.goes(Locality::NetworkPolicy), a, facts) == Where::Home);
  facts.networkHome = false;
  CHECK(whereRowGoes(r.goes(Locality::NetworkPolicy), a, facts) == Where::Local);
  a[0] = AF_UNIX;
  facts.networkHome = true;
  CHECK(whereRowGoes(r.goes(Locality::NetworkPolicy), a, facts) == Where::Local);
  // Two paths, one at home and one here: the call cannot be made on either host.
  const Row rename = call(kTestSysno, "f", Ret::Int, Blocking::Briefly, 0, {F, P, F, P});
  const int64_t two[6] = {AT_FDCWD, P_("/home/a"), AT_FDCWD, P_("/tmp/b"), 0, 0};
  CHECK(whereRowGoes(rename, two, facts) == Where::Both);
  // A NULL path after a dirfd is that fd (futimens is utimensat(fd, NULL, ...)); with
  // AT_FDCWD it is nothing here, and fails at home as it would here.
  const Row at = call(kTestSysno, "f", Ret::Int, Blocking::Briefly, 0, {F, P, I});
  const int64_t homeFd[6] = {3, 0, 0, 0, 0, 0}, localFd[6] = {4, 0, 0, 0, 0, 0}, cwd[6] = {AT_FDCWD, 0, 0, 0, 0, 0};
  CHECK(whereRowGoes(at, homeFd, facts) == Where::Home);
  CHECK(whereRowGoes(at, localFd, facts) == Where::Local);
  CHECK(whereRowGoes(at, cwd, facts) == Where::Home);
  // The blocking mode a SetsBlockingMode call leaves, from its argument's kind.
  const int64_t setfl[6] = {3, F_SETFL, O_NONBLOCK, 0, 0, 0};
  CHECK_FALSE(pipelinesAfter(fcntlRow(F_SETFL), setfl));
  const int on = 1, off = 0;
  const int64_t fionbio[6] = {3, FIONBIO, P_(&on), 0, 0, 0};
  CHECK_FALSE(pipelinesAfter(ioctlRow(FIONBIO, inStruct(kIntSize)), fionbio));
  const int64_t fionbioOff[6] = {3, FIONBIO, P_(&off), 0, 0, 0};
  CHECK(pipelinesAfter(ioctlRow(FIONBIO, inStruct(kIntSize)), fionbioOff));
}

TEST_CASE("forward table: a RawSyscall row runs the system call itself, not the libc function") {
  // getpid has no row in the real table; as a raw row its "function" is only a name.
  constexpr Row rows[] = {withId(static_cast<CallId>(1), call(SYS_getpid, "no_such_function", Ret::Long,
                                                              Blocking::Never, -1, {})
                                                             .fixedUp(Fixup::RawSyscall))};
  static_assert(tableIsSound(rows, 1));
  const Table table{rows, 1};
  Dispatcher deputy(true, table);
  const int64_t args[6] = {};
  uint8_t request[sizeof(RequestHeader)];
  const int64_t n = encodeRequest(rows[0], args, 1, 0, request, sizeof request);
  REQUIRE(n == static_cast<int64_t>(sizeof request));
  kj::Array<kj::byte> reply = deputy.call(kj::arrayPtr(request, sizeof request));
  int32_t error = -1;
  CHECK(decodeReply(rows[0], args, 1, reply.begin(), reply.size(), &error) == getpid());
}

// --- the real table -----------------------------------------------------------------

// One call of a real row, as the shim and the deputy make it; -errno on failure.
int64_t forwardHere(long sysno, const int64_t args[6]) {
  const Row* row = findRow(sysno, args);
  REQUIRE(row != nullptr);
  static Dispatcher deputy;
  std::vector<uint8_t> request(kMaxMessage);
  const int64_t n = encodeRequest(*row, args, 5, 0, request.data(), request.size());
  REQUIRE(n > 0);
  kj::Array<kj::byte> reply = deputy.call(kj::arrayPtr(request.data(), static_cast<size_t>(n)));
  int32_t error = 0;
  const int64_t r = decodeReply(*row, args, 5, reply.begin(), reply.size(), &error);
  return r < 0 ? -error : r;
}

struct timespec mtimeOf(const char* path) {
  struct stat st;
  REQUIRE(stat(path, &st) == 0);
  return st.st_mtim;
}

TEST_CASE("forward table: file times at home: utimensat, futimens (its NULL path), utimes, futimesat") {
  char path[] = "/tmp/mig-times-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  struct timespec ts[2] = {{1000000000, 5}, {1100000000, 7}};
  int64_t args[6] = {AT_FDCWD, P_(path), P_(ts), 0, 0, 0};
  CHECK(forwardHere(SYS_utimensat, args) == 0);
  CHECK(mtimeOf(path).tv_sec == 1100000000);
  CHECK(mtimeOf(path).tv_nsec == 7);
  // futimens(fd, times): glibc's utimensat would say EINVAL for the NULL path.
  ts[1] = {1200000000, 9};
  const int64_t futimens[6] = {fd, 0, P_(ts), 0, 0, 0};
  CHECK(forwardHere(SYS_utimensat, futimens) == 0);
  CHECK(mtimeOf(path).tv_sec == 1200000000);
  // NULL times: now; a NULL path with flags is the kernel's EINVAL.
  const int64_t now[6] = {fd, 0, 0, 0, 0, 0};
  CHECK(forwardHere(SYS_utimensat, now) == 0);
  CHECK(mtimeOf(path).tv_sec > 1200000000);
  const int64_t bad[6] = {fd, 0, 0, AT_SYMLINK_NOFOLLOW, 0, 0};
  CHECK(forwardHere(SYS_utimensat, bad) == -EINVAL);
  const int64_t missing[6] = {AT_FDCWD, P_("/tmp/mig-times-none/x"), 0, 0, 0, 0};
  CHECK(forwardHere(SYS_utimensat, missing) == -ENOENT);

  struct timeval tv[2] = {{1300000000, 0}, {1300000000, 3}};
  const int64_t utimes[6] = {P_(path), P_(tv), 0, 0, 0, 0};
  CHECK(forwardHere(SYS_utimes, utimes) == 0);
  CHECK(mtimeOf(path).tv_sec == 1300000000);
  CHECK(mtimeOf(path).tv_nsec == 3000);
  tv[1] = {1400000000, 0};
  const int64_t futimesat[6] = {fd, 0, P_(tv), 0, 0, 0};
  CHECK(forwardHere(SYS_futimesat, futimesat) == 0);
  CHECK(mtimeOf(path).tv_sec == 1400000000);

  // A shim on another host sends futimens home only for a home fd.
  const Row& row = *findRow(SYS_utimensat, futimens);
  FakeFacts facts;
  facts.homeFd = fd;
  CHECK(whereRowGoes(row, futimens, facts) == Where::Home);
  facts.homeFd = fd + 1;
  CHECK(whereRowGoes(row, futimens, facts) == Where::Local);
  CHECK_FALSE(neverBlocksHere(&row, SYS_utimensat));
  ::close(fd);
  ::unlink(path);
}

// A row's name in these sets: its function, and the command of an fcntl or ioctl row.
std::string sel(const char* f, uint32_t s) { return std::string(f) + "#" + std::to_string(s); }

std::set<std::string> functionsWith(bool (*has)(const Row&)) {
  std::set<std::string> names;
  for (uint32_t i = 0; i < rowCount(); ++i) {
    const Row& r = rowAt(i);
    if (has(r)) names.insert(r.selectorArg >= 0 ? sel(r.function, r.selector) : std::string(r.function));
  }
  return names;
}

TEST_CASE("forward table: the real rows' properties") {
  using S = std::set<std::string>;
  CHECK(functionsWith([](const Row& r) { return r.blocking == Blocking::Always; }) ==
        S{"wait4", "waitid", "accept", "accept4", "connect", "flock"});
  CHECK(functionsWith([](const Row& r) { return r.blocking == Blocking::OnStream; }) ==
        S{"read", "write", "pread64", "pwrite64", "sendto", "recvfrom", "sendfile"});
  CHECK(functionsWith([](const Row& r) { return r.deputy == DeputyRuns::Worker; }) ==
        S{"openat", "wait4", "waitid", "mig_file_identity", sel("fcntl", F_SETLKW), sel("fcntl", F_OFD_SETLKW)});
  CHECK(functionsWith([](const Row& r) { return r.handler == Handler::WaitsForLock; }) ==
        S{sel("fcntl", F_SETLKW), sel("fcntl", F_OFD_SETLKW), "flock"});
  CHECK(functionsWith([](const Row& r) { return r.has(kPipelinable); }) == S{"write", "pwrite64"});
  CHECK(functionsWith([](const Row& r) { return r.has(kReportsWriteFailures); }) == S{"fsync", "fdatasync", "close"});
  // A pwrite64 goes behind to a file, never to a stream (ESPIPE comes at once).
  const Row& pwrite = rowOf(CallId::Pwrite64);
  CHECK(isPipelined(pwrite, true, false));
  CHECK_FALSE(isPipelined(pwrite, true, true));
  CHECK_FALSE(isPipelined(pwrite, false, false));
  CHECK(isPipelined(rowOf(CallId::Write), true, true));
  // A read of a file waits for the file writes before it; a pipe's read for none.
  CHECK(writesToWaitFor(rowOf(CallId::Read), false) == WaitFor::FileWrites);
  CHECK(writesToWaitFor(rowOf(CallId::Read), true) == WaitFor::Nothing);
  CHECK(writesToWaitFor(rowOf(CallId::Lseek), false) == WaitFor::FileWrites);
  CHECK(writesToWaitFor(rowOf(CallId::Close), true) == WaitFor::AllWrites);
  CHECK(functionsWith([](const Row& r) { return r.has(kSigpipeOnEpipe); }) == S{"write", "pwrite64"});
  CHECK(functionsWith([](const Row& r) { return r.has(kSplitIo); }) ==
        S{"read", "write", "pread64", "pwrite64", "sendto", "recvfrom"});
  CHECK(functionsWith([](const Row& r) { return r.has(kPositioned); }) == S{"pread64", "pwrite64"});
  CHECK(functionsWith([](const Row& r) { return r.ordering == Ordering::Always; }) == S{"kill"});
  CHECK(functionsWith([](const Row& r) { return r.ordering == Ordering::Never; }) == S{"read", "pread64"});
  CHECK(functionsWith([](const Row& r) { return r.handler == Handler::SetsBlockingMode; }) ==
        S{sel("fcntl", F_SETFL), sel("ioctl", FIONBIO)});
  CHECK(functionsWith([](const Row& r) { return r.handler == Handler::ChangeDir; }) == S{"chdir", "fchdir"});
  CHECK(functionsWith([](const Row& r) { return r.locality != Locality::ByArgs; }) ==
        S{"getcwd", "getppid", "socket", "mig_file_identity", "getpgid", "getsid", "setsid", "mig_child_lock"});
  CHECK(functionsWith([](const Row& r) { return r.handler == Handler::ProcessGroup; }) == S{"setpgid"});
  CHECK(functionsWith([](const Row& r) { return r.fixup == Fixup::CwdLength; }) == S{"getcwd"});
}

TEST_CASE("forward table: the calls without a row that never block are none of the rows'") {
  for (uint32_t i = 0; i < rowCount(); ++i) {
    CAPTURE(rowAt(i).function);
    CHECK_FALSE(neverBlocksHere(nullptr, rowAt(i).sysno));
  }
}

TEST_CASE("forward table: an old path call becomes a row's *at call") {
  const int64_t kCwd = AT_FDCWD;
  int count = 0;
#define MIG_OLD_FORM(old, sysno, ...)                                         \
  {                                                                            \
    long nr = old;                                                             \
    int64_t a[6] = {100, 101, 102, 103, 104, 105};                             \
    toAtForm(nr, a);                                                           \
    CHECK(nr == sysno);                                                        \
    CHECK(findRow(nr, a) != nullptr);                                          \
    ++count;                                                                   \
  }
#include "rsc/forward_calls.def"
  CHECK(count == 13);
  long nr = SYS_rename;
  int64_t a[6] = {P_("a"), P_("b"), 0, 0, 0, 0};
  toAtForm(nr, a);
  CHECK(nr == SYS_renameat);
  CHECK(a[0] == kCwd);
  CHECK(a[1] == P_("a"));
  CHECK(a[2] == kCwd);
  CHECK(a[3] == P_("b"));
  nr = SYS_fstat;
  a[0] = 5;
  toAtForm(nr, a);
  CHECK(nr == SYS_newfstatat);
  CHECK(a[0] == 5);
  CHECK(std::string(reinterpret_cast<const char*>(a[1])).empty());
  CHECK(a[3] == AT_EMPTY_PATH);
}

TEST_CASE("forward table: a lock call that would wait goes home as its non-blocking form") {
  int64_t attempt[6];
  const int64_t setlkw[6] = {3, F_SETLKW, 0x1000, 0, 0, 0};
  const Row* row = findRow(SYS_fcntl, setlkw);
  REQUIRE(row != nullptr);
  REQUIRE(lockAttempt(*row, setlkw, attempt));
  CHECK(attempt[1] == F_SETLK);
  CHECK(attempt[2] == 0x1000);
  CHECK(findRow(SYS_fcntl, attempt) != nullptr);
  const int64_t ofd[6] = {3, F_OFD_SETLKW, 0x1000, 0, 0, 0};
  REQUIRE(lockAttempt(*findRow(SYS_fcntl, ofd), ofd, attempt));
  CHECK(attempt[1] == F_OFD_SETLK);
  const int64_t ex[6] = {3, LOCK_EX, 0, 0, 0, 0};
  REQUIRE(lockAttempt(*findRow(SYS_flock, ex), ex, attempt));
  CHECK(attempt[1] == (LOCK_EX | LOCK_NB));
  const int64_t nb[6] = {3, LOCK_SH | LOCK_NB, 0, 0, 0, 0};
  CHECK(!lockAttempt(*findRow(SYS_flock, nb), nb, attempt));
  const int64_t un[6] = {3, LOCK_UN, 0, 0, 0, 0};
  CHECK(!lockAttempt(*findRow(SYS_flock, un), un, attempt));
  const int64_t setlk[6] = {3, F_SETLK, 0x1000, 0, 0, 0};
  CHECK(!lockAttempt(*findRow(SYS_fcntl, setlk), setlk, attempt));
  CHECK(lockIsTaken(-EAGAIN));
  CHECK(lockIsTaken(-EACCES));
  CHECK(!lockIsTaken(0));
  CHECK(!lockIsTaken(-EBADF));
}

TEST_CASE("call policy: a background group's read of its terminal stops it with TTIN, a write with TTOU, nothing else") {
  CHECK(terminalStopSignal(rowOf(CallId::Read)) == SIGTTIN);
  CHECK(terminalStopSignal(rowOf(CallId::Write)) == SIGTTOU);
  CHECK(terminalStopSignal(rowOf(CallId::Pwrite64)) == 0);  // a terminal has no offset: ESPIPE
  CHECK(terminalStopSignal(rowOf(CallId::Pread64)) == 0);
  CHECK(terminalStopSignal(rowOf(CallId::Close)) == 0);
}

}  // namespace
}  // namespace mig::rsc
