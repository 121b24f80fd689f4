// `migctl image info FILE [--verify] [--plan]`: what is in a checkpoint image.
#include "image/file_reader.h"
#include "image/format.h"
#include "image/host_facts.h"
#include "image/plan_builder.h"
#include "migctl/commands.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace mig::migctl {
namespace {

constexpr const char* kImageUsage =
    "usage: migctl image info FILE [--verify] [--plan]\n"
    "\n"
    "Prints the header of checkpoint image FILE (where and when it was made, the CPU\n"
    "register state it needs) and its sections, and whether this host can restore it.\n"
    "  --verify   read every byte and check every section checksum (exit 1 on damage)\n"
    "  --plan     also print the restore plan mig-restore would execute\n";

using image::FileReader;
using image::schema::Header;

void printHeader(FileReader& f) {
  Header::Reader h = f.header();
  time_t secs = static_cast<time_t>(h.getCreatedNs() / 1000000000);
  char when[64] = "?";
  struct tm tm {};
  if (gmtime_r(&secs, &tm) != nullptr) strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
  auto cpu = h.getCpu();
  printf("image %s: %" PRIu64 " bytes, format version %u\n", f.path().cStr(), f.fileSize(),
         h.getFormatVersion());
  printf("  process   %s (pid %d, job %" PRIu64 ")\n", h.getCommand().cStr(), h.getVpid(),
         h.getJobId());
  printf("  made      %s on %s, kernel %s, %s, page size %u\n", when, h.getHostname().cStr(),
         h.getKernelRelease().cStr(), h.getArch().cStr(), h.getPageSize());
  printf("  cpu       %s, XCR0 %#" PRIx64 ", XSAVE area %u bytes%s%s%s\n", cpu.getVendor().cStr(),
         cpu.getXcr0(), cpu.getXsaveSize(), cpu.getAvx() ? ", AVX" : "",
         cpu.getAvx2() ? ", AVX2" : "", cpu.getAvx512f() ? ", AVX-512" : "");
  KJ_IF_MAYBE(why, image::cpuMismatch(cpu, image::hostCpu())) {
    printf("  this host cannot restore it: %s\n", why->cStr());
  } else {
    printf("  this host's CPU can restore its register state\n");
  }
}

// A tree's members, as `migctl restart` recreates them.
void printTree(FileReader& f) {
  if (!f.isTree()) return;
  auto members = f.tree().getMembers();
  printf("  tree      %u processes, root first:\n", members.size());
  for (auto m : members) {
    printf("    pid %d, parent %d, group %d, session %d, %s", m.getVpid(), m.getVppid(), m.getPgid(), m.getSid(),
           m.getCommand().cStr());
    if (m.getZombie()) printf(" (zombie, wait status %#x)", m.getWaitStatus());
    printf("\n");
  }
}

void printSections(FileReader& f) {
  printf("  sections:\n    %3s  %-12s %12s %10s %14s\n", "#", "type", "offset", "metadata", "data");
  for (size_t i = 0; i < f.sectionCount(); ++i) {
    const image::SectionInfo& s = f.section(i);
    const char* name = image::sectionTypeName(s.type);
    char unknown[32];
    if (name == nullptr) {
      snprintf(unknown, sizeof(unknown), "unknown(%u)", s.type);
      name = unknown;
    }
    printf("    %3u  %-12s %12" PRIu64 " %10u %14" PRIu64 "\n", s.index, name, s.layout.frameOffset,
           s.metaLen, s.dataLen);
  }
}

void printPlan(FileReader& f) {
  image::RestorePlan p = image::buildRestorePlan(f);
  const plan::Header& h = p.header();
  printf("  restore plan: %" PRIu64 " bytes, %u regions, %u page ranges, %u threads\n", h.totalSize,
         h.regionCount, h.pagesCount, h.threadCount);
  static const char* kKinds[] = {"anon", "file", "heap", "stack", "vdso", "vvar", "vvar_vclock", "memfd"};  // plan::Kind
  const plan::Region* r = plan::regions(&h);
  for (uint32_t i = 0; i < h.regionCount; ++i) {
    char prot[4] = {r[i].prot & 1 ? 'r' : '-', r[i].prot & 2 ? 'w' : '-', r[i].prot & 4 ? 'x' : '-', 0};
    printf("    region %012" PRIx64 "-%012" PRIx64 " %s %-6s %s\n", r[i].start, r[i].end, prot,
           kKinds[r[i].kind], r[i].path == plan::kNoString ? "" : plan::string(&h, r[i].path));
  }
  const plan::Pages* pg = plan::pages(&h);
  for (uint32_t i = 0; i < h.pagesCount; ++i) {
    printf("    pages  %012" PRIx64 " +%-8" PRIu64 " from image byte %" PRIu64 " (%s)\n", pg[i].addr,
           pg[i].len, pg[i].imageOffset, pg[i].method == plan::kPagesMap ? "map" : "copy");
  }
  const plan::Thread* t = plan::threads(&h);
  for (uint32_t i = 0; i < h.threadCount; ++i) {
    printf("    thread %d%s, signal frame %" PRIu64 " bytes\n", t[i].vtid,
           (t[i].flags & plan::kThreadMain) ? " (main)" : "", t[i].sigframeLen);
  }
}

int imageInfo(int argc, char** argv) {
  const char* path = nullptr;
  bool verify = false, showPlan = false;
  for (int i = 0; i < argc; ++i) {
    if (strcmp(argv[i], "--verify") == 0) verify = true;
    else if (strcmp(argv[i], "--plan") == 0) showPlan = true;
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(kImageUsage, stdout);
      return 0;
    } else if (argv[i][0] == '-' || path != nullptr) {
      fprintf(stderr, "migctl image info: unexpected argument '%s'\n%s", argv[i], kImageUsage);
      return 2;
    } else {
      path = argv[i];
    }
  }
  if (path == nullptr) {
    fprintf(stderr, "migctl image info: no image file given\n%s", kImageUsage);
    return 2;
  }
  FileReader f(path);
  printHeader(f);
  printTree(f);
  printSections(f);
  if (showPlan && f.isTree()) {
    printf("  restore plans: one per live member (not shown for a tree)\n");
  } else if (showPlan) {
    printPlan(f);
  }
  if (verify) {
    f.verifyAll();
    printf("  verified: all %zu sections' checksums match\n", f.sectionCount());
  }
  return 0;
}

}  // namespace

int imageCommand(int argc, char** argv) {
  if (argc >= 1 && strcmp(argv[0], "info") == 0) return imageInfo(argc - 1, argv + 1);
  if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
    fputs(kImageUsage, stdout);
    return 0;
  }
  fprintf(stderr, "migctl image: expected 'info'\n%s", kImageUsage);
  return 2;
}

}  // namespace mig::migctl
