// `migctl image info FILE [--verify] [--plan]`: what is in a checkpoint image.
#include "image/file_reader.h"
#include "image/format.h"
#include "image/host_facts.h"
#include "image/plan_builder.h"
#include "image/image_chain.h"
#include "image/image_error.h"
#include "migctl/commands.h"
#include "migctl/json_output.h"

#include <cinttypes>
#include <cstdio>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <cstring>
#include <ctime>

namespace mig::migctl {
namespace {

constexpr const char* kAbout =
    "Prints the header of checkpoint image FILE (where and when it was made, the CPU "
    "register state it needs) and its sections, and whether this host can restore it.";

struct InfoOptions {
  kj::String path;
  bool verify = false;
  bool plan = false;
  bool json = false;
};

using image::FileReader;
using image::schema::Header;

// Whom a restart runs as: the owner the kernel reported at checkpoint time.
kj::String ownerText(Header::Reader h) {
  if (!h.getOwnerKnown()) return kj::str("not recorded (an image older than owners)");
  struct passwd* pw = getpwuid(h.getOwnerUid());
  struct group* gr = getgrgid(h.getOwnerGid());
  return kj::str("uid ", h.getOwnerUid(), pw != nullptr ? kj::str(" (", pw->pw_name, ")") : kj::str(""), ", gid ",
                 h.getOwnerGid(), gr != nullptr ? kj::str(" (", gr->gr_name, ")") : kj::str(""));
}

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
  printf("  owner     %s\n", ownerText(h).cStr());
  printf("  made      %s on %s, kernel %s, %s, page size %u\n", when, h.getHostname().cStr(),
         h.getKernelRelease().cStr(), h.getArch().cStr(), h.getPageSize());
  printf("  cpu       %s, XCR0 %#" PRIx64 ", XSAVE area %u bytes%s%s%s\n", cpu.getVendor().cStr(),
         cpu.getXcr0(), cpu.getXsaveSize(), cpu.getAvx() ? ", AVX" : "",
         cpu.getAvx2() ? ", AVX2" : "", cpu.getAvx512f() ? ", AVX-512" : "");
  KJ_IF_MAYBE(why, image::cpuMismatch(cpu, image::hostXcr0())) {
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
           pg[i].len, pg[i].imageOffset, pg[i].method == plan::kPagesLazy ? "lazy" : "copy");
  }
  const plan::Thread* t = plan::threads(&h);
  for (uint32_t i = 0; i < h.threadCount; ++i) {
    printf("    thread %d%s, signal frame %" PRIu64 " bytes\n", t[i].vtid,
           (t[i].flags & plan::kThreadMain) ? " (main)" : "", t[i].sigframeLen);
  }
}

const char* sectionName(const image::SectionInfo& s, char (&unknown)[32]) {
  const char* name = image::sectionTypeName(s.type);
  if (name != nullptr) return name;
  snprintf(unknown, sizeof(unknown), "unknown(%u)", s.type);
  return unknown;
}

void printJsonInfo(FileReader& f, bool verified) {
  Header::Reader h = f.header();
  capnp::MallocMessageBuilder m;
  auto j = m.initRoot<out::ImageInfo>();
  j.setFile(f.path());
  j.setFileBytes(static_cast<double>(f.fileSize()));
  j.setFormatVersion(h.getFormatVersion());
  j.setCommand(h.getCommand());
  j.setPid(h.getVpid());
  j.setJobId(kj::str(h.getJobId()));
  time_t secs = static_cast<time_t>(h.getCreatedNs() / 1000000000);
  char when[64] = "?";
  struct tm tm {};
  if (gmtime_r(&secs, &tm) != nullptr) strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
  j.setCreated(when);
  j.setCreatedUnixSeconds(static_cast<double>(h.getCreatedNs()) / 1e9);
  j.setHostname(h.getHostname());
  j.setKernel(h.getKernelRelease());
  j.setArch(h.getArch());
  j.setPageSize(h.getPageSize());
  auto cpu = h.getCpu();
  j.setCpuVendor(cpu.getVendor());
  char xcr0[32];
  snprintf(xcr0, sizeof(xcr0), "%#" PRIx64, cpu.getXcr0());
  j.setXcr0(xcr0);
  j.setXsaveBytes(cpu.getXsaveSize());
  j.setAvx(cpu.getAvx());
  j.setAvx2(cpu.getAvx2());
  j.setAvx512f(cpu.getAvx512f());
  KJ_IF_MAYBE(why, image::cpuMismatch(cpu, image::hostXcr0())) {
    j.setRestorableHere(false);
    j.setNotRestorableBecause(*why);
  } else {
    j.setRestorableHere(true);
    j.setNotRestorableBecause("");  // unset Text is left out of the JSON: every field is always there
  }
  auto sections = j.initSections(static_cast<unsigned>(f.sectionCount()));
  for (size_t i = 0; i < f.sectionCount(); ++i) {
    const image::SectionInfo& s = f.section(i);
    char unknown[32];
    auto o = sections[static_cast<unsigned>(i)];
    o.setIndex(s.index);
    o.setType(sectionName(s, unknown));
    o.setOffset(static_cast<double>(s.layout.frameOffset));
    o.setMetadataBytes(s.metaLen);
    o.setDataBytes(static_cast<double>(s.dataLen));
  }
  j.setVerified(verified);
  j.setOwnerKnown(h.getOwnerKnown());
  j.setOwnerUid(h.getOwnerUid());
  j.setOwnerGid(h.getOwnerGid());
  printJson(j.asReader());
}

