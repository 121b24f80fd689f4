// See lazy_pages.h. The page server is one single-threaded loop over the
// userfaultfds of the job and of the children it forks: events first (faults are
// what the job waits on), then, when none is pending, the next piece of background
// fill. Each address space keeps a map of the saved pages not placed yet; a page
// leaves it once placed, or once the job unmapped or dropped it (then it must read
// as zero, or as whatever the job put there, never as the saved page).
#include "resources/lazy_pages.h"
#include "resources/proc_file.h"

#include "image/checksum.h"
#include "resources/fd_restore.h"
#include "resources/network_page_source.h"
#include "image/image_error.h"
#include "image/format.h"
#include "shim/fd_passing.h"

#include <kj/debug.h>
#include <kj/exception.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <ctime>
#include <iterator>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/userfaultfd.h>
#include <map>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace mig::resources {
namespace {

constexpr uint64_t kPage = plan::kPage;
// Regions with less saved than this are copied in before the job starts: a fault
// round trip per page would cost more than reading them.
constexpr uint64_t kLazyMinBytes = 1u << 20;
constexpr uint64_t kFaultCluster = 64u << 10;  // placed per fault: neighbours are likely next
constexpr uint64_t kFillChunk = 1u << 20;      // placed per background step
constexpr int kHandoverTimeoutMs = 60000;      // the restorer sends the fd within this
// The background fill starts this long after the userfaultfd came (faults are served at
// once): the restorer's last steps, the job's start and its first call to its link
// process, which a hop's freeze waits for, then do not share the CPU and the job's
// address space with it (or, post-copy, B's shadowd and the sender with its fetches).
constexpr int64_t kFillDelayNs = 100 * 1000000;

int64_t nowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

bool eligible(const plan::Region& r) {
  return r.source == plan::kSourceZero && !(r.mapFlags & (MAP_SHARED | MAP_GROWSDOWN)) &&
         r.kind != plan::kKindStack && r.kind != plan::kKindVdso && r.kind != plan::kKindVvar &&
         r.kind != plan::kKindVvarVclock && r.prot != PROT_NONE && r.reserved == 0;
}

// Which section's page data holds an image offset (of(): its index, or -1), by binary
// search: a pre-copy hop's image has hundreds of sections and tens of thousands of page
// runs, and a scan of the sections for each run was tens of ms of its freeze.
class SectionIndex {
 public:
  explicit SectionIndex(const image::FileReader& img) {
    for (size_t i = 0; i < img.sectionCount(); ++i) {
      const auto& s = img.section(i);
      if (s.dataLen > 0) data_.push_back({s.layout.dataOffset, s.layout.dataOffset + s.dataLen, i});
    }
    std::sort(data_.begin(), data_.end(), [](const Data& a, const Data& b) { return a.start < b.start; });
  }
  int64_t of(uint64_t off) const {
    auto it = std::upper_bound(data_.begin(), data_.end(), off, [](uint64_t o, const Data& d) { return o < d.start; });
    if (it == data_.begin()) return -1;
    --it;
    return off < it->end ? static_cast<int64_t>(it->index) : -1;
  }

 private:
  struct Data {
    uint64_t start, end;
    size_t index;
  };
  std::vector<Data> data_;  // sections with data, by where it starts (they do not overlap)
};

struct Piece {
  uint64_t len;
  uint64_t imageOffset;
  uint32_t section;
};

// One address space whose missing pages the server fills.
struct Space {
  int uffd;
  pid_t pid;  // 0 until a fault names one of its threads
  std::map<uint64_t, Piece> pending;  // by address, never overlapping
  uint32_t id;  // its name in the messages to the guard
};

// The server's messages to its guard (startGuard), one each on their SEQPACKET socket.
struct GuardMsg {
  char kind;  // kGuardHold (with the space's userfaultfd), kGuardPid, kGuardRelease, kGuardReleaseAll
  uint32_t id;
  pid_t pid;
};
constexpr char kGuardHold = 'h', kGuardPid = 'p', kGuardRelease = 'r', kGuardReleaseAll = 'x';

// Cuts [s, e) out of the map; what was there goes to `out` when given.
void cut(std::map<uint64_t, Piece>& m, uint64_t s, uint64_t e, std::vector<std::pair<uint64_t, Piece>>* out) {
  auto it = m.upper_bound(s);
  if (it != m.begin()) --it;
  while (it != m.end() && it->first < e) {
    uint64_t a = it->first;
    Piece p = it->second;
    if (a + p.len <= s) {
      ++it;
      continue;
    }
    it = m.erase(it);
    if (a < s) m.emplace(a, Piece{s - a, p.imageOffset, p.section});
    uint64_t end = a + p.len;
    if (end > e) m.emplace(e, Piece{end - e, p.imageOffset + (e - a), p.section});
    if (out != nullptr) {
      uint64_t ms = std::max(a, s), me = std::min(end, e);
      out->push_back({ms, Piece{me - ms, p.imageOffset + (ms - a), p.section}});
    }
    // On from the end of this piece, not from e: [s, e) may cover several pieces (one
    // per pages section, and holes where zero pages were left out of the image).
    it = m.lower_bound(end);
  }
}

class Server {
 public:
  Server(image::FileReader& img, pid_t job, std::map<uint64_t, Piece> pending, int listener, int net, int netTimeoutMs,
         int guard)
      : img_(img), job_(job), listener_(listener), net_(net), netTimeoutMs_(netTimeoutMs), guard_(guard),
        verified_(img.sectionCount(), false), sums_(img.sectionCount()), buf_(kFillChunk) {
    first_ = kj::mv(pending);
    debug_ = getenv("MIG_RESTORE_DEBUG") != nullptr && strcmp(getenv("MIG_RESTORE_DEBUG"), "0") != 0;
    fill_ = getenv("MIG_LAZY_NO_FILL") == nullptr;
  }

