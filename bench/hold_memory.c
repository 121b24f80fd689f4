/* Benchmark subject: holds N MiB of written anonymous memory and waits to be
   checkpointed (prints READY once the memory is touched). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
  size_t len = mib << 20;
  unsigned char* p = malloc(len);
  if (p == NULL) return 1;
  for (size_t i = 0; i < len; i += 4096) p[i] = (unsigned char)(i >> 12) | 1;
  printf("READY\n");
  fflush(stdout);
  for (;;) pause();
}
