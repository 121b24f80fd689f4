// epoll fdinfo: the kernel's exact "tfd:" lines (oneshot that fired, negative pos,
// kernel dev_t), malformed lines, and a real epoll read back.
#include "resources/epoll.h"
#include "resources/fdinfo_test_util.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

namespace mig::resources::epoll {
namespace {

TEST_CASE("epoll: one item per tfd line, oneshot that fired, negative pos") {
  std::vector<Item> items;
  const char* text =
      "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1044\n"
      "tfd:        7 events:       19 data:             1234  pos:0 ino:c4da2 sdev:f\n"
      "tfd:        8 events: 40000000 data:               4e  pos:0 ino:c4da2 sdev:f\n"
      "tfd:        3 events: 80000019 data: ffffdeadbeefcafe  pos:-1 ino:414 sdev:10\n"
      "tfd:     1023 events: 10000004 data:                0  pos:12345 ino:1 sdev:fe00001\n";
  REQUIRE(parse(text, items) == nullptr);
  REQUIRE(items.size() == 4);
  CHECK(items[0].fd == 7);
  CHECK(items[0].events == (EPOLLIN | EPOLLERR | EPOLLHUP));
  CHECK(items[0].data == 0x1234);
  CHECK(items[0].ino == 0xc4da2);
  CHECK(items[0].sdev == 0xf);
  CHECK(items[1].events == EPOLLONESHOT);
  CHECK(items[2].events == (EPOLLET | EPOLLIN | EPOLLERR | EPOLLHUP));
  CHECK(items[2].data == 0xffffdeadbeefcafeull);
  CHECK(items[3].fd == 1023);
  CHECK(items[3].events == (EPOLLEXCLUSIVE | EPOLLOUT));
  CHECK(kernelDevToUser(items[3].sdev) == makedev(0xfe, 1));
  REQUIRE(parse("pos:\t0\nflags:\t02\n", items) == nullptr);
  CHECK(items.empty());
  CHECK(parse("tfd:        7 events:       19\n", items) != nullptr);
  CHECK(parse("tfd: -3 events: 19 data: 0 pos:0 ino:1 sdev:1\n", items) != nullptr);
}

TEST_CASE("this kernel's fdinfo of a real epoll reads back what was set") {
  int e = ::eventfd(0, EFD_CLOEXEC);
  REQUIRE(e >= 0);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  struct epoll_event reg = {EPOLLIN | EPOLLET, {.u64 = 0xfedcba9876543210ull}};
  REQUIRE(epoll_ctl(ep, EPOLL_CTL_ADD, e, &reg) == 0);
  std::vector<Item> items;
  REQUIRE(parse(testing::ownFdinfo(ep), items) == nullptr);
  REQUIRE(items.size() == 1);
  CHECK(items[0].fd == e);
  CHECK(items[0].events == (EPOLLIN | EPOLLET | EPOLLERR | EPOLLHUP));
  CHECK(items[0].data == 0xfedcba9876543210ull);
  struct stat st {};
  REQUIRE(fstat(e, &st) == 0);
  CHECK(items[0].ino == st.st_ino);
  CHECK(kernelDevToUser(items[0].sdev) == st.st_dev);
  for (int fd : {e, ep}) ::close(fd);
}

}  // namespace
}  // namespace mig::resources::epoll