  void run(int uffd) {
    start_ = nowNs();
    const int64_t fillFrom = start_ + kFillDelayNs;
    spaces_.push_back(Space{uffd, job_, kj::mv(first_), nextId_++});  // the guard holds it already
    while (!spaces_.empty()) {
      for (size_t i = 0; i < spaces_.size();) {
        if (spaces_[i].pending.empty() || spaces_[i].uffd < 0) {
          // Closing the last reference (this and the guard's) unregisters the ranges:
          // what is still missing now (never saved, or dropped by the job) is plain
          // zero-fill memory again.
          tellGuard(kGuardRelease, spaces_[i].id);
          if (spaces_[i].uffd >= 0) close(spaces_[i].uffd);
          spaces_.erase(spaces_.begin() + static_cast<long>(i));
          cursorSpace_ = SIZE_MAX;
        } else {
          ++i;
        }
      }
      if (spaces_.empty()) break;
      std::vector<pollfd> fds;
      for (const Space& s : spaces_) fds.push_back(pollfd{s.uffd, POLLIN, 0});
      fds.push_back(pollfd{listener_, POLLIN, 0});
      const int64_t waitNs = hurried_ ? 0 : fillFrom - nowNs();
      const bool filling = fill_ && waitNs <= 0;
      int n = poll(fds.data(), fds.size(), filling ? 0 : fill_ ? static_cast<int>(waitNs / 1000000) + 1 : 1000);
      if (n > 0 && (fds.back().revents & POLLIN)) {
        // A capture waits for the pages: they all go in now; it sees the end (EOF)
        // when this process exits.
        int w = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (w >= 0) waiters_.push_back(w);
        fill_ = hurried_ = true;
      }
      if (n < 0 && errno != EINTR) fatal(kj::str("poll: ", strerror(errno)));
      bool events = false;
      size_t count = spaces_.size();  // a fork adds one while we go
      for (size_t i = 0; i < count && n > 0; ++i) {
        if (fds[i].revents & POLLIN) events |= readEvents(i);
      }
      if (events) continue;
      if (filling) {
        fillSome();
      } else if (n == 0 && !fill_) {
        // Without the background fill, a page a second per address space is what
        // tells the server that space is gone (ESRCH), so that it ends with the job.
        for (size_t i = 0; i < spaces_.size(); ++i) {
          if (!spaces_[i].pending.empty()) place(i, spaces_[i].pending.begin()->first, kPage, 0);
        }
      }
    }
    if (net_ >= 0) {
      // Every page is in place (or the job is gone): home may let its frozen copy go.
      PageRequest last{0, 0};
      KJ_IF_MAYBE(why, exchange(last)) {
        fprintf(stderr, "migctl restart: post-copy: could not tell home that every page arrived (%s)\n", why->cStr());
      }
    }
    if (debug_) {
      fprintf(stderr, "mig-pages: done in %lld ms: %llu faults, %llu KiB on fault, %llu KiB in the background\n",
              static_cast<long long>((nowNs() - start_) / 1000000), static_cast<unsigned long long>(faults_),
              static_cast<unsigned long long>(faultBytes_ >> 10), static_cast<unsigned long long>(fillBytes_ >> 10));
    }
  }

 private:
  [[noreturn]] void fatal(kj::StringPtr why) {
    if (net_ >= 0) {
      fprintf(stderr,
              "migctl restart: post-copy: the job's memory could not be fetched from home (%s); killed the job "
              "(pid %d) rather than let it run without its pages\n",
              why.cStr(), job_);
    } else {
      fprintf(stderr, "migctl restart: the page server failed (%s); killed the restarted job (pid %d)\n", why.cStr(),
              job_);
    }
    killAll();
    tellGuard(kGuardReleaseAll, 0);  // said why here: the guard need not
    _exit(1);
  }

  void killAll() {
    kill(job_, SIGKILL);
    for (const Space& s : spaces_) {
      if (s.pid > 0) kill(s.pid, SIGKILL);
    }
  }

  // Reads every queued message of space i; returns whether there was any.
  bool readEvents(size_t i) {
    bool any = false;
    for (;;) {
      uffd_msg msg;
      ssize_t n = read(spaces_[i].uffd, &msg, sizeof(msg));
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (n != static_cast<ssize_t>(sizeof(msg))) {
        if (n < 0 && errno == ESRCH) break;  // the job's memory is gone: nothing to serve
        fatal(kj::str("reading the userfaultfd: ", n < 0 ? strerror(errno) : "short message"));
      }
      any = true;
      Space& s = spaces_[i];
      switch (msg.event) {
        case UFFD_EVENT_PAGEFAULT: {
          pid_t tid = static_cast<pid_t>(msg.arg.pagefault.feat.ptid);
          if (s.pid == 0 && tid > 0) {
            s.pid = processOf(tid);
            tellGuard(kGuardPid, s.id, s.pid);
          }
          fault(i, msg.arg.pagefault.address & ~(kPage - 1), tid);
          break;
        }
        case UFFD_EVENT_FORK: {
          // The child's copy of the job's memory misses the same pages.
          Space child{static_cast<int>(msg.arg.fork.ufd), 0, s.pending, nextId_++};
          fcntl(child.uffd, F_SETFD, FD_CLOEXEC);
          tellGuard(kGuardHold, child.id, 0, child.uffd);
          spaces_.push_back(kj::mv(child));
          break;
        }
        case UFFD_EVENT_REMAP: {
          std::vector<std::pair<uint64_t, Piece>> moved;
          cut(s.pending, msg.arg.remap.from, msg.arg.remap.from + msg.arg.remap.len, &moved);
          cut(s.pending, msg.arg.remap.to, msg.arg.remap.to + msg.arg.remap.len, nullptr);
          for (auto& [addr, p] : moved) s.pending.emplace(addr - msg.arg.remap.from + msg.arg.remap.to, p);
          break;
        }
        case UFFD_EVENT_REMOVE:
        case UFFD_EVENT_UNMAP:
          cut(s.pending, msg.arg.remove.start, msg.arg.remove.end, nullptr);
          break;
        default:
          break;
      }
    }
    return any;
  }

