// mig-restore run on bad input: it must print one line "mig-restore: ..." on stderr and
// exit 127, before touching anything when the input is refused up front, and also when
// it fails halfway through a restore. Also the restorer binary's ELF properties: it
// must run from anywhere without a loader.
#include "restore/tests/plan_fixture.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <elf.h>
#include <fcntl.h>
#include <functional>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace mig::restore {
namespace {

using testing::PlanFixture;

std::string restorerPath() {
  const char* p = getenv("MIG_RESTORE");
  REQUIRE_MESSAGE(p != nullptr, "set MIG_RESTORE to the mig-restore binary (meson test does)");
  return p;
}

struct Result {
  int exitCode = -1;  // -1 if killed by a signal
  int signal = 0;
  std::string err;
};

// Runs mig-restore with `args` after `setup` ran in the child (fds 0-2 kept, everything
// else closed first).
Result run(const std::vector<std::string>& args, const std::function<void()>& setup) {
  const std::string path = restorerPath();
  int pipeFds[2];
  REQUIRE(pipe2(pipeFds, O_CLOEXEC) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(pipeFds[1], 2);
    syscall(SYS_close_range, 3, ~0u, 0);
    setup();
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>("mig-restore"));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    char* envp[] = {nullptr};
    execve(path.c_str(), argv.data(), envp);
    _exit(99);
  }
  close(pipeFds[1]);
  Result r;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipeFds[0], buf, sizeof(buf))) > 0) r.err.append(buf, static_cast<size_t>(n));
  close(pipeFds[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  if (WIFEXITED(status)) r.exitCode = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

// A memfd holding `bytes` at fd `at`.
void memfdAt(const void* bytes, size_t len, int at) {
  int fd = static_cast<int>(syscall(SYS_memfd_create, "plan", 0));
  if (fd < 0 || write(fd, bytes, len) != static_cast<ssize_t>(len) || dup2(fd, at) != at) _exit(98);
  if (fd != at) close(fd);
}

void planAt(const std::vector<uint64_t>& plan, int at = 20) { memfdAt(plan.data(), plan.size() * 8, at); }

// A regular file of `pages` pages of 0x5a at fd `at`.
void imageAt(int at = 21, int pages = 1, int flags = O_RDONLY) {
  char name[] = "/tmp/mig-restore-test-XXXXXX";
  int fd = mkstemp(name);
  std::vector<char> page(4096, 0x5a);
  for (int i = 0; i < pages; ++i) {
    if (write(fd, page.data(), page.size()) != 4096) _exit(98);
  }
  close(fd);
  fd = open(name, flags);
  unlink(name);
  if (fd < 0 || dup2(fd, at) != at) _exit(98);
  if (fd != at) close(fd);
}

// Exit 127 and exactly one line on stderr that starts with "mig-restore: " and contains `what`.
void expectFailure(const Result& r, const std::string& what) {
  CAPTURE(r.err);
  CHECK(r.signal == 0);
  CHECK(r.exitCode == 127);
  CHECK(r.err.rfind("mig-restore: ", 0) == 0);
  CHECK(r.err.find(what) != std::string::npos);
  CHECK(!r.err.empty());
  CHECK(r.err.back() == '\n');
  CHECK(r.err.find('\n') == r.err.size() - 1);
}

// A plan the restorer accepts up front: one thread, one anonymous region far from the
// restorer's own mappings.
constexpr uint64_t kBase = 0x10000000;
PlanFixture minimalPlan() {
  PlanFixture f;
  f.region(kBase, kBase + 0x10000);
  f.thread(kBase + 0x8000, true);
  return f;
}

TEST_CASE("arguments") {
  expectFailure(run({}, [] {}), "usage: mig-restore PLAN_FD IMAGE_FD");
  expectFailure(run({"20"}, [] {}), "usage");
  expectFailure(run({"20", "21", "22", "23"}, [] {}), "usage");
  expectFailure(run({"abc", "21"}, [] {}), "PLAN_FD is not a decimal fd number: abc");
  expectFailure(run({"20", "-1"}, [] {}), "IMAGE_FD is not a decimal fd number: -1");
}

TEST_CASE("its lines go to LOG_FD, not to fd 2, which is the job's") {
  // The pipe the test reads is at 22 only; fd 2 is /dev/null.
  expectFailure(run({"20", "21", "22"}, [] {
                  if (dup2(2, 22) != 22 || dup2(open("/dev/null", O_WRONLY), 2) != 2) _exit(98);
                }),
                "plan fd 20: errno 9");
  expectFailure(run({"20", "21", "x"}, [] {}), "plan fd 20: errno 9");  // a malformed LOG_FD: fd 2
}

TEST_CASE("unreadable or wrong plan fds") {
  expectFailure(run({"20", "21"}, [] {}), "plan fd 20: errno 9");
  expectFailure(run({"20", "21"}, [] { memfdAt("", 0, 20); }), "plan is empty");
  expectFailure(run({"20", "21"}, [] { imageAt(20, 1, O_WRONLY); }), "mapping the plan from fd 20: errno 13");
  expectFailure(run({"20", "21"}, [] { dup2(open("/tmp", O_RDONLY | O_DIRECTORY), 20); }),
                "mapping the plan from fd 20: errno 19");
  expectFailure(run({"20", "21"}, [] {
                  int p[2];
                  if (pipe(p) != 0 || dup2(p[0], 20) != 20) _exit(98);
                }),
                "plan is empty");
}

TEST_CASE("invalid plans are refused by plan::validate before anything changes") {
  const char junk[] = "this is not a plan, but it is long enough to hold a plan header if it were one ..."
                      "........................................................................"
                      "........................................................................"
                      "........................................................................"
                      "........................................................................";
  static_assert(sizeof(junk) >= sizeof(plan::Header));
  expectFailure(run({"20", "21"}, [&] { memfdAt(junk, sizeof(junk), 20); }), "invalid plan: plan has a wrong magic number");
  expectFailure(run({"20", "21"}, [&] { memfdAt(junk, 10, 20); }), "invalid plan: plan shorter than its header");
  auto plan = minimalPlan().build();
  expectFailure(run({"20", "21"}, [&] { memfdAt(plan.data(), plan.size() * 8 - 8, 20); }),
                "invalid plan: plan size mismatch");
  PlanFixture overlap = minimalPlan();
  overlap.region(kBase + 0x8000, kBase + 0x20000);
  auto bad = overlap.build();
  expectFailure(run({"20", "21"}, [&] { planAt(bad); }), "invalid plan: plan regions overlap or are unsorted");
}

TEST_CASE("unreadable or wrong image fds") {
  auto plan = minimalPlan().build();
  expectFailure(run({"20", "21"}, [&] { planAt(plan); }), "image fd 21: errno 9");
  expectFailure(run({"20", "21"}, [&] {
                  planAt(plan);
                  imageAt(21, 1, O_WRONLY);
                }),
                "image fd is not open for reading");
  expectFailure(run({"20", "21"}, [&] {
                  planAt(plan);
                  int p[2];
                  if (pipe(p) != 0 || dup2(p[0], 21) != 21) _exit(98);
                }),
                "image fd is not a regular file");
}

TEST_CASE("plans the restorer cannot carry out are refused up front") {
  SUBCASE("an application fd has the plan's number") {
    PlanFixture f = minimalPlan();
    f.fds.push_back(plan::Fd{20, 0});
    auto plan = f.build();
    expectFailure(run({"20", "21"}, [&] {
                    planAt(plan);
                    imageAt();
                  }),
                  "plan not restorable: the plan or image fd number is also an application fd (entry 0)");
  }
  SUBCASE("a thread's frame is outside restored memory") {
    PlanFixture f = minimalPlan();
    f.threads[0].sigframeAddr = kBase + 0x20000;
    auto plan = f.build();
    expectFailure(run({"20", "21"}, [&] {
                    planAt(plan);
                    imageAt();
                  }),
                  "signal frame address is not in readable restored memory (entry 0)");
  }
  SUBCASE("the image's vDSO is laid out differently") {
    PlanFixture f = minimalPlan();
    f.region(0x7e0000000000, 0x7e0000004000, PROT_READ, plan::kKindVvar);
    f.region(0x7e0000004000, 0x7e0000007000, PROT_READ, plan::kKindVvarVclock);  // 3 pages
    f.region(0x7e0000007000, 0x7e0000009000, PROT_READ | PROT_EXEC, plan::kKindVdso);
    auto plan = f.build();
    expectFailure(run({"20", "21"}, [&] {
                    planAt(plan);
                    imageAt();
                  }),
                  "cannot move the vDSO: [vvar_vclock] size differs from this kernel's");
  }
}

TEST_CASE("failures halfway through a restore still end with one line and exit 127") {
  SUBCASE("a region's file is missing") {
    PlanFixture f = minimalPlan();
    plan::Region& r = f.region(kBase + 0x100000, kBase + 0x101000, PROT_READ, plan::kKindFile);
    r.source = plan::kSourceFile;
    r.path = f.str("/nonexistent/lib.so");
    auto plan = f.build();
    expectFailure(run({"20", "21"}, [&] {
                    planAt(plan);
                    imageAt();
                  }),
                  "opening the file of region 0x10100000-0x10101000 (/nonexistent/lib.so): errno 2");
  }
  SUBCASE("the image ends before the saved pages") {
    PlanFixture f = minimalPlan();
    f.pages.push_back(plan::Pages{kBase, 0x2000, 0, 0, plan::kPagesCopy});
    auto plan = f.build();
    expectFailure(run({"20", "21"}, [&] {
                    planAt(plan);
                    imageAt(21, 1);
                  }),
                  "reading saved pages 0x10000000-0x10002000 at image offset 4096: the image file ends there");
  }
  SUBCASE("the kernel refuses the mm layout") {
    PlanFixture f = minimalPlan();
    f.header.flags = plan::kPlanHasMmLayout;
    plan::MmLayout& mm = f.header.mm;
    mm.startCode = kBase;
    mm.endCode = kBase + 0x1000;
    mm.startData = mm.endData = kBase + 0x2000;
    mm.startBrk = kBase + 0x4000;
    mm.brk = kBase + 0x3000;  // below start_brk
    mm.startStack = mm.argStart = mm.argEnd = mm.envStart = mm.envEnd = kBase + 0x8000;
    auto plan = f.build();
    expectFailure(run({"20", "21"}, [&] {
                    planAt(plan);
                    imageAt();
                  }),
                  "prctl(PR_SET_MM, PR_SET_MM_MAP) (mm start_brk is above brk): errno 22");
  }
  SUBCASE("an application fd is not open") {
    PlanFixture f = minimalPlan();
    f.fds.push_back(plan::Fd{55, plan::kFdCloexec});
    auto plan = f.build();
    expectFailure(run({"20", "21"}, [&] {
                    planAt(plan);
                    imageAt();
                  }),
                  "setting close-on-exec of application fd 55: errno 9");
  }
  SUBCASE("the rseq area cannot be registered") {
    PlanFixture f = minimalPlan();
    f.threads[0].kernel.rseqAddr = kBase + 0x1004;  // not 32-byte aligned
    f.threads[0].kernel.rseqLen = 32;
    f.threads[0].kernel.rseqSig = 0x53053053;
    auto plan = f.build();
    expectFailure(run({"20", "21"}, [&] {
                    planAt(plan);
                    imageAt();
                  }),
                  "rseq registration (also after clearing its cpu ids) for thread 100: errno 22");
  }
  SUBCASE("a second thread fails its set-up: the whole process ends before any thread resumes") {
    PlanFixture f = minimalPlan();
    f.thread(kBase + 0x9000, false).kernel.rseqAddr = kBase + 0x1004;
    f.threads[1].kernel.rseqSig = 0x53053053;
    auto plan = f.build();
    expectFailure(run({"20", "21"}, [&] {
                    planAt(plan);
                    imageAt();
                  }),
                  "rseq registration (also after clearing its cpu ids) for thread 101: errno 22");
  }
  SUBCASE("a second thread's alternate signal stack is refused: said by the main thread, which tries it first") {
    PlanFixture f = minimalPlan();
    f.thread(kBase + 0x9000, false).kernel.altStackSp = kBase + 0x2000;
    f.threads[1].kernel.altStackSize = 1024;  // under MINSIGSTKSZ
    auto plan = f.build();
    expectFailure(run({"20", "21"}, [&] {
                    planAt(plan);
                    imageAt();
                  }),
                  "sigaltstack for thread 101: errno 12");
  }
}

TEST_CASE("a hop home's restore that fails halfway execs the deputy named in its come-back table") {
  // The "deputy" is echo, its stdout the pipe the test reads: it says the arguments it
  // got after the restorer's line. The table and the carried answers stay open for it.
  PlanFixture f = minimalPlan();
  f.pages.push_back(plan::Pages{kBase, 0x2000, 0, 0, plan::kPagesCopy});
  auto plan = f.build();
  const std::string table = "deputy /bin/echo\nlink -1 00 0 0\njob-id 1\n";
  Result r = run({"20", "21", "2", "30", "31"}, [&] {
    planAt(plan);
    imageAt(21, 1);
    memfdAt(table.data(), table.size(), 30);
    memfdAt("", 0, 31);
    if (dup2(2, 1) != 1) _exit(98);
  });
  CAPTURE(r.err);
  CHECK(r.exitCode == 0);
  CHECK(r.err == "mig-restore: reading saved pages 0x10000000-0x10002000 at image offset 4096: the image file ends "
                 "there\n--again-from 30 --carried-fd 31\n");
  // Without a readable table: the old end, exit 127.
  expectFailure(run({"20", "21", "2", "30", "31"}, [&] {
                  planAt(plan);
                  imageAt(21, 1);
                }),
                "the image file ends there");
}

TEST_CASE("the restorer is a static PIE without run-time relocations, loader or TLS") {
  const std::string path = restorerPath();
  int fd = open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  struct stat st {};
  REQUIRE(fstat(fd, &st) == 0);
  void* m = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  REQUIRE(m != MAP_FAILED);
  close(fd);
  const auto* base = static_cast<const unsigned char*>(m);
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
  CHECK(eh->e_type == ET_DYN);
  CHECK(eh->e_machine == EM_X86_64);
  const auto* ph = reinterpret_cast<const Elf64_Phdr*>(base + eh->e_phoff);
  const Elf64_Phdr* dynamic = nullptr;
  for (int i = 0; i < eh->e_phnum; ++i) {
    CHECK(ph[i].p_type != PT_INTERP);
    CHECK(ph[i].p_type != PT_TLS);
    if (ph[i].p_type == PT_DYNAMIC) dynamic = &ph[i];
    if (ph[i].p_type == PT_LOAD) CHECK(!((ph[i].p_flags & PF_W) && (ph[i].p_flags & PF_X)));
  }
  if (dynamic != nullptr) {
    const auto* d = reinterpret_cast<const Elf64_Dyn*>(base + dynamic->p_offset);
    for (; d->d_tag != DT_NULL; ++d) {
      CAPTURE(d->d_tag);
      if (d->d_tag == DT_RELASZ || d->d_tag == DT_RELSZ || d->d_tag == DT_RELRSZ || d->d_tag == DT_PLTRELSZ) {
        CHECK(d->d_un.d_val == 0);
      }
      CHECK(d->d_tag != DT_NEEDED);
      CHECK(d->d_tag != DT_TEXTREL);
    }
  }
  // No relocation sections at all.
  const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff);
  for (int i = 0; i < eh->e_shnum; ++i) {
    CAPTURE(i);
    CHECK(sh[i].sh_type != SHT_RELA);
    CHECK(sh[i].sh_type != SHT_REL);
  }
  munmap(m, static_cast<size_t>(st.st_size));
}

}  // namespace
}  // namespace mig::restore
