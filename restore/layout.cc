// See layout.h. Freestanding: no library calls, no allocation.
#include "restore/layout.h"

namespace mig::restore {
namespace {

constexpr uint32_t kMapGrowsdown = 0x0100;  // MAP_GROWSDOWN
constexpr uint32_t kProtRead = 1;
constexpr uint32_t kProtWrite = 2;
constexpr uint64_t kKernelUcontextSize = 304;  // struct ucontext (x86_64 kernel layout)
constexpr uint32_t kRseqMinLen = 32;           // ORIG_RSEQ_SIZE

bool isHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
uint64_t hexValue(char c) {
  if (c >= '0' && c <= '9') return static_cast<uint64_t>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<uint64_t>(c - 'a' + 10);
  return static_cast<uint64_t>(c - 'A' + 10);
}

// Parses hex digits at line[*pos]; false if there are none or more than 16.
bool parseHex(const char* line, uint64_t len, uint64_t* pos, uint64_t* value) {
  uint64_t v = 0;
  uint64_t digits = 0;
  while (*pos < len && isHex(line[*pos])) {
    if (++digits > 16) return false;
    v = (v << 4) | hexValue(line[*pos]);
    ++*pos;
  }
  *value = v;
  return digits > 0;
}

bool equals(const char* s, uint64_t len, const char* lit) {
  uint64_t i = 0;
  for (; i < len && lit[i] != '\0'; ++i) {
    if (s[i] != lit[i]) return false;
  }
  return i == len && lit[i] == '\0';
}

bool isVdsoKind(uint32_t kind) {
  return kind == plan::kKindVdso || kind == plan::kKindVvar || kind == plan::kKindVvarVclock;
}

uint64_t maxU(uint64_t a, uint64_t b) { return a > b ? a : b; }
uint64_t minU(uint64_t a, uint64_t b) { return a < b ? a : b; }

// First region with end > addr (binary search over the sorted regions).
uint32_t firstEndingAfter(const plan::Region* r, uint32_t n, uint64_t addr) {
  uint32_t lo = 0, hi = n;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (r[mid].end <= addr) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// [addr, addr + len) lies in restored (non-vDSO) regions that are back to back and all
// have the `prot` bits.
bool covered(const plan::Header* h, uint64_t addr, uint64_t len, uint32_t prot) {
  if (len == 0 || addr + len < addr) return false;
  const plan::Region* r = plan::regions(h);
  uint32_t i = firstEndingAfter(r, h->regionCount, addr);
  uint64_t at = addr;
  const uint64_t end = addr + len;
  while (at < end) {
    if (i >= h->regionCount || r[i].start > at) return false;
    if (isVdsoKind(r[i].kind) || (r[i].prot & prot) != prot) return false;
    at = r[i].end;
    ++i;
  }
  return true;
}

}  // namespace

bool parseMapsLine(const char* line, uint64_t len, MapEntry* out) {
  uint64_t pos = 0;
  uint64_t start = 0, end = 0;
  if (!parseHex(line, len, &pos, &start) || pos >= len || line[pos] != '-') return false;
  ++pos;
  if (!parseHex(line, len, &pos, &end) || pos >= len || line[pos] != ' ') return false;
  ++pos;
  if (end <= start || pos + 4 > len) return false;
  uint32_t prot = 0;
  if (line[pos] == 'r') prot |= 1;
  else if (line[pos] != '-') return false;
  if (line[pos + 1] == 'w') prot |= 2;
  else if (line[pos + 1] != '-') return false;
  if (line[pos + 2] == 'x') prot |= 4;
  else if (line[pos + 2] != '-') return false;
  if (line[pos + 3] != 'p' && line[pos + 3] != 's') return false;
  pos += 4;
  // offset, device, inode: three space-separated fields, then the path (may be empty).
  for (int field = 0; field < 3; ++field) {
    if (pos >= len || line[pos] != ' ') return false;
    while (pos < len && line[pos] == ' ') ++pos;
    if (pos >= len) return false;
    while (pos < len && line[pos] != ' ') ++pos;
  }
  while (pos < len && line[pos] == ' ') ++pos;
  const char* path = line + pos;
  uint64_t pathLen = len - pos;
  uint32_t kind = kMapOther;
  if (equals(path, pathLen, "[stack]")) kind = kMapStack;
  else if (equals(path, pathLen, "[heap]")) kind = kMapHeap;
  else if (equals(path, pathLen, "[vdso]")) kind = kMapVdso;
  else if (equals(path, pathLen, "[vvar]")) kind = kMapVvar;
  else if (equals(path, pathLen, "[vvar_vclock]")) kind = kMapVvarVclock;
  else if (equals(path, pathLen, "[vsyscall]")) kind = kMapVsyscall;
  *out = MapEntry{start, end, prot, kind};
  return true;
}

int64_t parseMaps(const char* text, uint64_t len, MapEntry* out, uint32_t cap) {
  uint32_t count = 0;
  uint64_t pos = 0;
  while (pos < len) {
    uint64_t eol = pos;
    while (eol < len && text[eol] != '\n') ++eol;
    if (eol > pos) {
      if (count == cap) return -2;
      if (!parseMapsLine(text + pos, eol - pos, &out[count])) return -1;
      ++count;
    }
    pos = eol + 1;
  }
  return count;
}

bool isOccupied(const Occupied& occ, Range r) {
  if (r.empty()) return false;
  uint32_t i = firstEndingAfter(occ.regions, occ.regionCount, r.start);
  if (i < occ.regionCount && occ.regions[i].start < r.end) return true;
  for (uint32_t j = 0; j < occ.extraCount; ++j) {
    if (overlaps(occ.extra[j], r)) return true;
  }
  return false;
}

uint64_t findGapTopDown(const Occupied& occ, uint64_t size, uint64_t guard, uint64_t lo, uint64_t hi) {
  lo = pageUp(lo);
  hi = pageDown(hi);
  size = pageUp(size);
  guard = pageUp(guard);
  if (size == 0 || lo < kPage || hi <= lo) return 0;
  const uint64_t need = size + 2 * guard;
  // Walk the spaces between plan regions from the top; inside each, step down past the
  // extra ranges in the way.
  uint32_t i = firstEndingAfter(occ.regions, occ.regionCount, hi);  // regions[i..] end above hi
  for (int64_t k = i; k >= 0; --k) {
    uint64_t gapEnd = hi;
    if (static_cast<uint32_t>(k) < occ.regionCount) gapEnd = minU(hi, occ.regions[k].start);
    uint64_t gapStart = lo;
    if (k > 0) gapStart = maxU(lo, occ.regions[k - 1].end);
    uint64_t e = gapEnd;
    while (e >= gapStart && e - gapStart >= need) {
      Range cand{e - need, e};
      uint64_t lowestInTheWay = e;
      bool clear = true;
      for (uint32_t j = 0; j < occ.extraCount; ++j) {
        if (overlaps(occ.extra[j], cand)) {
          clear = false;
          lowestInTheWay = minU(lowestInTheWay, occ.extra[j].start);
        }
      }
      if (clear) return cand.start + guard;
      e = pageDown(lowestInTheWay);
    }
  }
  return 0;
}

Range VdsoUnit::span() const {
  Range out{0, 0};
  const Range pieces[3] = {vvar, vvarVclock, vdso};
  for (const Range& p : pieces) {
    if (p.empty()) continue;
    if (out.empty()) {
      out = p;
    } else {
      out.start = minU(out.start, p.start);
      out.end = maxU(out.end, p.end);
    }
  }
  return out;
}

VdsoUnit vdsoFromMaps(const MapEntry* maps, uint32_t count) {
  VdsoUnit u{};
  for (uint32_t i = 0; i < count; ++i) {
    Range r{maps[i].start, maps[i].end};
    if (maps[i].kind == kMapVdso) u.vdso = r;
    else if (maps[i].kind == kMapVvar) u.vvar = r;
    else if (maps[i].kind == kMapVvarVclock) u.vvarVclock = r;
  }
  return u;
}

const char* vdsoFromPlan(const plan::Header* h, VdsoUnit* out) {
  *out = VdsoUnit{};
  const plan::Region* r = plan::regions(h);
  for (uint32_t i = 0; i < h->regionCount; ++i) {
    Range* piece = nullptr;
    if (r[i].kind == plan::kKindVdso) piece = &out->vdso;
    else if (r[i].kind == plan::kKindVvar) piece = &out->vvar;
    else if (r[i].kind == plan::kKindVvarVclock) piece = &out->vvarVclock;
    if (piece == nullptr) continue;
    if (!piece->empty()) return "plan has more than one region of a vDSO kind";
    *piece = Range{r[i].start, r[i].end};
  }
  return nullptr;
}

const char* matchVdso(const VdsoUnit& current, const VdsoUnit& image) {
  if (!image.present()) return nullptr;
  if (!current.present()) return "the image's process used a vDSO but this kernel maps none";
  if (image.vdso.empty() != current.vdso.empty()) return "[vdso] present on one kernel only";
  if (image.vvar.empty() != current.vvar.empty()) return "[vvar] present on one kernel only";
  if (image.vvarVclock.empty() != current.vvarVclock.empty()) {
    return "[vvar_vclock] present on one kernel only (kernels before and after 6.13)";
  }
  if (image.vdso.size() != current.vdso.size()) return "[vdso] size differs from this kernel's";
  if (image.vvar.size() != current.vvar.size()) return "[vvar] size differs from this kernel's";
  if (image.vvarVclock.size() != current.vvarVclock.size()) return "[vvar_vclock] size differs from this kernel's";
  const uint64_t ib = image.span().start, cb = current.span().start;
  const Range ip[3] = {image.vvar, image.vvarVclock, image.vdso};
  const Range cp[3] = {current.vvar, current.vvarVclock, current.vdso};
  for (int k = 0; k < 3; ++k) {
    if (!ip[k].empty() && ip[k].start - ib != cp[k].start - cb) {
      return "the vDSO pieces are laid out differently on this kernel";
    }
  }
  return nullptr;
}

int64_t growthReservations(const plan::Header* h, uint64_t stackLimit, Range* out, uint32_t cap) {
  uint32_t n = 0;
  auto add = [&](uint64_t start, uint64_t end) -> bool {
    start = pageDown(start);
    end = pageUp(end);
    if (end <= start) return true;
    if (n == cap) return false;
    out[n++] = Range{start, end};
    return true;
  };
  const uint64_t room = minU(stackLimit, kMaxStackReserve) + kStackGuardGap;
  const plan::Region* r = plan::regions(h);
  for (uint32_t i = 0; i < h->regionCount; ++i) {
    if (r[i].kind == plan::kKindStack || (r[i].mapFlags & kMapGrowsdown)) {
      uint64_t low = r[i].end > room + kPage ? r[i].end - room : kPage;
      if (low < r[i].start && !add(low, r[i].start)) return -1;
    } else if (r[i].kind == plan::kKindHeap) {
      if (!add(r[i].end, minU(r[i].end + kHeapReserve, kUserTop))) return -1;
    }
  }
  if ((h->flags & plan::kPlanHasMmLayout) && h->mm.startBrk != 0) {
    uint64_t top = maxU(h->mm.brk, h->mm.startBrk);
    if (top < kUserTop && !add(h->mm.startBrk, minU(top + kHeapReserve, kUserTop))) return -1;
  }
  return n;
}

const char* computeSelfLayout(const SelfInput& in, SelfLayout* out) {
  *out = SelfLayout{};
  const plan::Header* h = in.plan;
  const plan::Region* regions = plan::regions(h);

  constexpr uint32_t kCap = 512;
  Range extra[kCap];
  int64_t nres = growthReservations(h, in.stackLimit, extra, kCap / 2);
  if (nres < 0) return "plan has too many stack and heap regions";
  const uint32_t reservations = static_cast<uint32_t>(nres);
  const Occupied regionsAndGrowth{regions, h->regionCount, extra, reservations};
  const Occupied regionsOnly{regions, h->regionCount, nullptr, 0};

  // What is in the way of the restored process.
  out->moveImage = in.alwaysMoveImage || isOccupied(regionsAndGrowth, in.image);
  out->movePlan = isOccupied(regionsOnly, in.planMap);
  if (in.vdso.present()) {
    VdsoUnit target{};
    if (const char* err = vdsoFromPlan(h, &target)) return err;
    const Range cur = in.vdso.span();
    bool inWay = false;
    uint32_t i = firstEndingAfter(regions, h->regionCount, cur.start);
    for (; i < h->regionCount && regions[i].start < cur.end; ++i) {
      if (!isVdsoKind(regions[i].kind)) inWay = true;
    }
    if (target.present()) {
      // Moved onto the target in step 4; parked first only if the two overlap.
      const Range dst = target.span();
      inWay = inWay || (dst.start != cur.start && overlaps(dst, cur));
    } else {
      inWay = inWay || isOccupied(regionsAndGrowth, cur);
    }
    out->moveVdso = inWay;
  }

  // Everything mapped now stays taken until the restorer lets go of it.
  uint32_t nextra = reservations;
  for (uint32_t i = 0; i < in.mapCount; ++i) {
    if (nextra == kCap - 8) return "too many mappings in the restorer";
    extra[nextra++] = Range{pageDown(in.maps[i].start), pageUp(in.maps[i].end)};
  }
  extra[nextra++] = in.image;
  extra[nextra++] = in.planMap;

  auto place = [&](uint64_t size, uint64_t* at) -> bool {
    const Occupied occ{regions, h->regionCount, extra, nextra};
    uint64_t s = findGapTopDown(occ, size, kGuard, in.lo, in.hi);
    if (s == 0) s = findGapTopDown(occ, size, kGuard, 16 * kPage, in.hi);
    if (s == 0) return false;
    extra[nextra++] = Range{s, s + pageUp(size)};
    *at = s;
    return true;
  };

  uint64_t at = 0;
  if (!place(kPrivateStackSize, &at)) return "no free gap for the restorer's stack";
  out->privateStack = Range{at, at + kPrivateStackSize};
  if (h->threadCount > 1) {
    const uint64_t size = (h->threadCount - 1) * kTempStackSize;
    if (!place(size, &at)) return "no free gap for the threads' temporary stacks";
    out->tempStacks = Range{at, at + size};
  }
  if (out->moveImage) {
    if (!place(in.image.size(), &at)) return "no free gap to move the restorer's code to";
    out->imageTo = at;
  }
  if (out->movePlan) {
    if (!place(in.planMap.size(), &at)) return "no free gap to move the plan to";
    out->planTo = at;
  }
  if (out->moveVdso) {
    if (!place(in.vdso.span().size(), &at)) return "no free gap to park the vDSO in";
    out->vdsoTo = at;
  }
  return nullptr;
}

uint32_t readBatchEnd(const plan::Pages* pages, uint32_t count, uint32_t first, uint32_t maxRuns,
                      bool (*copied)(const plan::Pages&)) {
  uint32_t end = first + 1;
  while (end < count && end - first < maxRuns && copied(pages[end]) &&
         pages[end].imageOffset == pages[end - 1].imageOffset + pages[end - 1].len) {
    ++end;
  }
  return end;
}

int64_t regionContaining(const plan::Header* h, uint64_t addr, uint64_t len) {
  const plan::Region* r = plan::regions(h);
  uint32_t i = firstEndingAfter(r, h->regionCount, addr);
  if (i >= h->regionCount || r[i].start > addr) return -1;
  if (len > r[i].end - addr) return -1;
  return i;
}

const char* checkPlanForRestore(const plan::Header* h, int planFd, int imageFd, int logFd, int64_t* badIndex) {
  *badIndex = -1;
  if (h->threadCount > kMaxThreads) return "plan has more threads than the restorer handles (1024)";
  if (planFd == imageFd) return "plan fd and image fd are the same";
  const plan::Thread* t = plan::threads(h);
  for (uint32_t i = 0; i < h->threadCount; ++i) {
    *badIndex = i;
    if (t[i].sigframeLen > 0) {
      if (t[i].sigframeAddr < 8 || !covered(h, t[i].sigframeAddr - 8, t[i].sigframeLen, kProtRead | kProtWrite)) {
        return "thread signal frame does not fit in writable restored memory";
      }
    }
    if (!covered(h, t[i].sigframeAddr, kKernelUcontextSize, kProtRead)) {
      return "thread signal frame address is not in readable restored memory";
    }
    if (t[i].kernel.tidAddress != 0 && !covered(h, t[i].kernel.tidAddress, 4, kProtRead | kProtWrite)) {
      return "thread tid address is not in writable restored memory";
    }
    if (t[i].kernel.rseqAddr != 0) {
      uint64_t len = t[i].kernel.rseqLen < kRseqMinLen ? kRseqMinLen : t[i].kernel.rseqLen;
      if (!covered(h, t[i].kernel.rseqAddr, len, kProtRead | kProtWrite)) {
        return "thread rseq area is not in writable restored memory";
      }
    }
  }
  const plan::Pages* pg = plan::pages(h);
  const plan::Region* r = plan::regions(h);
  for (uint32_t i = 0; i < h->pagesCount; ++i) {
    *badIndex = i;
    if (isVdsoKind(r[pg[i].region].kind)) return "plan has saved pages for the vDSO";
  }
  const plan::Fd* fd = plan::fds(h);
  for (uint32_t i = 0; i < h->fdCount; ++i) {
    *badIndex = i;
    if (fd[i].fd == planFd || fd[i].fd == imageFd) {
      return "the plan or image fd number is also an application fd";
    }
    // fd 2 is where the lines go when no log fd is given: the application's own.
    if (fd[i].fd == logFd && logFd != 2) {
      return "the log fd number is also an application fd";
    }
  }
  *badIndex = -1;
  return nullptr;
}

const char* checkMmLayout(const plan::MmLayout& mm, uint64_t minAddr, uint64_t dataLimit, uint64_t maxAuxvBytes) {
  const uint64_t limit = kUserTop + kPage;  // TASK_SIZE
  // (No table of messages: pointer tables would need run-time relocations.)
  auto out = [&](uint64_t v) { return v < minAddr || v >= limit; };
  if (out(mm.startCode)) return "mm start_code is outside [mmap_min_addr, TASK_SIZE)";
  if (out(mm.endCode)) return "mm end_code is outside [mmap_min_addr, TASK_SIZE)";
  if (out(mm.startData)) return "mm start_data is outside [mmap_min_addr, TASK_SIZE)";
  if (out(mm.endData)) return "mm end_data is outside [mmap_min_addr, TASK_SIZE)";
  if (out(mm.startBrk)) return "mm start_brk is outside [mmap_min_addr, TASK_SIZE)";
  if (out(mm.brk)) return "mm brk is outside [mmap_min_addr, TASK_SIZE)";
  if (out(mm.startStack)) return "mm start_stack is outside [mmap_min_addr, TASK_SIZE)";
  if (out(mm.argStart)) return "mm arg_start is outside [mmap_min_addr, TASK_SIZE)";
  if (out(mm.argEnd)) return "mm arg_end is outside [mmap_min_addr, TASK_SIZE)";
  if (out(mm.envStart)) return "mm env_start is outside [mmap_min_addr, TASK_SIZE)";
  if (out(mm.envEnd)) return "mm env_end is outside [mmap_min_addr, TASK_SIZE)";
  if (!(mm.startCode < mm.endCode)) return "mm start_code is not below end_code";
  if (!(mm.startData <= mm.endData)) return "mm start_data is above end_data";
  if (!(mm.startBrk <= mm.brk)) return "mm start_brk is above brk";
  if (!(mm.argStart <= mm.argEnd)) return "mm arg_start is above arg_end";
  if (!(mm.envStart <= mm.envEnd)) return "mm env_start is above env_end";
  if (dataLimit != ~0ull && (mm.brk - mm.startBrk) + (mm.endData - mm.startData) > dataLimit) {
    return "mm heap plus data exceed RLIMIT_DATA";
  }
  if (mm.auxvLen > maxAuxvBytes) return "mm auxv is longer than the kernel keeps";
  if (mm.auxvLen % 16 != 0) return "mm auxv is not a whole number of entries";
  return nullptr;
}

int parseFdArg(const char* s) {
  if (s == nullptr || *s == '\0') return -1;
  int64_t v = 0;
  for (int i = 0; s[i] != '\0'; ++i) {
    if (s[i] < '0' || s[i] > '9' || i >= 10) return -1;
    v = v * 10 + (s[i] - '0');
  }
  if (v > 0x7fffffff) return -1;
  return static_cast<int>(v);
}

}  // namespace mig::restore