  static pid_t processOf(pid_t tid) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", tid);
    FILE* f = fopen(path, "re");
    if (f == nullptr) return 0;
    pid_t tgid = 0;
    while (fgets(line, sizeof(line), f) != nullptr) {
      if (sscanf(line, "Tgid: %d", &tgid) == 1) break;
    }
    fclose(f);
    return tgid;
  }

  void fault(size_t i, uint64_t page, pid_t tid) {
    ++faults_;
    Space& s = spaces_[i];
    auto it = s.pending.upper_bound(page);
    if (it != s.pending.begin()) {
      --it;
      if (it->first <= page && page < it->first + it->second.len) {
        uint64_t end = std::min(it->first + it->second.len, page + kFaultCluster);
        faultBytes_ += place(i, page, end - page, tid);
        // The background fill goes on from here: a job reading through its memory
        // then finds the next pages in place instead of faulting for each cluster.
        cursorSpace_ = i;
        cursor_ = end;
        return;
      }
    }
    // Never saved (it was zero), or placed already, or dropped by the job since: a
    // zero page, or just a wake-up if the page is there by now.
    uffdio_zeropage z{};
    z.range.start = page;
    z.range.len = kPage;
    if (ioctl(s.uffd, UFFDIO_ZEROPAGE, &z) == 0) return;
    if (errno == EEXIST) {
      uffdio_range r{page, kPage};
      ioctl(s.uffd, UFFDIO_WAKE, &r);
    } else if (errno == EAGAIN) {
      // The job is changing its mappings; its events come first, then the fault again
      // (the kernel re-raises it when the thread retries).
      uffdio_range r{page, kPage};
      ioctl(s.uffd, UFFDIO_WAKE, &r);
    }
  }

  // Places the saved pages [addr, addr+len) of space i, all in one pending piece;
  // returns the bytes placed.
  uint64_t place(size_t i, uint64_t addr, uint64_t len, pid_t tid) {
    Space& s = spaces_[i];
    auto it = s.pending.upper_bound(addr);
    --it;
    const Piece p = it->second;
    const uint64_t off = p.imageOffset + (addr - it->first);
    if (net_ >= 0) {
      len = fetch(off, len);  // post-copy: `off` is the pages' address at home (network_page_source.h)
      return copyIn(i, addr, len);
    }
    check(p.section, addr, tid);
    ssize_t got = pread(img_.fd(), buf_.data(), len, static_cast<off_t>(off));
    if (got != static_cast<ssize_t>(len)) {
      fatal(kj::str("reading ", len, " bytes at offset ", off, " of ", img_.path(), ": ",
                    got < 0 ? strerror(errno) : "the file ends there"));
    }
    const std::vector<uint64_t>& sums = sums_[p.section];
    if (!sums.empty()) {
      const uint64_t first = (off - img_.section(p.section).layout.dataOffset) / kPage;
      for (uint64_t k = 0; k < len / kPage; ++k) {
        if (first + k >= sums.size() || image::checksum(buf_.data() + k * kPage, kPage) != sums[first + k]) {
          // Where the page is in the file, and which of its section's checksums
          // failed: a section holds the pages of any number of regions (memory.cc),
          // so its page index alone says little.
          corrupt(addr + k * kPage, kj::str("page checksum mismatch at image byte ", off + k * kPage, ": page ",
                                            first + k, " of ", img_.section(p.section).describe()), tid);
        }
      }
    }
    return copyIn(i, addr, len);
  }

  // Puts buf_'s first `len` bytes in place at addr in space i; returns the bytes placed.
  uint64_t copyIn(size_t i, uint64_t addr, uint64_t len) {
    Space& s = spaces_[i];
    uffdio_copy c{};
    c.dst = addr;
    c.src = reinterpret_cast<uint64_t>(buf_.data());
    c.len = len;
    c.mode = 0;
    if (ioctl(s.uffd, UFFDIO_COPY, &c) == 0) {
      cut(s.pending, addr, addr + len, nullptr);
      return len;
    }
    if (c.copy > 0) {  // part of it: the rest comes again
      cut(s.pending, addr, addr + static_cast<uint64_t>(c.copy), nullptr);
      return static_cast<uint64_t>(c.copy);
    }
    int err = errno;
    if (err == EAGAIN) {
      // The job is changing its mappings: its events come first. A waiting thread,
      // woken, touches the page again and faults anew.
      uffdio_range r{addr, len};
      ioctl(s.uffd, UFFDIO_WAKE, &r);
      return 0;
    }
    if (err == EEXIST) {
      cut(s.pending, addr, addr + kPage, nullptr);  // someone placed it: keep theirs
      return 0;
    }
    if (err == ENOENT || err == EFAULT) {
      cut(s.pending, addr, addr + len, nullptr);  // no longer mapped there
      return 0;
    }
    if (err == ESRCH) {  // the address space is gone (exit, exec)
      s.pending.clear();
      return 0;
    }
    fatal(kj::str("UFFDIO_COPY at ", kj::hex(addr), ": ", strerror(err)));
  }

