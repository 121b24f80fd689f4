/* Benchmark subject: holds N MiB of written anonymous memory and waits to be
   checkpointed (prints READY once the memory is touched). */
#include "job_common.h"

#include <unistd.h>

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
  if (hold_written_memory(mib) == NULL) return 1;
  for (;;) pause();
}
