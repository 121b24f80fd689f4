/* Baseline for checkpoint-to-file: write N MiB from memory to FILE with write()
   in 4 MiB pieces, then fsync, as the image writer does. Prints seconds. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  size_t mib = strtoul(argv[1], NULL, 10);
  size_t chunk = 4u << 20;
  unsigned char* buf = malloc(chunk);
  memset(buf, 0x5a, chunk);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return 1;
  for (size_t done = 0; done < (mib << 20); done += chunk) {
    buf[0] = (unsigned char)done;
    if (write(fd, buf, chunk) != (ssize_t)chunk) return 1;
  }
  fsync(fd);
  close(fd);
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%.3f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
  return 0;
}
