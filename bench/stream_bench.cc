// What the links' secure stream (shadow/secure_stream.h) costs, on its own: two
// processes over TCP loopback, each with its own event loop as a link process and a
// deputy have, one sending 1 MiB messages in two pieces (a Cap'n Proto message's
// segment table and segment) and the other reading each whole, then a 64-byte ping-pong;
// encrypted beside --insecure-plaintext-links' plaintext, measured in turn in the same
// run (which goes first alternates). Prints wall throughput and each side's CPU per
// MiB, the figures bench/encryption_bench.sh's forwarded paths are made of without the
// shim, the deputy's file and the relay around them.
// usage: stream_bench [MIB] [ROUNDS] [PINGS]   (defaults 512, 5, 20000)
#include "shadow/secure_stream.h"

#include <kj/async-io.h>
#include <kj/debug.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

using mig::shadow::LinkMode;
using mig::shadow::LinkSecret;
using mig::shadow::SecureStream;

namespace {

constexpr size_t kMessage = 1 << 20;
constexpr size_t kTable = 8;

double cpuSeconds(int who) {
  rusage u;
  getrusage(who, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void tcpPair(int fds[2]) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  KJ_SYSCALL(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)));
  KJ_SYSCALL(listen(l, 1));
  KJ_SYSCALL(getsockname(l, reinterpret_cast<sockaddr*>(&a), &len));
  fds[0] = socket(AF_INET, SOCK_STREAM, 0);
  KJ_SYSCALL(connect(fds[0], reinterpret_cast<sockaddr*>(&a), sizeof(a)));
  KJ_SYSCALL(fds[1] = accept(l, nullptr, nullptr));
  close(l);
  int one = 1;
  for (int i = 0; i < 2; ++i) setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

LinkSecret secretFor(LinkMode mode) {
  LinkSecret s;
  s.key = kj::heapArray<kj::byte>(32);
  for (size_t i = 0; i < 32; ++i) s.key[i] = static_cast<kj::byte>(i * 7 + 1);
  s.mode = mode;
  return s;
}

// What a side reports to the parent: its CPU for the stream part and when its parts ended.
struct Report {
  int sender, aes;
  double cpu, streamEnd, pingEnd;
};

// One side's work, reported on `report`.
void runSide(int fd, bool sender, LinkMode mode, size_t mib, size_t pings, int report) {
  auto io = kj::setupAsyncIo();
  auto secret = secretFor(mode);
  SecureStream s(io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP),
                 sender ? SecureStream::Side::CONNECTOR : SecureStream::Side::ACCEPTOR, secret);
  s.handshake().wait(io.waitScope);
  std::vector<kj::byte> buf(kMessage + kTable, 0x5a), small(64, 1);
  double c0 = cpuSeconds(RUSAGE_SELF);
  for (size_t i = 0; i < mib; ++i) {
    if (sender) {
      kj::ArrayPtr<const kj::byte> pieces[2] = {kj::arrayPtr(buf.data(), kTable),
                                                kj::arrayPtr(buf.data() + kTable, kMessage)};
      s.write(kj::arrayPtr(pieces, 2)).wait(io.waitScope);
    } else {
      // As Cap'n Proto reads a message: its first word, then the rest whole.
      s.read(buf.data(), kTable).wait(io.waitScope);
      s.read(buf.data() + kTable, kMessage).wait(io.waitScope);
    }
  }
  double c1 = cpuSeconds(RUSAGE_SELF), streamEnd = now();
  for (size_t i = 0; i < pings; ++i) {
    if (sender) {
      s.write(small.data(), small.size()).wait(io.waitScope);
      s.read(small.data(), small.size()).wait(io.waitScope);
    } else {
      s.read(small.data(), small.size()).wait(io.waitScope);
      s.write(small.data(), small.size()).wait(io.waitScope);
    }
  }
  bool aes = mode == LinkMode::ENCRYPTED && s.algorithm() == mig::shadow::Algorithm::AES256_GCM;
  Report r{sender, aes, c1 - c0, streamEnd, now()};
  KJ_SYSCALL(write(report, &r, sizeof(r)));
}