int imageInfo(const InfoOptions& o) {
  FileReader f(o.path.cStr());
  if (o.json) {
    if (o.verify) f.verifyAll();  // damage: exit 1 with its one line, no JSON
    printJsonInfo(f, o.verify);
    return 0;
  }
  printHeader(f);
  printTree(f);
  printSections(f);
  if (o.plan && f.isTree()) {
    printf("  restore plans: one per live member (not shown for a tree)\n");
  } else if (o.plan) {
    printPlan(f);
  }
  if (o.verify) {
    f.verifyAll();
    printf("  verified: all %zu sections' checksums match\n", f.sectionCount());
  }
  return 0;
}

kj::MainFunc infoMain(cli::Context& cli) {
  auto opts = kj::heap<InfoOptions>();
  InfoOptions& o = *opts;
  auto main = kj::MainBuilder(cli, cli::kVersion, kAbout)
      .addOption({"verify"}, [&o]() -> kj::MainBuilder::Validity {
        o.verify = true;
        return true;
      }, "read every byte and check every section checksum (exit 1 on damage)")
      .addOption({"plan"}, [&o]() -> kj::MainBuilder::Validity {
        o.plan = true;
        return true;
      }, "also print the restore plan mig-restore would execute")
      .addOption({"json"}, [&o]() -> kj::MainBuilder::Validity {
        o.json = true;
        return true;
      }, "print the header and sections as one line of JSON (docs/json.md); not with --plan")
      .expectArg("FILE", [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
        o.path = kj::str(v);
        return true;
      })
      .callAfterParsing([&o, &cli]() -> kj::MainBuilder::Validity {
        if (o.json && o.plan) return "--plan has no JSON form: use one or the other";
        cli.status = imageInfo(o);
        return true;
      })
      .build();
  return cli::owning(kj::mv(opts), kj::mv(main));
}

struct MergeOptions {
  kj::String path;
  kj::Maybe<kj::String> out;
};

// `migctl image merge IMAGE -o FILE`: the whole image of an incremental image's chain.
kj::MainFunc mergeMain(cli::Context& cli) {
  auto opts = kj::heap<MergeOptions>();
  MergeOptions& o = *opts;
  auto main = kj::MainBuilder(cli, cli::kVersion,
                              "Writes to FILE one whole image made from IMAGE (an image of a chain that "
                              "`migctl checkpoint --every` keeps, or the chain's directory: its newest image) "
                              "and the images before it in its chain. FILE can be restarted and kept without "
                              "the chain.")
      .addOptionWithArg({'o', "output"}, [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
        o.out = kj::str(v);
        return true;
      }, "FILE", "where to write the whole image (required)")
      .expectArg("IMAGE", [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
        o.path = kj::str(v);
        return true;
      })
      .callAfterParsing([&o, &cli]() -> kj::MainBuilder::Validity {
        KJ_IF_MAYBE(out, o.out) {
          kj::String image = kj::str(o.path);
          struct stat st {};
          if (stat(o.path.cStr(), &st) == 0 && S_ISDIR(st.st_mode)) {
            KJ_IF_MAYBE(n, image::newestInChain(o.path)) { image = kj::mv(*n); }
            else { image::fail(kj::str(o.path, " is a directory without images (ckpt-NNNN.mig)")); }
          }
          image::AtomicFile file(*out);
          size_t links = image::mergeChain(image, file.sink());
          file.commit();
          struct stat done {};
          stat(out->cStr(), &done);
          printf("merged %s and the %zu image%s before it into %s: %.1f MiB\n", image.cStr(), links - 1,
                 links == 2 ? "" : "s", out->cStr(), static_cast<double>(done.st_size) / (1 << 20));
          cli.status = 0;
          return true;
        }
        return "no output file given (-o FILE)";
      })
      .build();
  return cli::owning(kj::mv(opts), kj::mv(main));
}

}  // namespace

kj::MainFunc imageMain(cli::Context& cli) {
  return kj::MainBuilder(cli, cli::kVersion, "What is in a checkpoint image.")
      .addSubCommand("info", [&cli]() { return cli::acceptDashH(infoMain(cli)); },
                     "a checkpoint image's header and sections, whether this host can restore it")
      .addSubCommand("merge", [&cli]() { return cli::acceptDashH(mergeMain(cli)); },
                     "one whole image from an image of a chain (checkpoint --every) and those before it")
      .build();
}

}  // namespace mig::migctl