  // Post-copy: one request to shadowd, its answer read within the timeout. Returns why
  // it failed, or nullptr; with len > 0, the pages are in buf_.
  kj::Maybe<kj::String> exchange(const PageRequest& req) {
    if (!sendAll(&req, sizeof(req))) return kj::str("the link to this host's shadowd is gone: ", strerror(errno));
    const int64_t deadline = nowNs() + static_cast<int64_t>(netTimeoutMs_) * 1000000;
    PageReply reply;
    if (!recvAll(&reply, sizeof(reply), deadline)) return netError(deadline);
    if (reply.status != 0) {
      std::vector<char> text(std::min<uint32_t>(reply.textLen, 4096) + 1, '\0');
      if (!recvAll(text.data(), text.size() - 1, deadline)) return netError(deadline);
      return kj::str(text.data());
    }
    if (reply.addr != req.addr || reply.len != req.len) return kj::str("shadowd answered for other pages");
    if (req.len > 0 && !recvAll(buf_.data(), req.len, deadline)) return netError(deadline);
    return nullptr;
  }

  kj::String netError(int64_t deadline) {
    if (nowNs() >= deadline) {
      return kj::str("no pages from home for ", netTimeoutMs_ / 1000.0, " s (shadowd's --transfer-timeout)");
    }
    return kj::str("the link to this host's shadowd is gone");
  }

  // Returns the bytes now in buf_ (at most its size).
  uint64_t fetch(uint64_t addr, uint64_t len) {
    if (len > buf_.size()) len = buf_.size();
    KJ_IF_MAYBE(why, exchange(PageRequest{addr, len})) { fatal(*why); }
    netBytes_ += len;
    return len;
  }

  bool sendAll(const void* p, size_t n) {
    auto* c = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t w = send(net_, c, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      c += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  bool recvAll(void* p, size_t n, int64_t deadline) {
    auto* c = static_cast<char*>(p);
    while (n > 0) {
      int64_t left = (deadline - nowNs()) / 1000000;
      if (left <= 0) return false;
      pollfd pf{net_, POLLIN, 0};
      int r = poll(&pf, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
      if (r < 0 && errno != EINTR) return false;
      if (r <= 0) continue;
      ssize_t got = recv(net_, c, n, 0);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) return false;
      c += got;
      n -= static_cast<size_t>(got);
    }
    return true;
  }

  // Before any page of a section is placed: with a pageSums section after it, those
  // checksums are loaded (each page is then checked as it is placed, in place());
  // without, the whole section's data is checked.
  void check(uint32_t section, uint64_t addr, pid_t tid) {
    if (verified_[section]) return;
    const size_t next = section + 1;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      if (next < img_.sectionCount() && img_.section(next).type == static_cast<uint16_t>(image::SectionType::pageSums) &&
          img_.section(next).dataLen == img_.section(section).dataLen / kPage * sizeof(uint64_t)) {
        img_.verify(next);
        std::vector<uint64_t> sums(img_.section(next).dataLen / sizeof(uint64_t));
        img_.readData(next, 0, sums.data(), sums.size() * sizeof(uint64_t));
        sums_[section] = kj::mv(sums);
      } else {
        img_.verify(section);
      }
    })) {
      corrupt(addr, e->getDescription(), tid);
    }
    verified_[section] = true;
  }

  [[noreturn]] void corrupt(uint64_t addr, kj::StringPtr why, pid_t tid) {
    fprintf(stderr,
            "migctl restart: %s: the saved pages at %#llx are corrupt (%s); killed the restarted job (pid %d) "
            "before it could use them\n",
            img_.path().cStr(), static_cast<unsigned long long>(addr), why.cStr(), job_);
    if (tid > 0) kill(tid, SIGKILL);
    killAll();
    tellGuard(kGuardReleaseAll, 0);
    _exit(1);
  }

  void fillSome() {
    if (cursorSpace_ < spaces_.size()) {
      auto& pending = spaces_[cursorSpace_].pending;
      auto it = pending.upper_bound(cursor_);
      if (it != pending.begin() && std::prev(it)->first + std::prev(it)->second.len > cursor_) --it;
      if (it != pending.end()) {
        uint64_t from = std::max(it->first, cursor_);
        uint64_t len = std::min(it->first + it->second.len - from, kFillChunk);
        fillBytes_ += place(cursorSpace_, from, len, 0);
        cursor_ = from + len;
        return;
      }
      cursorSpace_ = SIZE_MAX;
    }
    for (size_t i = 0; i < spaces_.size(); ++i) {
      if (spaces_[i].pending.empty()) continue;
      auto it = spaces_[i].pending.begin();
      fillBytes_ += place(i, it->first, std::min(it->second.len, kFillChunk), 0);
      return;
    }
  }

  // A guard that is gone (killed) is not ours to replace: the messages are dropped.
  void tellGuard(char kind, uint32_t id, pid_t pid = 0, int fd = -1) {
    GuardMsg m{kind, id, pid};
    (void)control::sendFd(guard_, fd, &m, sizeof(m), MSG_NOSIGNAL);
  }

  image::FileReader& img_;
  pid_t job_;
  int listener_;             // -1: none
  int net_;                  // post-copy: the socket pages come from (network_page_source.h); -1: the image
  int netTimeoutMs_;
  int guard_;                // startGuard's socket
  uint32_t nextId_ = 0;
  uint64_t netBytes_ = 0;
  std::vector<int> waiters_;  // captures waiting for the end
  std::map<uint64_t, Piece> first_;
  std::vector<Space> spaces_;
  size_t cursorSpace_ = SIZE_MAX;  // where the background fill goes on (after the last fault)
  uint64_t cursor_ = 0;
  std::vector<bool> verified_;
  std::vector<std::vector<uint64_t>> sums_;  // per section: its pages' checksums, if the image has them
  std::vector<char> buf_;
  bool debug_ = false;
  bool fill_ = true;  // MIG_LAZY_NO_FILL (lazy_pages.h): pages only on fault
  bool hurried_ = false;  // a capture waits: the fill goes on at once
  int64_t start_ = 0;
  uint64_t faults_ = 0, faultBytes_ = 0, fillBytes_ = 0;
};

