// mig-sample-image: writes synthetic images (sample_image.h) for tests of the
// migctl image tools and as the seed corpus of the image fuzzer.
//   mig-sample-image OUT [PAGE_RUNS [THREADS]]
#include "image/byte_io.h"
#include "image/sample_image.h"

#include <kj/exception.h>

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  if (argc < 2 || argc > 4) {
    fprintf(stderr, "usage: mig-sample-image OUT [PAGE_RUNS [THREADS]]\n");
    return 2;
  }
  mig::image::SampleOptions o;
  if (argc > 2) o.pageRuns = static_cast<uint32_t>(atoi(argv[2]));
  if (argc > 3) o.threads = static_cast<uint32_t>(atoi(argv[3]));
  try {
    auto bytes = mig::image::makeSampleImage(o);
    mig::image::AtomicFile out(argv[1]);
    out.sink().write(bytes.begin(), bytes.size());
    out.commit();
  } catch (const kj::Exception& e) {
    fprintf(stderr, "mig-sample-image: %s\n", e.getDescription().cStr());
    return 1;
  }
  return 0;
}