struct Figure {
  bool aes;
  double mbs, sendCpu, recvCpu, rttUs;  // MB/s; CPU ms per MiB each side; us a round trip
};

Figure measure(LinkMode mode, size_t mib, size_t pings) {
  int fds[2], rep[2];
  tcpPair(fds);
  KJ_SYSCALL(pipe(rep));
  double t0 = now();
  pid_t kids[2];
  for (int side = 0; side < 2; ++side) {
    KJ_SYSCALL(kids[side] = fork());
    if (kids[side] == 0) {
      close(fds[1 - side]);
      runSide(fds[side], side == 0, mode, mib, pings, rep[1]);
      _exit(0);
    }
  }
  close(fds[0]);
  close(fds[1]);
  close(rep[1]);
  Report r[2];
  for (auto& one : r) KJ_SYSCALL(read(rep[0], &one, sizeof(one)));
  const Report& snd = r[0].sender ? r[0] : r[1];
  const Report& rcv = r[0].sender ? r[1] : r[0];
  for (pid_t k : kids) {
    int st;
    waitpid(k, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "stream_bench: a side failed\n");
      exit(1);
    }
  }
  close(rep[0]);
  // The stream has ended when the receiver has read it all; the ping-pong when the
  // sender has its last answer.
  Figure f;
  f.aes = snd.aes != 0;
  f.mbs = static_cast<double>(mib) * kMessage / (rcv.streamEnd - t0) / 1e6;
  f.sendCpu = 1e3 * snd.cpu / static_cast<double>(mib);
  f.recvCpu = 1e3 * rcv.cpu / static_cast<double>(mib);
  f.rttUs = pings == 0 ? 0 : 1e6 * (snd.pingEnd - rcv.streamEnd) / static_cast<double>(pings);
  return f;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], nullptr, 10) : 512;
  int rounds = argc > 2 ? atoi(argv[2]) : 5;
  size_t pings = argc > 3 ? strtoul(argv[3], nullptr, 10) : 20000;
  std::vector<double> v[2][4];
  bool aes = false;
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < 2; ++k) {
      int m = (k + r) % 2;  // alternates which goes first
      Figure f = measure(m == 0 ? LinkMode::ENCRYPTED : LinkMode::PLAINTEXT, mib, pings);
      aes = aes || f.aes;
      v[m][0].push_back(f.mbs);
      v[m][1].push_back(f.sendCpu);
      v[m][2].push_back(f.recvCpu);
      v[m][3].push_back(f.rttUs);
    }
  }
  printf("secure stream over TCP loopback, %zu x 1 MiB then %zu 64-byte round trips, median of %d:\n", mib, pings,
         rounds);
  printf("  (encrypted with %s)\n", aes ? "AES-256-GCM" : "ChaCha20-Poly1305");
  printf("  %-34s %12s %12s %8s\n", "", "encrypted", "plaintext", "cost");
  const char* names[4] = {"1 MiB messages, MB/s", "sender CPU per MiB, ms", "receiver CPU per MiB, ms",
                          "64-byte round trip, us"};
  for (int i = 0; i < 4; ++i) {
    double e = median(v[0][i]), p = median(v[1][i]);
    double cost = i == 0 ? 100 * (p - e) / p : 100 * (e - p) / p;
    printf("  %-34s %12.2f %12.2f %7.1f %%\n", names[i], e, p, cost);
  }
  printf("  (load average at the end: ");
  FILE* l = fopen("/proc/loadavg", "r");
  char buf[64] = "?";
  if (l != nullptr && fgets(buf, sizeof(buf), l) != nullptr) buf[strcspn(buf, " ")] = 0;
  if (l != nullptr) fclose(l);
  printf("%s)\n", buf);
  return 0;
}
