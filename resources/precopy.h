// Pre-copy: the pages of a running job are sent in rounds while it runs, each round
// only the pages written since the one before (dirty_pages.h), until what is left is
// small or stops shrinking; then the job is frozen and the image finished as any
// other, its pages sections holding only what changed since the last round and one
// keptPages section naming the rest (image/format.h).
#pragma once

#include "image/writer.h"
#include "resources/dirty_pages.h"
#include "resources/page_source.h"

#include <kj/function.h>

#include <cstdint>
#include <sys/types.h>

namespace mig::resources {

// When to stop the rounds and freeze. Round 1 sends every page; round n > 1 the pages
// written during round n-1. Since a round's writes are what the next one sends, a
// small round means an even smaller remainder for the freeze.
struct PrecopyRule {
  uint64_t smallPages = 256;     // 1 MiB: a round this small leaves little for the freeze
  uint32_t shrinkPercent = 90;   // round n sending more than 90 % of round n-1: no longer converging
  uint32_t maxRounds = 8;        // a job writing faster than the link sends: stop anyway

  // Whether to freeze after the rounds so far (pages each sent, round 1 first).
  bool freezeNow(kj::ArrayPtr<const uint64_t> roundPages) const;
};

struct PrecopyStats {
  uint32_t rounds = 0;
  uint64_t pagesSent = 0;      // in all rounds, while the job ran
  uint64_t pagesRewritten = 0; // sent in a round, then written again before the freeze
};

class Precopy {
 public:
  // `uffd` from the job (ControlClient::trackWrites), owned from now on.
  Precopy(pid_t pid, int uffd, PageSource& source);
  ~Precopy();
  Precopy(const Precopy&) = delete;
  Precopy& operator=(const Precopy&) = delete;

  // Runs the rounds into `w` while the job runs; `afterRound` is called after each
  // (the sender flushes there).
  void runRounds(image::ImageWriter& w, const PrecopyRule& rule, kj::Function<void()> afterRound);

  // One round of runRounds, for a caller that decides when to stop (a tree's members
  // go round by round together, shadow/send_command.cc): returns the pages it sent.
  uint64_t round(image::ImageWriter& w);

  // With the job frozen: the last look at what was written since the last round.
  // After it, held() is what the receiver has and may keep. Fails (the hop is then
  // cancelled, the job runs on) if the job started another program since the rounds began.
  void finalScan();

  const PageRangeSet& held() const { return held_; }
  const PrecopyStats& stats() const { return stats_; }

 private:
  // One look: updates held_ and returns the pages written since the previous look.
  void look(kj::Array<MappedRegion>& regions, PageRangeSet& written);
  uint64_t sendRound(image::ImageWriter& w, kj::ArrayPtr<const MappedRegion> regions, const PageRangeSet& written);

  // Private file mappings saved whole (data files; a restored job's memory mapped
  // from its image): after MADV_DONTNEED the file's page shows through again without
  // a write, and the kernel keeps it protected. So each page is remembered as sent
  // while it was the file's (heldFile_) or a private copy, and kept at the freeze only
  // if it is still the same kind.
  void markFilePages(uint64_t start, uint64_t end);
  void dropChangedKind(const MappedRegion& r);
  void forget(uint64_t start, uint64_t end) {
    held_.remove(start, end);
    heldFile_.remove(start, end);
  }

  // What tells one program from the next in the same process: the address and the 16
  // bytes of the kernel's AT_RANDOM, which every exec makes anew. The userfaultfd and
  // the page map follow the address space they were opened on, which an exec drops.
  kj::Array<kj::byte> programMark();

  pid_t pid_;
  PageSource& source_;
  DirtyPageTracker tracker_;
  int pagemap_;
  kj::Array<kj::byte> programMark_;
  PageRangeSet held_;      // sent and not written since
  PageRangeSet heldFile_;  // of those, in regions saved whole: the file's page when sent
  PrecopyStats stats_;
};

// A tree's members go round by round together (shadow/send_command.cc): each round is
// every member's round, one after the other, and the rule looks at the tree's sums (its
// freeze sends what all of them wrote). `afterRound` is called after each member's round
// (the sender flushes that member's image there). Returns the rounds made.
// A member with `mayEnd` (a child, not the tree's root) whose process ends during the
// rounds (a short child shadowd's look listed) leaves them: its `ended` is set, and
// the sender leaves it out of the move.
struct PrecopyMember {
  Precopy& precopy;
  image::ImageWriter& w;
  pid_t pid = 0;
  bool mayEnd = false;
  bool ended = false;
};
uint32_t runRoundsTogether(kj::ArrayPtr<PrecopyMember> members, const PrecopyRule& rule,
                           kj::Function<void(size_t member)> afterRound);

}  // namespace mig::resources