// The abstract socket a capture waits on (lazy_pages.h, waitForLazyPages).
socklen_t lazyAddress(pid_t pid, sockaddr_un* a) {
  memset(a, 0, sizeof(*a));
  a->sun_family = AF_UNIX;
  int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "mig-lazy-%d", pid);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
}

int receiveFd(int sock) {
  pollfd p{sock, POLLIN, 0};
  if (poll(&p, 1, kHandoverTimeoutMs) <= 0) return -1;
  char byte;
  int fd = -1;
  if (control::receiveFd(sock, &byte, 1, &fd) <= 0) return -1;  // the restore failed: it said why
  return fd;
}

// Closes every fd but `keep`, `keep2` and stderr.
void closeAllBut(int keep, int keep2 = -1) {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return;
  std::vector<int> fds;
  while (dirent* e = readdir(d)) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && fd != dirfd(d)) fds.push_back(fd);
  }
  closedir(d);
  for (int fd : fds) {
    if (fd != keep && fd != keep2 && fd != STDERR_FILENO) close(fd);
  }
}

// `pids` and every process under them (by /proc's parent links).
std::vector<pid_t> withDescendants(std::vector<pid_t> pids) {
  std::vector<std::pair<pid_t, pid_t>> all;  // (pid, parent)
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
      char path[64], buf[512];
      snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
      FILE* f = fopen(path, "re");
      if (f == nullptr) continue;
      size_t n = fread(buf, 1, sizeof(buf) - 1, f);
      fclose(f);
      buf[n] = '\0';
      const char* end = strrchr(buf, ')');
      int parent = 0;
      if (end != nullptr && sscanf(end + 1, " %*c %d", &parent) == 1) all.push_back({atoi(e->d_name), parent});
    }
    closedir(d);
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    for (auto [pid, parent] : all) {
      if (parent == pids[i] && std::find(pids.begin(), pids.end(), pid) == pids.end()) pids.push_back(pid);
    }
  }
  return pids;
}

// Returns once process `pid` has ended (or after `ms`).
void waitGone(pid_t pid, int ms) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return;  // gone already
  pollfd p{fd, POLLIN, 0};
  while (poll(&p, 1, ms) < 0 && errno == EINTR) {
  }
  close(fd);
}

// The guard: a process that holds a second reference to each userfaultfd the server
// serves, so that a server killed (or crashed) with pages still missing never lets
// the job read them as zeros. The kernel unregisters a userfaultfd's ranges when its
// last reference closes, and a missing page there is then plain zero-fill memory;
// with the guard's reference left, the job's accesses to a missing page wait
// instead (nobody reads the events: they are the server's). Its socket ending while
// it still holds a reference means the server ended before it was done: the job and
// every process under it are killed, and the references dropped (this process ends)
// only once they are gone. The server releases each space as it is done with it.
[[noreturn]] void guardPages(int sock, int uffd, pid_t job) {
  std::map<uint32_t, std::pair<int, pid_t>> held{{0, {uffd, job}}};  // by space id: (fd, pid)
  for (;;) {
    GuardMsg m{};
    int fd = -1;
    ssize_t n = control::receiveFd(sock, &m, sizeof(m), &fd);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (n == sizeof(m) && m.kind == kGuardReleaseAll) _exit(0);  // the job was killed, the server said why
    auto it = held.find(m.id);
    if (n == sizeof(m) && m.kind == kGuardHold && fd >= 0 && it == held.end()) {
      held[m.id] = {fd, 0};
      fd = -1;
    } else if (n == sizeof(m) && m.kind == kGuardPid && it != held.end()) {
      it->second.second = m.pid;
    } else if (n == sizeof(m) && m.kind == kGuardRelease && it != held.end()) {
      close(it->second.first);
      held.erase(it);
    }
    if (fd >= 0) close(fd);
  }
  if (held.empty()) _exit(0);
  std::vector<pid_t> pids;
  for (const auto& [id, h] : held) {
    if (h.second > 0) pids.push_back(h.second);
  }
  pids = withDescendants(kj::mv(pids));
  bool killed = false;
  for (pid_t p : pids) {
    if (processRuns(p) && kill(p, SIGKILL) == 0) killed = true;
  }
  if (killed) {
    fprintf(stderr,
            "migctl restart: the page server ended (killed?) before every page of the job (pid %d) was in place; "
            "killed the job rather than let it read the missing pages as zeros\n",
            job);
  }
  for (pid_t p : pids) waitGone(p, 10000);
  _exit(0);
}

