// A fixed-size line builder for the restorer's messages (no libc, no allocation).
#pragma once

#include <stdint.h>

namespace mig::restore {

class Line {
 public:
  Line& str(const char* s) {
    while (s != nullptr && *s != '\0') put(*s++);
    return *this;
  }
  Line& dec(int64_t v) {
    uint64_t u = static_cast<uint64_t>(v);
    if (v < 0) {
      put('-');
      u = 0 - u;
    }
    return udec(u);
  }
  Line& udec(uint64_t v) {
    char digits[20];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0) put(digits[--n]);
    return *this;
  }
  Line& hex(uint64_t v) {
    put('0');
    put('x');
    int shift = 60;
    while (shift > 0 && ((v >> shift) & 0xf) == 0) shift -= 4;
    for (; shift >= 0; shift -= 4) put("0123456789abcdef"[(v >> shift) & 0xf]);
    return *this;
  }
  Line& range(uint64_t start, uint64_t end) { return hex(start).str("-").hex(end); }

  const char* data() const { return buf_; }
  uint64_t size() const { return len_; }
  bool truncated() const { return truncated_; }

 private:
  void put(char c) {
    if (len_ + 1 < sizeof(buf_)) {
      buf_[len_++] = c;
      buf_[len_] = '\0';
    } else {
      truncated_ = true;
    }
  }

  char buf_[512] = {};
  uint64_t len_ = 0;
  bool truncated_ = false;
};

}  // namespace mig::restore
