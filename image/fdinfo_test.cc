// Reading /proc/PID/fdinfo of event-loop objects: the kernel's exact text (as kernel
// 6.18 prints it), older kernels' variants, malformed lines, and the real thing read
// back from objects this test makes.
#include "image/fdinfo.h"
#include "image/image_test_util.h"

#include <csignal>
#include <fcntl.h>
#include <string>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <unistd.h>

namespace mig::image::fdinfo {
namespace {

std::string ownFdinfo(int fd) {
  std::string path = "/proc/self/fdinfo/" + std::to_string(fd);
  int f = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(f >= 0);
  char buf[8192];
  ssize_t n = ::read(f, buf, sizeof(buf));
  ::close(f);
  REQUIRE(n > 0);
  return std::string(buf, static_cast<size_t>(n));
}

TEST_CASE("fields are found by their whole name, blanks after the colon skipped") {
  const char* text = "pos:\t0\nflags:\t02004002\nmnt_id:\t17\nsettime flags: 01\n";
  std::string_view v;
  REQUIRE(field(text, "flags", v));
  CHECK(v == "02004002");
  REQUIRE(field(text, "settime flags", v));
  CHECK(v == "01");
  CHECK_FALSE(field(text, "settime", v));
  CHECK_FALSE(field(text, "mnt", v));
  CHECK_FALSE(field(text, "ino", v));
}

TEST_CASE("eventfd: the count is hexadecimal, the semaphore line is optional") {
  Eventfd e;
  const char* k618 = "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1044\neventfd-count:               1f\n"
                     "eventfd-id: 3\neventfd-semaphore: 1\n";
  REQUIRE(parseEventfd(k618, e) == nullptr);
  CHECK(e.count == 0x1f);
  CHECK(e.semaphore);
  const char* old = "pos:\t0\nflags:\t02\nmnt_id:\t15\neventfd-count: fffffffffffffffe\n";
  REQUIRE(parseEventfd(old, e) == nullptr);
  CHECK(e.count == 0xfffffffffffffffeull);
  CHECK_FALSE(e.semaphore);
  CHECK(parseEventfd("pos:\t0\n", e) != nullptr);
  CHECK(parseEventfd("eventfd-count: zz\n", e) != nullptr);
  CHECK(parseEventfd("eventfd-count: 5\neventfd-semaphore: 7\n", e) != nullptr);
}

TEST_CASE("timerfd: clock, ticks, octal settime flags, it_value and it_interval") {
  Timerfd t;
  const char* text = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1044\nclockid: 1\nticks: 7\n"
                     "settime flags: 03\nit_value: (4, 999991105)\nit_interval: (0, 10000000)\n";
  REQUIRE(parseTimerfd(text, t) == nullptr);
  CHECK(t.clockid == CLOCK_MONOTONIC);
  CHECK(t.ticks == 7);
  CHECK(t.settimeFlags == (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET));
  CHECK(t.valueNs == 4999991105ll);
  CHECK(t.intervalNs == 10000000);
  CHECK(parseTimerfd("clockid: 1\nticks: 0\nsettime flags: 00\nit_value: (0, 0)\n", t) != nullptr);
  CHECK(parseTimerfd("clockid: 1\nticks: 0\nsettime flags: 00\nit_value: (0, 1000000000)\nit_interval: (0, 0)\n", t) !=
        nullptr);
  CHECK(parseTimerfd("clockid: 1\nticks: -1\nsettime flags: 00\nit_value: (0, 0)\nit_interval: (0, 0)\n", t) != nullptr);
}

TEST_CASE("signalfd: the mask is 16 hex digits") {
  uint64_t mask = 0;
  REQUIRE(parseSignalfd("pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1044\nsigmask:\t0000000400000200\n", mask) == nullptr);
  CHECK(mask == ((1ull << (SIGUSR1 - 1)) | (1ull << (35 - 1))));
  CHECK(parseSignalfd("sigmask:\n", mask) != nullptr);
}

TEST_CASE("epoll: one item per tfd line, oneshot that fired, negative pos") {
  std::vector<EpollItem> items;
  const char* text =
      "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1044\n"
      "tfd:        7 events:       19 data:             1234  pos:0 ino:c4da2 sdev:f\n"
      "tfd:        8 events: 40000000 data:               4e  pos:0 ino:c4da2 sdev:f\n"
      "tfd:        3 events: 80000019 data: ffffdeadbeefcafe  pos:-1 ino:414 sdev:10\n"
      "tfd:     1023 events: 10000004 data:                0  pos:12345 ino:1 sdev:fe00001\n";
  REQUIRE(parseEpoll(text, items) == nullptr);
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
  REQUIRE(parseEpoll("pos:\t0\nflags:\t02\n", items) == nullptr);
  CHECK(items.empty());
  CHECK(parseEpoll("tfd:        7 events:       19\n", items) != nullptr);
  CHECK(parseEpoll("tfd: -3 events: 19 data: 0 pos:0 ino:1 sdev:1\n", items) != nullptr);
}

TEST_CASE("this kernel's fdinfo of real objects reads back what was set") {
  int e = eventfd(0, EFD_SEMAPHORE | EFD_CLOEXEC);
  REQUIRE(e >= 0);
  uint64_t add = 0x123456789ull;
  REQUIRE(write(e, &add, sizeof(add)) == sizeof(add));
  Eventfd ev;
  REQUIRE(parseEventfd(ownFdinfo(e), ev) == nullptr);
  CHECK(ev.count == 0x123456789ull);

  int t = timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC);
  REQUIRE(t >= 0);
  struct itimerspec its = {{2, 500}, {100, 0}};
  REQUIRE(timerfd_settime(t, 0, &its, nullptr) == 0);
  Timerfd tf;
  REQUIRE(parseTimerfd(ownFdinfo(t), tf) == nullptr);
  CHECK(tf.clockid == CLOCK_BOOTTIME);
  CHECK(tf.ticks == 0);
  CHECK(tf.intervalNs == 2000000500ll);
  CHECK(tf.valueNs > 90ll * 1000000000);
  CHECK(tf.valueNs <= 100ll * 1000000000);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  sigaddset(&set, SIGRTMIN + 3);
  int s = signalfd(-1, &set, SFD_CLOEXEC);
  REQUIRE(s >= 0);
  uint64_t mask = 0;
  REQUIRE(parseSignalfd(ownFdinfo(s), mask) == nullptr);
  CHECK(mask == ((1ull << (SIGUSR2 - 1)) | (1ull << (SIGRTMIN + 3 - 1))));

  int ep = epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  struct epoll_event reg = {EPOLLIN | EPOLLET, {.u64 = 0xfedcba9876543210ull}};
  REQUIRE(epoll_ctl(ep, EPOLL_CTL_ADD, e, &reg) == 0);
  std::vector<EpollItem> items;
  REQUIRE(parseEpoll(ownFdinfo(ep), items) == nullptr);
  REQUIRE(items.size() == 1);
  CHECK(items[0].fd == e);
  CHECK(items[0].events == (EPOLLIN | EPOLLET | EPOLLERR | EPOLLHUP));
  CHECK(items[0].data == 0xfedcba9876543210ull);
  struct stat st {};
  REQUIRE(fstat(e, &st) == 0);
  CHECK(items[0].ino == st.st_ino);
  CHECK(kernelDevToUser(items[0].sdev) == st.st_dev);
  for (int fd : {e, t, s, ep}) ::close(fd);
}

}  // namespace
}  // namespace mig::image::fdinfo
