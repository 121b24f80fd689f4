// MIG_LOG=FILE: the shim writes a line to FILE for what it does on the program's
// behalf (each call it forwards home and its result, pipelined writes, checkpoints,
// restores), never to the program's stdout or stderr. Lines are built in a fixed
// buffer on the stack and written with one write(2) on an O_APPEND fd: no allocation
// and no lock, so a line may be written from a signal handler (the SIGSYS handler
// forwards calls), and the lines of several threads and processes never interleave.
// The fd is one of the shim's own (own_fds.h), left out of images; a restored process
// opens FILE again on the host it now runs on. Without MIG_LOG each log point costs
// one load and a branch.
#pragma once

#include "shim/runtime.h"

#include <cstdint>

namespace mig::shim {

// Reads MIG_LOG once, in the library constructor, and opens it.
void openLog();
// A restored process: the old fd did not come along; open the file again here.
void reopenLog();

inline bool logging() { return g_runtime.logFd != 0; }

// One line: `LogLine() << "forward " << name << " = " << result;` written, with the
// process's PIDs in front and a newline after, when it goes out of scope.
class LogLine {
 public:
  LogLine();
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  LogLine& operator<<(const char* s);
  LogLine& operator<<(int64_t n);
  LogLine& operator<<(int n) { return *this << static_cast<int64_t>(n); }
  LogLine& operator<<(long long n) { return *this << static_cast<int64_t>(n); }
  LogLine& operator<<(unsigned n) { return *this << static_cast<int64_t>(n); }

 private:
  char buf_[320];
  uint32_t n_ = 0;
};

}  // namespace mig::shim
