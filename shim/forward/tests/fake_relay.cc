// A stand-in for home in the forwarding test (forward_test.sh): it plays the relay
// and the deputy in one process. It holds the "home" fds of the job (3: out.txt for
// writing, 4: in.txt for reading, 5: the write end of a pipe whose contents go to
// pipe_out.txt), writes the Config the shim's test hook reads, accepts the shim's
// per-thread connections on a Unix socket, checks each Hello, and answers every
// request with rsc::Dispatcher, which runs the call on this process's own fds, in
// this process's working directory (HOME_DIR). Writes to fd 5 are pipelined.
//
//   fake_relay HOME_DIR SOCKET CONFIG LOCAL_DIR
//   fake_relay --bare HOME_DIR SOCKET
//
// Prints "READY" on stdout once it accepts connections; on SIGTERM it finishes the
// pipe file and prints "connections N requests M bad-hellos B", then exits. With
// --bare (forward_restart_test.sh) it opens no fds and writes no Config: the job's
// home fds are the ones it was started with (0, 1, 2), and it talks on stderr.
#include "rsc/dispatch.h"
#include "rsc/wire.h"
#include "shim/forward/forward_config.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

namespace {

constexpr uint64_t kJobId = 4242;
constexpr int kOwnFdFloor = 200;  // our own fds stay out of the job's fd numbers

volatile sig_atomic_t g_stop = 0;

[[noreturn]] void die(const char* what) {
  fprintf(stderr, "fake_relay: %s: %s\n", what, strerror(errno));
  exit(1);
}

int high(int fd) {
  int h = fcntl(fd, F_DUPFD_CLOEXEC, kOwnFdFloor);
  if (h < 0) die("F_DUPFD");
  close(fd);
  return h;
}

void placeAt(int fd, int at) {
  if (fd == at) return;
  if (dup2(fd, at) != at) die("dup2");
  close(fd);
}

bool readExact(int fd, void* p, size_t n) {
  auto* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool writeAll(int fd, const void* p, size_t n) {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

void* drainPipe(void* arg) {
  int from = static_cast<int*>(arg)[0], to = static_cast<int*>(arg)[1];
  char buf[4096];
  for (;;) {
    ssize_t n = read(from, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    writeAll(to, buf, static_cast<size_t>(n));
  }
  close(to);
  return nullptr;
}

void token(uint8_t* out) {
  for (int i = 0; i < 32; ++i) out[i] = static_cast<uint8_t>(0xa0 + i);
}

void writeConfig(const char* path, const char* socketPath, const char* localDir) {
  auto* c = static_cast<mig::forward::Config*>(calloc(1, sizeof(mig::forward::Config)));
  c->magic = mig::forward::kConfigMagic;
  c->size = sizeof(*c);
  snprintf(c->relaySocket, sizeof(c->relaySocket), "%s", socketPath);
  c->jobId = kJobId;
  token(c->token);
  for (int fd : {3, 4, 5}) c->forwardedFds[0] |= 1ull << fd;
  c->streamFds[0] |= 1ull << 5;
  c->pipelinedFds[0] |= 1ull << 5;  // its writes come without waiting for replies
  c->localPathCount = 1;
  snprintf(c->localPaths[0], sizeof(c->localPaths[0]), "%s", localDir);
  FILE* f = fopen(path, "wb");
  if (f == nullptr || fwrite(c, sizeof(*c), 1, f) != 1 || fclose(f) != 0) die("writing the config");
  free(c);
}

struct Conn {
  int fd;
  bool greeted;
};

}  // namespace

int main(int argc, char** argv) {
  const bool bare = argc == 4 && strcmp(argv[1], "--bare") == 0;
  if (bare) ++argv;
  if (argc != 5 && !bare) {
    fprintf(stderr, "usage: fake_relay HOME_DIR SOCKET CONFIG LOCAL_DIR | --bare HOME_DIR SOCKET\n");
    return 2;
  }
  const char* socketPath = argv[2];
  if (chdir(argv[1]) != 0) die("chdir");
  FILE* talk = bare ? stderr : stdout;

  // The job's home fds.
  pthread_t drainer{};
  if (!bare) {
    placeAt(open("out.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644), 3);
    placeAt(open("in.txt", O_RDONLY), 4);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) die("pipe");
    static int drain[2];
    drain[0] = high(p[0]);
    drain[1] = high(open("pipe_out.txt", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    placeAt(p[1], 5);
    fcntl(5, F_SETFD, 0);
    pthread_create(&drainer, nullptr, drainPipe, drain);
  }

  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = 1; };
  sigaction(SIGTERM, &sa, nullptr);  // no SA_RESTART: poll returns EINTR

  int listener = high(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socketPath);
  unlink(socketPath);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(listener, 16) != 0) die("listen");
  if (!bare) writeConfig(argv[3], socketPath, argv[4]);
  fprintf(talk, "READY\n");
  fflush(talk);

  mig::rsc::Dispatcher dispatcher;
  std::vector<Conn> conns;
  std::vector<uint8_t> msg(mig::rsc::kMaxMessage);
  unsigned connections = 0, requests = 0, badHellos = 0;
  // After SIGTERM, go on until the job's connections are closed (or 5 s pass without
  // a word): pipelined writes it sent before exiting may still wait unread in them,
  // and the real relay, too, runs every write before it says the job ended.
  while (!g_stop || !conns.empty()) {
    std::vector<pollfd> fds{{listener, POLLIN, 0}};
    for (const Conn& c : conns) fds.push_back({c.fd, POLLIN, 0});
    int ready = poll(fds.data(), fds.size(), g_stop ? 5000 : -1);
    if (ready == 0) break;
    if (ready < 0) continue;
    if (fds[0].revents & POLLIN) {
      int c = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) {
        conns.push_back({high(c), false});
        ++connections;
      }
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Conn& c = conns[i - 1];
      bool ok;
      if (!c.greeted) {
        mig::forward::Hello h{};
        uint8_t want[32];
        token(want);
        ok = readExact(c.fd, &h, sizeof(h)) && h.magic == mig::forward::kHelloMagic && h.length == sizeof(h) &&
             h.jobId == kJobId && memcmp(h.token, want, sizeof(want)) == 0;
        if (!ok) ++badHellos;
        c.greeted = ok;
      } else {
        mig::rsc::RequestHeader h{};
        ok = readExact(c.fd, &h, sizeof(h)) && h.magic == mig::rsc::kRequestMagic && h.length >= sizeof(h) &&
             h.length <= msg.size();
        if (ok) {
          memcpy(msg.data(), &h, sizeof(h));
          ok = readExact(c.fd, msg.data() + sizeof(h), h.length - sizeof(h));
        }
        if (ok) {
          ++requests;
          // The relay's own mark (runs after the writes to files only): here every request
          // runs in order anyway. Taken off, as shadowd's relay does.
          h.flags &= ~mig::rsc::kFileWrite;
          memcpy(msg.data(), &h, sizeof(h));
          if (h.flags & mig::rsc::kBarrier) {
            // Requests run here one at a time, as they come: every write before it has run.
            mig::rsc::ReplyHeader done{mig::rsc::kReplyMagic, sizeof(done), h.seq, 0, 0, 0};
            ok = writeAll(c.fd, &done, sizeof(done));
          } else {
            auto reply = dispatcher.call(kj::arrayPtr(msg.data(), h.length));
            ok = reply.size() == 0 || writeAll(c.fd, reply.begin(), reply.size());
          }
        }
      }
      if (!ok) {
        close(c.fd);
        c.fd = -1;
      }
    }
    std::vector<Conn> open;
    for (const Conn& c : conns) {
      if (c.fd >= 0) open.push_back(c);
    }
    conns.swap(open);
  }
  if (!bare) {
    close(5);
    pthread_join(drainer, nullptr);
  }
  unlink(socketPath);
  fprintf(talk, "connections %u requests %u bad-hellos %u\n", connections, requests, badHellos);
  return 0;
}
