// Unit tests of page_diff.h: the byte runs a shared writable mapping of a home file
// writes back (exact, highest first) and how home's changes come into the copy without
// undoing the job's own.
#include "shim/forward/page_diff.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

namespace mig::forward {
namespace {

// The changed runs in the order they come, as "begin-end begin-end ..." (a failed
// check shows them all).
std::string runs(const std::vector<uint8_t>& now, const std::vector<uint8_t>& was) {
  std::string out;
  forEachChangedRunDescending(now.data(), was.data(), now.size(), [&](ByteRun r) {
    out += (out.empty() ? "" : " ") + std::to_string(r.begin) + "-" + std::to_string(r.end);
  });
  return out;
}

TEST_CASE("no change: no run") {
  std::vector<uint8_t> a(4096, 7);
  CHECK(runs(a, a).empty());
}

TEST_CASE("changed bytes come as exact runs, the highest first") {
  std::vector<uint8_t> was(200, 0), now(200, 0);
  now[0] = 1;  // the index header's first bytes: last
  now[17] = now[18] = now[19] = 2;
  now[100] = 3;                                // a lone byte between equal ones, not widened
  for (int i = 150; i < 200; ++i) now[i] = 4;  // a run to the end
  CHECK(runs(now, was) == "150-200 100-101 17-20 0-1");
}

TEST_CASE("runs across word boundaries and in an unaligned length") {
  std::vector<uint8_t> was(67, 9), now(67, 9);
  for (int i = 5; i < 61; ++i) now[i] = 10;
  now[66] = 0;
  CHECK(runs(now, was) == "66-67 5-61");
}

TEST_CASE("every single changed byte of a page is found alone") {
  std::vector<uint8_t> was(4096, 0);
  for (size_t i = 0; i < was.size(); ++i) {
    std::vector<uint8_t> now = was;
    now[i] = 0xff;
    CHECK(runs(now, was) == std::to_string(i) + "-" + std::to_string(i + 1));
  }
}

TEST_CASE("home's changes come into the copy, the job's unwritten ones stay") {
  std::vector<uint8_t> twin(64, 0), local(64, 0), home(64, 0);
  home[3] = 5;    // home changed it, the job did not: taken
  local[10] = 6;  // the job changed it, home did not: kept
  home[20] = 7;   // both changed it: the job's later store wins in the copy
  local[20] = 8;
  home[63] = 9;  // the last byte of an unaligned tail
  const size_t changed = takeHomeChanges(local.data(), twin.data(), home.data(), home.size());
  CHECK(changed == 2);
  CHECK(local[3] == 5);
  CHECK(local[10] == 6);
  CHECK(local[20] == 8);
  CHECK(local[63] == 9);
  // The twin is home's now everywhere: the job's bytes differ from it and go home next.
  CHECK(std::memcmp(twin.data(), home.data(), home.size()) == 0);
  CHECK(runs(local, twin) == "20-21 10-11");
}

TEST_CASE("the lock-point rule: a write made under a lock reaches home, a reader's refresh sees it") {
  // Two copies of one file, as the job on b and a process at home would hold it.
  std::vector<uint8_t> file(128, 0), jobCopy(128, 0), jobTwin(128, 0);
  // The job takes the write lock (refresh: nothing new), writes the index, then the
  // header, and releases it: write-back, highest first.
  takeHomeChanges(jobCopy.data(), jobTwin.data(), file.data(), file.size());
  jobCopy[100] = 42;  // a hash table entry
  jobCopy[16] = 1;    // the header's mxFrame
  std::vector<size_t> order;
  forEachChangedRunDescending(jobCopy.data(), jobTwin.data(), jobCopy.size(), [&](ByteRun r) {
    std::memcpy(file.data() + r.begin, jobCopy.data() + r.begin, r.end - r.begin);
    std::memcpy(jobTwin.data() + r.begin, jobCopy.data() + r.begin, r.end - r.begin);
    order.push_back(r.begin);
  });
  REQUIRE(order.size() == 2);
  CHECK(order[0] == 100);  // the entry before the header that makes it visible
  CHECK(order[1] == 16);
  CHECK(file[100] == 42);
  CHECK(file[16] == 1);
  // A process at home changes its read mark meanwhile; the job's next lock takes it in.
  file[104] = 3;
  takeHomeChanges(jobCopy.data(), jobTwin.data(), file.data(), file.size());
  CHECK(jobCopy[104] == 3);
  CHECK(std::memcmp(jobCopy.data(), file.data(), file.size()) == 0);
}

}  // namespace
}  // namespace mig::forward
