// What a restarted shadowd reads back of the jobs it listed `lost` (lost_jobs.h):
// every field as written, a command with tabs and line ends kept on its line, the
// newest kLostJobsKept only, a missing file as none, a damaged line skipped.
#include "shadow/lost_jobs.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <unistd.h>

namespace mig::shadow {
namespace {

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/lost_jobs_test.XXXXXX";
    path = kj::str(mkdtemp(tmpl));
  }
  ~TempDir() {
    unlink(lostJobsPath(path).cStr());
    rmdir(path.cStr());
  }
  kj::String path;
};

LostJob job(uint64_t id, double lostAt, kj::StringPtr command = "./writer 3") {
  LostJob j;
  j.id = id;
  j.vpid = static_cast<pid_t>(4000 + id % 1000);
  j.startedAt = 1700000000.25;
  j.lostAt = lostAt;
  j.location = kj::str("10.0.0.2:7070");
  j.command = kj::str(command);
  return j;
}

TEST_CASE("lost jobs: every field as written") {
  TempDir dir;
  auto path = lostJobsPath(dir.path);
  CHECK(readLostJobs(path).empty());
  kj::Vector<LostJob> jobs;
  jobs.add(job(12345678901234ull, 1700000100.5, "sh -c 'a\tb\nc'"));
  jobs.add(job(7, 1700000200.75));
  CHECK(writeLostJobs(path, jobs) == "");
  auto back = readLostJobs(path);
  REQUIRE(back.size() == 2);
  CHECK(back[0].id == 12345678901234ull);
  CHECK(back[0].vpid == 4000 + 234);
  CHECK(back[0].startedAt == doctest::Approx(1700000000.25));
  CHECK(back[0].lostAt == doctest::Approx(1700000100.5));
  CHECK(back[0].location == "10.0.0.2:7070");
  CHECK(back[0].command == "sh -c 'a b c'");
  CHECK(back[1].id == 7);
  CHECK(back[1].command == "./writer 3");
}

TEST_CASE("lost jobs: the newest kept, a damaged line skipped") {
  TempDir dir;
  auto path = lostJobsPath(dir.path);
  kj::Vector<LostJob> jobs;
  for (uint64_t i = 1; i <= kLostJobsKept + 5; ++i) jobs.add(job(i, 1000.0 + static_cast<double>((i * 37) % 1000)));
  CHECK(writeLostJobs(path, jobs) == "");
  auto back = readLostJobs(path);
  REQUIRE(back.size() == kLostJobsKept);
  double oldestKept = back[0].lostAt;
  for (auto& j : back) CHECK(j.lostAt >= oldestKept);
  size_t older = 0;
  for (auto& j : jobs) older += j.lostAt < oldestKept ? 1 : 0;
  CHECK(older == 5);

  FILE* f = fopen(path.cStr(), "a");
  REQUIRE(f != nullptr);
  fputs("not a job\n42\t1\t2\n0\t1\t2\t3\tx\ty\n", f);
  fclose(f);
  CHECK(readLostJobs(path).size() == kLostJobsKept);
}

}  // namespace
}  // namespace mig::shadow
