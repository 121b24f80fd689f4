// The restorer's decisions that need no system calls, as pure functions: parsing
// /proc/self/maps, finding free gaps that no plan region uses, deciding which of the
// restorer's own mappings must move out of the way, matching the new kernel's vDSO
// unit to the image's, and the checks of a plan that go beyond plan::validate().
// Compiled into the freestanding restorer and, unchanged, into the unit tests.
#pragma once

#include "image/restore_plan.h"

#include <stdint.h>

namespace mig::restore {

inline constexpr uint64_t kPage = plan::kPage;
// Highest user address + 1 the restorer places anything below (x86_64, 4-level paging:
// TASK_SIZE_MAX is 2^47 - one page).
inline constexpr uint64_t kUserTop = (1ull << 47) - kPage;
inline constexpr uint32_t kMaxThreads = 1024;
// A hop home with children born away: at most this many of them are named on the
// restorer's command line (restorer.cc, GO_FD; migctl/tree_restart.cc); a job's shim
// keeps at most 64 children born away (shim/forward/state.h kMaxAwayChildren).
inline constexpr uint32_t kMaxChildrenReleased = 64;
inline constexpr uint64_t kPrivateStackSize = 256 * 1024;
inline constexpr uint64_t kTempStackSize = 64 * 1024;
inline constexpr uint64_t kGuard = kPage;           // free space kept around what we place
inline constexpr uint64_t kStackGuardGap = 1ull << 20;  // the kernel's stack_guard_gap (256 pages)
inline constexpr uint64_t kMaxStackReserve = 1ull << 30;
inline constexpr uint64_t kHeapReserve = 1ull << 30;    // brk growth room kept free above the heap

struct Range {
  uint64_t start;
  uint64_t end;  // exclusive
  bool empty() const { return end <= start; }
  uint64_t size() const { return empty() ? 0 : end - start; }
};

inline bool overlaps(Range a, Range b) { return !a.empty() && !b.empty() && a.start < b.end && b.start < a.end; }
inline bool contains(Range outer, Range inner) { return inner.start >= outer.start && inner.end <= outer.end; }
inline uint64_t pageDown(uint64_t v) { return v & ~(kPage - 1); }
inline uint64_t pageUp(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

// ---- /proc/self/maps ------------------------------------------------------------

enum MapKind : uint32_t {
  kMapOther = 0,
  kMapStack,
  kMapHeap,
  kMapVdso,
  kMapVvar,
  kMapVvarVclock,
  kMapVsyscall,
};

struct MapEntry {
  uint64_t start;
  uint64_t end;
  uint32_t prot;  // PROT_READ 1 | PROT_WRITE 2 | PROT_EXEC 4
  uint32_t kind;  // MapKind
};

// Parses one line of /proc/self/maps (without its newline). False if malformed.
bool parseMapsLine(const char* line, uint64_t len, MapEntry* out);

// Parses a whole maps text. Returns the number of entries, -1 if a line is malformed,
// -2 if there are more than `cap`.
int64_t parseMaps(const char* text, uint64_t len, MapEntry* out, uint32_t cap);

// ---- gaps -----------------------------------------------------------------------

// What is taken: the plan's regions (sorted, non-overlapping, as validate() guarantees)
// and a short unsorted list of anything else (current mappings, growth reservations,
// ranges already chosen).
struct Occupied {
  const plan::Region* regions;
  uint32_t regionCount;
  const Range* extra;
  uint32_t extraCount;
};

bool isOccupied(const Occupied& occ, Range r);

// The highest page-aligned s with lo <= s - guard and s + size + guard <= hi such that
// [s - guard, s + size + guard) touches nothing in `occ`; 0 if there is none.
uint64_t findGapTopDown(const Occupied& occ, uint64_t size, uint64_t guard, uint64_t lo, uint64_t hi);

// ---- vDSO -------------------------------------------------------------------------

// The kernel's [vvar], [vvar_vclock] (>= 6.13) and [vdso] mappings: one unit whose
// relative layout the vDSO code depends on. An absent piece is an empty Range.
struct VdsoUnit {
  Range vvar;
  Range vvarVclock;
  Range vdso;
  bool present() const { return !vvar.empty() || !vvarVclock.empty() || !vdso.empty(); }
  Range span() const;  // from the lowest piece's start to the highest piece's end
};

VdsoUnit vdsoFromMaps(const MapEntry* maps, uint32_t count);
// From the plan's regions of the vDSO kinds; nullptr, or a message if one kind repeats.
const char* vdsoFromPlan(const plan::Header* h, VdsoUnit* out);
// nullptr if the current unit can be moved onto the image's: the same pieces, the same
// sizes and the same distances between them. Else what differs.
const char* matchVdso(const VdsoUnit& current, const VdsoUnit& image);

// ---- moving the restorer out of the way -------------------------------------------

struct SelfInput {
  const plan::Header* plan;
  Range image;      // the restorer's own ELF image (every PT_LOAD page)
  Range planMap;    // where the plan is mapped
  VdsoUnit vdso;    // the current kernel's unit
  const MapEntry* maps;  // everything mapped now (includes the above and the kernel stack)
  uint32_t mapCount;
  uint64_t stackLimit;  // RLIMIT_STACK soft limit (room kept below the restored stacks)
  uint64_t lo;          // search bounds for gaps
  uint64_t hi;
  bool alwaysMoveImage; // place a copy of the image in a gap even if it is not in the way
};

struct SelfLayout {
  bool moveImage;
  uint64_t imageTo;     // new start of the image (same page offsets)
  bool movePlan;
  uint64_t planTo;
  bool moveVdso;        // the current unit sits where a plan region goes: park it first
  uint64_t vdsoTo;      // new start of the unit's span
  Range privateStack;   // the main thread's stack for the rest of the restore
  Range tempStacks;     // (threads - 1) * kTempStackSize, empty for one thread
};

// Decides where everything of the restorer's goes. Returns nullptr or what failed.
const char* computeSelfLayout(const SelfInput& in, SelfLayout* out);

// Ranges kept free for the restored process besides its regions: growth room below
// stacks (kKindStack or MAP_GROWSDOWN) and above the heap / brk. Returns the count
// written to out[cap], or -1 if there are more than `cap`.
int64_t growthReservations(const plan::Header* h, uint64_t stackLimit, Range* out, uint32_t cap);

// ---- checks of a validated plan that the restorer relies on ------------------------

// Index of the region containing [addr, addr + len), or -1.
int64_t regionContaining(const plan::Header* h, uint64_t addr, uint64_t len);

// Everything that would make the restore fail halfway, found before anything is
// changed: thread frames, tid addresses and rseq areas outside writable restored
// memory, more threads than the restorer handles, saved pages for the vDSO, a plan,
// image or log fd colliding with an application fd. nullptr, or a message; *badIndex
// gets the thread, pages or fd index concerned (or -1).
const char* checkPlanForRestore(const plan::Header* h, int planFd, int imageFd, int logFd, int64_t* badIndex);

// What prctl(PR_SET_MM, PR_SET_MM_MAP) would refuse (kernel/sys.c, validate_prctl_map_addr
// and prctl_set_mm_map), checked first to say which field is wrong: every address in
// [minAddr, kUserTop + kPage), start_code < end_code, start_data <= end_data,
// start_brk <= brk, arg_start <= arg_end, env_start <= env_end, (brk - start_brk) +
// (end_data - start_data) within RLIMIT_DATA (`dataLimit`, ~0 = unlimited), auxv at
// most `maxAuxvBytes` (sizeof mm->saved_auxv: 448 on 6.18 x86_64). The kernel answers
// EINVAL to all of them. It does not check that the addresses are mapped, nor brk
// against end_data. nullptr if none applies.
const char* checkMmLayout(const plan::MmLayout& mm, uint64_t minAddr, uint64_t dataLimit, uint64_t maxAuxvBytes);

// ---- saved pages read in batches ------------------------------------------------------

// The most page runs one preadv reads (its iovec array is on the restorer's stack).
inline constexpr uint32_t kMaxReadBatch = 256;

// Step 3 copies page runs with one preadv for as many as it can: pre-copy's later
// rounds are thousands of single pages, scattered in memory but one after the other
// in the image, and a pread each made them most of a pre-copy migration's freeze. From
// run `first` (copied), the end of the batch: the runs after it that are copied too
// (`copied(run)`) and whose image bytes start where the run before's end, at most
// `maxRuns` in all.
uint32_t readBatchEnd(const plan::Pages* pages, uint32_t count, uint32_t first, uint32_t maxRuns,
                      bool (*copied)(const plan::Pages&));

// ---- small parsing helpers ----------------------------------------------------------

// A non-negative decimal int (an fd number); -1 if malformed or out of range.
int parseFdArg(const char* s);

}  // namespace mig::restore
