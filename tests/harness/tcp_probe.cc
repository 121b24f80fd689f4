// tcp_probe: a tiny TCP echo pair for the multi-host tests (tests/harness).
//
// Fresh machines may lack nc, socat or python; this is all the tests need.
//
//   tcp_probe listen [--bind ADDR] [--port N] [--timeout SEC]
//       Listens (default 0.0.0.0, port 0 = any), prints "port N" as soon as
//       it accepts connections, takes one connection, prints "peer ADDR",
//       reads one line, echoes it back and exits 0.
//   tcp_probe connect ADDR PORT --send TEXT [--expect TEXT] [--timeout SEC]
//       Connects, sends TEXT and a newline, reads one line, prints
//       "got LINE" and exits 0 if it equals --expect (default: TEXT).
//
// Every blocking step is bounded by --timeout (default 10 s) in total.
// Exit status: 0 success, 1 network error, timeout or mismatch, 2 usage.
// Output lines go to stdout, flushed at once; errors go to stderr.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: tcp_probe listen [--bind ADDR] [--port N] [--timeout SEC]\n"
               "       tcp_probe connect ADDR PORT --send TEXT [--expect TEXT] [--timeout SEC]\n");
  std::exit(2);
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "tcp_probe: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

[[noreturn]] void fail_msg(const std::string& what) {
  std::fprintf(stderr, "tcp_probe: %s\n", what.c_str());
  std::exit(1);
}

// Waits until fd has `events`, or fails once the deadline has passed.
void wait_for(int fd, short events, Clock::time_point deadline, const char* what) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) fail_msg(std::string("timed out waiting to ") + what);
    pollfd p = {fd, events, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return;
    if (r < 0 && errno != EINTR) fail("poll");
  }
}

addrinfo* resolve(const char* host, const char* port, bool passive) {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) fail_msg(std::string("bad address ") + (host ? host : "*") + ": " + gai_strerror(rc));
  return res;
}

std::string address_text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  else if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, buf, sizeof buf);
  return buf;
}

int port_of(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
}

// Reads up to and excluding the first newline (or EOF).
std::string read_line(int fd, Clock::time_point deadline) {
  std::string line;
  for (;;) {
    wait_for(fd, POLLIN, deadline, "read a line");
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      fail("read");
    }
    if (n == 0 || c == '\n') return line;
    line += c;
  }
}

void write_all(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    wait_for(fd, POLLOUT, deadline, "write");
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      fail("write");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

void say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

int do_listen(const char* bind_addr, const char* port, Clock::time_point deadline) {
  addrinfo* ai = resolve(bind_addr, port, true);
  int ls = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (ls < 0) fail("socket");
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, ai->ai_addr, ai->ai_addrlen) != 0) fail("bind");
  freeaddrinfo(ai);
  if (listen(ls, 1) != 0) fail("listen");
  sockaddr_storage me = {};
  socklen_t len = sizeof me;
  if (getsockname(ls, reinterpret_cast<sockaddr*>(&me), &len) != 0) fail("getsockname");
  say("port " + std::to_string(port_of(me)));

  int cs;
  sockaddr_storage peer = {};
  for (;;) {
    wait_for(ls, POLLIN, deadline, "accept a connection");
    len = sizeof peer;
    cs = accept4(ls, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cs >= 0) break;
    if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) fail("accept");
  }
  close(ls);
  say("peer " + address_text(peer));
  std::string line = read_line(cs, deadline);
  write_all(cs, line + "\n", deadline);
  close(cs);
  return 0;
}

int do_connect(const char* host, const char* port, const std::string& send,
               const std::string& expect, Clock::time_point deadline) {
  addrinfo* ai = resolve(host, port, false);
  int s = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) fail("socket");
  if (connect(s, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) fail("connect");
    wait_for(s, POLLOUT, deadline, "connect");
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      errno = err;
      fail("connect");
    }
  }
  freeaddrinfo(ai);
  write_all(s, send + "\n", deadline);
  std::string got = read_line(s, deadline);
  close(s);
  say("got " + got);
  if (got != expect) fail_msg("expected \"" + expect + "\", got \"" + got + "\"");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  std::string_view mode = argv[1];
  std::optional<std::string> send, expect;
  const char* bind_addr = "0.0.0.0";
  const char* port = "0";
  double timeout = 10;
  const char* positional[2] = {nullptr, nullptr};
  int npos = 0;
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--bind") bind_addr = value();
    else if (a == "--port") port = value();
    else if (a == "--timeout") timeout = std::atof(value());
    else if (a == "--send") send = value();
    else if (a == "--expect") expect = value();
    else if (!a.starts_with("-") && npos < 2) positional[npos++] = argv[i];
    else usage();
  }
  if (timeout <= 0) usage();
  auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<long>(timeout * 1000));
  signal(SIGPIPE, SIG_IGN);

  if (mode == "listen" && npos == 0 && !send && !expect) return do_listen(bind_addr, port, deadline);
  if (mode == "connect" && npos == 2 && send)
    return do_connect(positional[0], positional[1], *send, expect.value_or(*send), deadline);
  usage();
}