// Forks the guard (guardPages) over `uffd`, the job's; returns the server's end of
// its socket, or -1 when it could not start.
int startGuard(int uffd, pid_t job) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  fflush(nullptr);
  pid_t guard = fork();
  if (guard == 0) {
    closeAllBut(uffd, sv[1]);  // the server's sockets close when the server ends, not later
    prctl(PR_SET_NAME, "mig-page-guard", 0, 0, 0);
    guardPages(sv[1], uffd, job);
  }
  close(sv[1]);
  if (guard < 0) {
    close(sv[0]);
    return -1;
  }
  return sv[0];
}

}  // namespace

void waitForLazyPages(pid_t pid, int timeoutSeconds) {
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  sockaddr_un a;
  socklen_t alen = lazyAddress(pid, &a);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), alen) != 0) {  // no lazy restart filling it
    close(s);
    return;
  }
  const int64_t deadline = nowNs() + static_cast<int64_t>(timeoutSeconds) * 1000000000;
  for (;;) {
    int64_t left = (deadline - nowNs()) / 1000000;
    pollfd p{s, POLLIN, 0};
    int n = left > 0 ? poll(&p, 1, static_cast<int>(left)) : 0;
    if (n < 0 && errno == EINTR) continue;
    char c;
    if (n > 0 && read(s, &c, 1) <= 0) break;  // the server ended: every page is in place
    if (n == 0) {
      close(s);
      image::fail(kj::str("process ", pid, "'s memory is still being put in place by its lazy restart's page server after ",
                          timeoutSeconds, " s; try again once it is done"));
    }
  }
  close(s);
}

kj::Maybe<kj::String> lazyPagesUnavailable() {
  if (geteuid() == 0) return nullptr;
  FILE* f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "re");
  int v = 0;
  if (f != nullptr) {
    if (fscanf(f, "%d", &v) != 1) v = 0;
    fclose(f);
  }
  if (v == 1) return nullptr;
  return kj::str("lazy pages need root, or vm.unprivileged_userfaultfd = 1 (a job's system calls must be able to "
                 "wait for its pages)");
}

uint64_t markLazyPages(image::RestorePlan& plan) {
  plan::Header& h = plan.mutableHeader();
  auto* regions = reinterpret_cast<const plan::Region*>(reinterpret_cast<const char*>(&h) + h.regions);
  auto* pages = reinterpret_cast<plan::Pages*>(reinterpret_cast<char*>(&h) + h.pages);
  // Pre-copy's later rounds are copies over earlier rounds' pages (plan_builder.cc): in an
  // eligible (private anonymous) region they are lazy too, and the page server lets the
  // later of two overlapping runs win (startPageServer), as the eager restore's order does.
  // Copied bytes that are not whole pages (sparse extents) stay eager: the server places
  // whole pages.
  std::vector<uint64_t> saved(h.regionCount, 0);
  std::vector<bool> ok(h.regionCount, true);
  for (uint32_t i = 0; i < h.pagesCount; ++i) {
    const plan::Pages& p = pages[i];
    saved[p.region] += p.len;
    if ((p.addr | p.len | p.imageOffset) % kPage != 0) ok[p.region] = false;
  }
  uint64_t lazy = 0;
  for (uint32_t i = 0; i < h.pagesCount; ++i) {
    const uint32_t r = pages[i].region;
    if (!ok[r] || saved[r] < kLazyMinBytes || !eligible(regions[r])) continue;
    pages[i].method = plan::kPagesLazy;
    lazy += pages[i].len;
  }
  return lazy;
}

namespace {

// A pages section holds the pages of any number of regions, so a big region's lazy
// pages may share one with a small region's eager page: with the section's page sums,
// only the eager pages are checked now (the lazy ones as they are placed), so that a
// corrupt lazy page is found when it is used, as in a section of lazy pages only.
// False: no usable page sums, the whole section must be checked.
bool verifyEagerPagesBySums(image::FileReader& img, const image::RestorePlan& plan, size_t section) {
  const size_t next = section + 1;
  const auto& info = img.section(section);
  if (next >= img.sectionCount() || img.section(next).type != static_cast<uint16_t>(image::SectionType::pageSums) ||
      img.section(next).dataLen != info.dataLen / kPage * sizeof(uint64_t)) {
    return false;
  }
  img.verify(next);
  std::vector<uint64_t> sums(img.section(next).dataLen / sizeof(uint64_t));
  img.readData(next, 0, sums.data(), sums.size() * sizeof(uint64_t));
  std::vector<char> page(kPage);
  const plan::Header& h = plan.header();
  const plan::Pages* pages = plan::pages(&h);
  for (uint32_t i = 0; i < h.pagesCount; ++i) {
    const uint64_t off = pages[i].imageOffset;
    if (pages[i].method == plan::kPagesLazy || off < info.layout.dataOffset || off >= info.layout.dataOffset + info.dataLen) {
      continue;
    }
    const uint64_t from = (pages[i].imageOffset - info.layout.dataOffset) / kPage;
    const uint64_t to = (pages[i].imageOffset + pages[i].len - info.layout.dataOffset + kPage - 1) / kPage;
    for (uint64_t k = from; k < to && k < sums.size(); ++k) {
      img.readData(section, k * kPage, page.data(), kPage);
      if (image::checksum(page.data(), kPage) != sums[k]) {
        image::fail(kj::str(info.describe(), ": page checksum mismatch at image byte ",
                            info.layout.dataOffset + k * kPage, " (corrupt image)"));
      }
    }
  }
  return true;
}

}  // namespace

