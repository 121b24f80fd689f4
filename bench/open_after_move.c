/* Benchmark subject: the cost of opening a system file (a shared library) after a
   migration, when mig checks that home's copy is the same file and opens the local one
   (rsc/open_rule.h, shim/forward/same_file.h), beside a plain local open measured in
   the same run before the move, and an open that goes home (a file in DATA_DIR).
   Lists up to COUNT regular files of DIR, times open+close of each (before the move:
   "local"), prints "READY <pid>" on stderr and waits until DATA_DIR/go exists; then
   times open+close of each file twice ("first": the identity hashed at home and here;
   "cached": both hashes cached) and COUNT opens of DATA_DIR/go ("home": the open goes
   home). Prints "RESULT <local ns> <first ns> <cached ns> <home ns> <files> <MiB>" on
   stderr, ns per open, and exits.
   usage: open_after_move DIR COUNT DATA_DIR */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double openAll(char** paths, int n) {
  double start = now();
  for (int i = 0; i < n; i++) {
    int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      perror(paths[i]);
      exit(1);
    }
    close(fd);
  }
  return (now() - start) * 1e9 / n;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: open_after_move DIR COUNT DATA_DIR\n");
    return 2;
  }
  int want = atoi(argv[2]), n = 0;
  char** paths = calloc(want, sizeof(char*));
  double bytes = 0;
  DIR* d = opendir(argv[1]);
  if (d == NULL || paths == NULL) {
    perror(argv[1]);
    return 1;
  }
  struct dirent* e;
  while (n < want && (e = readdir(d)) != NULL) {
    if (strstr(e->d_name, ".so") == NULL) continue;
    char* p = malloc(strlen(argv[1]) + strlen(e->d_name) + 2);
    sprintf(p, "%s/%s", argv[1], e->d_name);
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (8 << 20)) {
      free(p);
      continue;
    }
    bytes += st.st_size;
    paths[n++] = p;
  }
  closedir(d);
  if (n == 0) {
    fprintf(stderr, "no .so files in %s\n", argv[1]);
    return 1;
  }
  char go[4096];
  snprintf(go, sizeof(go), "%s/go", argv[3]);
  double local = openAll(paths, n);
  fprintf(stderr, "READY %d\n", (int)getpid());
  struct stat st;
  while (stat(go, &st) != 0) usleep(10000);
  double first = openAll(paths, n);
  double cached = openAll(paths, n);
  double start = now();
  for (int i = 0; i < n; i++) {
    int fd = open(go, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      perror(go);
      return 1;
    }
    close(fd);
  }
  double home = (now() - start) * 1e9 / n;
  fprintf(stderr, "RESULT %.0f %.0f %.0f %.0f %d %.1f\n", local, first, cached, home, n, bytes / 1048576);
  return 0;
}