void verifyEagerSections(image::FileReader& img, const image::RestorePlan& plan) {
  const plan::Header& h = plan.header();
  const plan::Pages* pages = plan::pages(&h);
  std::vector<int> use(img.sectionCount(), 0);  // bit 1: eager pages, bit 2: lazy pages
  const SectionIndex sections(img);
  for (uint32_t i = 0; i < h.pagesCount; ++i) {
    int64_t s = sections.of(pages[i].imageOffset);
    if (s >= 0) use[static_cast<size_t>(s)] |= pages[i].method == plan::kPagesLazy ? 2 : 1;
  }
  for (size_t i = 0; i < img.sectionCount(); ++i) {
    if (use[i] == 3 && verifyEagerPagesBySums(img, plan, i)) continue;
    if (use[i] != 2) img.verify(i);
  }
}

namespace {

// The restart's messages to a page server forked ahead (one fd each, on its SEQPACKET
// socket): the image, post-copy's socket, and its work (the runs, in a memfd). It
// answers the image with kReady once it has done all it could fail on (the restart
// reads that before it hands over the work, by then mostly without waiting), so that
// such a failure is the restart's, before "ready"; the work it just takes.
constexpr char kImageMsg = 'i', kNetMsg = 'n', kWorkMsg = 'w', kReady = 'k';

struct WorkMsg {
  char kind;
  int32_t netTimeoutMs;
};

struct Run {  // one lazy run of the plan, its section found by the restart
  uint64_t addr;
  Piece piece;
};

// The server's user and groups become the job's (the restart became the image's
// owner, becomeOwner, after it forked the server): read from /proc/JOB/status.
bool becomeLike(pid_t job) {
  if (geteuid() != 0) return true;  // a user's restart: the same user already
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/status", job);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return false;
  uid_t uid[3] = {0, 0, 0};
  gid_t gid[3] = {0, 0, 0};
  std::vector<gid_t> groups;
  bool gotUid = false, gotGid = false;
  char line[4096];
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "Uid: %u %u %u", &uid[0], &uid[1], &uid[2]) == 3) gotUid = true;
    if (sscanf(line, "Gid: %u %u %u", &gid[0], &gid[1], &gid[2]) == 3) gotGid = true;
    if (strncmp(line, "Groups:", 7) == 0) {
      char* p = line + 7;
      char* endp = nullptr;
      for (unsigned long g = strtoul(p, &endp, 10); endp != p; g = strtoul(p, &endp, 10)) {
        groups.push_back(static_cast<gid_t>(g));
        p = endp;
      }
    }
  }
  fclose(f);
  if (!gotUid || !gotGid) return false;
  if (uid[1] == 0) return true;  // the job runs as root
  if (setgroups(groups.size(), groups.data()) != 0 || setresgid(gid[0], gid[1], gid[2]) != 0 ||
      setresuid(uid[0], uid[1], uid[2]) != 0) {
    return false;
  }
  prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);  // as its restart: its own user's process
  return true;
}

// The forked server: its image, then its work; then, as ever, the restorer's
// userfaultfd and the job's pages. The restart's end closed before (it failed, or
// needs no server): it ends.
[[noreturn]] void serveWhenAsked(int sock, pid_t job) {
  kj::Own<image::FileReader> img;
  int net = -1, listener = -1;
  for (;;) {
    char msg[PATH_MAX + 16];
    int fd = -1;
    ssize_t n = control::receiveFd(sock, msg, sizeof(msg) - 1, &fd);
    if (n <= 0) _exit(0);
    msg[n] = '\0';
    if (msg[0] == kImageMsg && fd >= 0 && img.get() == nullptr) {
      if (!becomeLike(job)) {
        fprintf(stderr, "migctl restart: the page server cannot take the job's user and groups: %s\n",
                strerror(errno));
        _exit(1);
      }
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { img = kj::heap<image::FileReader>(fd, msg + 1); })) {
        fprintf(stderr, "migctl restart: the page server cannot read the image: %s\n", e->getDescription().cStr());
        _exit(1);
      }
      listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      sockaddr_un a;
      socklen_t alen = lazyAddress(job, &a);
      if (listener >= 0 && (bind(listener, reinterpret_cast<sockaddr*>(&a), alen) != 0 || listen(listener, 16) != 0)) {
        close(listener);
        listener = -1;  // then a capture cannot wait: the lazy pages doc says so
      }
      if (send(sock, &kReady, 1, MSG_NOSIGNAL) != 1) _exit(0);
    } else if (msg[0] == kNetMsg && fd >= 0 && net < 0) {
      net = fd;
    } else if (msg[0] == kWorkMsg && fd >= 0 && img.get() != nullptr && static_cast<size_t>(n) >= sizeof(WorkMsg)) {
      WorkMsg work;
      memcpy(&work, msg, sizeof(work));
      struct stat st {};
      std::vector<Run> runs;
      if (fstat(fd, &st) == 0) runs.resize(static_cast<size_t>(st.st_size) / sizeof(Run));
      const size_t bytes = runs.size() * sizeof(Run);
      if (pread(fd, runs.data(), bytes, 0) != static_cast<ssize_t>(bytes)) _exit(1);  // (a memfd: only without memory)
      close(fd);
      // Made while the restart waits at its gate, before the job can fault.
      std::map<uint64_t, Piece> pending;
      for (const Run& r : runs) {
        // A later run over an earlier one (pre-copy's later rounds, in plan order)
        // replaces what it covers, as the eager restore's copy over the mapping does.
        cut(pending, r.addr, r.addr + r.piece.len, nullptr);
        pending.emplace(r.addr, r.piece);
      }
      int uffd = receiveFd(sock);
      close(sock);
      if (uffd < 0) {
        // The restore failed (it said why): home need not keep the job's pages for it.
        PageRequest last{0, 0};
        if (net >= 0) (void)!send(net, &last, sizeof(last), MSG_NOSIGNAL);
        _exit(0);
      }
      int guard = startGuard(uffd, job);
      if (guard < 0) {
        fprintf(stderr, "migctl restart: cannot start the page server's guard (%s); killed the restarted job (pid %d)\n",
                strerror(errno), job);
        kill(job, SIGKILL);
        _exit(1);
      }
      Server(*img, job, kj::mv(pending), listener, net, work.netTimeoutMs, guard).run(uffd);
      _exit(0);
    } else {
      fprintf(stderr, "migctl restart: the page server got a message it did not expect\n");
      _exit(1);
    }
  }
}

void sendOrFail(int server, char kind, int fd, kj::StringPtr text = nullptr) {
  kj::String msg = kj::str(kind, text);
  if (control::sendFd(server, fd, msg.begin(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size())) {
    image::fail(kj::str("cannot hand the page server its work: ", strerror(errno)));
  }
}

}  // namespace

int forkPageServer(pid_t job) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    image::fail(kj::str("socketpair for the page server: ", strerror(errno)));
  }
  fflush(nullptr);
  pid_t mid = fork();
  if (mid < 0) image::fail(kj::str("fork for the page server: ", strerror(errno)));
  if (mid == 0) {
    // The middle process exits at once: the server is nobody's child the job could
    // wait for, and in a session of its own, so the terminal's ^C is the job's alone.
    setsid();
    pid_t server = fork();
    if (server != 0) _exit(server < 0 ? 1 : 0);
    // Its lines go where the restart's do (fd 2 may be the job's by now), and it holds
    // none of the job's files: a pipe or socket end kept open here would change what
    // the job's peers see.
    if (restartMessages() != STDERR_FILENO && dup2(restartMessages(), STDERR_FILENO) < 0) _exit(1);
    closeAllBut(sv[1]);
    signal(SIGPIPE, SIG_IGN);
    serveWhenAsked(sv[1], job);
  }
  close(sv[1]);
  int status = 0;
  while (waitpid(mid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    close(sv[0]);
    image::fail(kj::str("cannot start the page server"));
  }
  return sv[0];
}

void sendPageServerImage(int server, int imageFd, kj::StringPtr path) { sendOrFail(server, kImageMsg, imageFd, path); }

int startPageServer(image::FileReader& img, int imageFd, const image::RestorePlan& plan, pid_t job, int net,
                    int netTimeoutMs, int server) {
  if (server < 0) {
    server = forkPageServer(job);
    sendPageServerImage(server, imageFd, img.path());
  }
  KJ_ON_SCOPE_FAILURE(close(server));
  const plan::Header& h = plan.header();
  const plan::Pages* pages = plan::pages(&h);
  // The runs in plan order, checked here; their map is made in the server, off a hop's
  // freeze (a pre-copy image has tens of thousands of them). Before the server's
  // answer is read: it indexes the image meanwhile.
  std::vector<Run> runs;
  const SectionIndex sections(img);
  for (uint32_t i = 0; i < h.pagesCount; ++i) {
    if (pages[i].method != plan::kPagesLazy) continue;
    int64_t s = net >= 0 ? 0 : sections.of(pages[i].imageOffset);  // post-copy: from the network
    if (s < 0) image::fail(kj::str("lazy pages at image offset ", pages[i].imageOffset, " lie in no section's data"));
    runs.push_back(Run{pages[i].addr, Piece{pages[i].len, pages[i].imageOffset, static_cast<uint32_t>(s)}});
  }
  int memfd = memfd_create("mig-lazy-runs", MFD_CLOEXEC);
  const size_t bytes = runs.size() * sizeof(Run);
  if (memfd < 0 || write(memfd, runs.data(), bytes) != static_cast<ssize_t>(bytes)) {
    image::fail(kj::str("cannot write the page server's runs: ", strerror(errno)));
  }
  KJ_DEFER(close(memfd));
  char c = 0;
  ssize_t n;
  do n = read(server, &c, 1); while (n < 0 && errno == EINTR);
  // It said why on the restart's messages.
  if (n != 1 || c != kReady) image::fail(kj::str("cannot start the page server"));
  if (net >= 0) sendOrFail(server, kNetMsg, net);
  WorkMsg work{kWorkMsg, netTimeoutMs};
  if (control::sendFd(server, memfd, &work, sizeof(work), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(work))) {
    image::fail(kj::str("cannot hand the page server its work: ", strerror(errno)));
  }
  if (fcntl(server, F_SETFD, 0) != 0) image::fail(kj::str("page server socket: ", strerror(errno)));
  return server;
}

}  // namespace mig::resources
