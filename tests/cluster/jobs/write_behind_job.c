/* write_behind_job: the job of write_behind.sh. Writes to files at home go behind after
 * a move (docs/design.md "Writes to home files go behind"); this job makes every kind
 * of write whose result it must still see right. It prints "STEP 1".."STEP 3", then
 * waits for the file GO (the scenario moves it meanwhile), then:
 *
 *   records DIR GO N: in DIR, appends N numbered 32-byte records to before.dat (open
 *     since before the move, O_APPEND) and to records.dat (opened after the move) with
 *     write(), rewrites every 7th record of records.dat with pwrite() ("REC"), goes
 *     back with lseek() and rewrites record 5, finds its size with lseek(SEEK_END),
 *     reads the whole file back (read after lseek 0) and compares it with what it
 *     meant to write, fsyncs and closes both; prints what it found and "done". The
 *     files are compared with an undisturbed run's by the scenario.
 *   full DIR GO: writes 1000-byte records 1, 2, ... to DIR/fill.dat, each followed by a
 *     pwrite() of the count at offset 0 ("count 00000042\n", 16 bytes), until a call
 *     fails (DIR is a small tmpfs: ENOSPC); then fsync and close. Prints where it was
 *     told ("told at write K: ...", or fsync, or close) and "done". What landed is the
 *     scenario's to check: the count in the header names the records that are whole,
 *     and nothing written after the failing record is there (a pwrite of the header
 *     would fit where a record no longer does).
 * usage: write_behind_job records DIR GO N | write_behind_job full DIR GO */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { kRecord = 32, kFullRecord = 1000, kHeader = 16, kMaxFull = 4000 };

static void wait_for(const char *go)
{
  while (access(go, F_OK) != 0) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

static int open_in(const char *dir, const char *name, int flags)
{
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  int fd = open(path, flags, 0644);
  if (fd < 0) {
    printf("cannot open %s: %s\n", path, strerror(errno));
    exit(1);
  }
  return fd;
}

static void record(char *out, const char *tag, int n)
{
  char tmp[kRecord + 1];
  snprintf(tmp, sizeof(tmp), "%-6.6s %05d %-18s\n", tag, n % 100000, "write-behind");
  memcpy(out, tmp, kRecord);
}

/* A call's result, checked: any surprise is printed and ends the job. */
static void want(long got, long expected, const char *what, int n)
{
  if (got == expected) return;
  printf("%s (record %d) returned %ld (want %ld): %s\n", what, n, got, expected, got < 0 ? strerror(errno) : "");
  exit(1);
}

static int records(const char *dir, const char *go, int n)
{
  int before = open_in(dir, "before.dat", O_WRONLY | O_CREAT | O_APPEND | O_TRUNC);
  char rec[kRecord];
  record(rec, "before", 0);
  want(write(before, rec, kRecord), kRecord, "write before.dat", 0);
  printf("STEP 1\nSTEP 2\nSTEP 3\n");
  fflush(stdout);
  wait_for(go);

  int fd = open_in(dir, "records.dat", O_RDWR | O_CREAT | O_TRUNC);
  char *expected = calloc((size_t)n, kRecord);
  for (int i = 1; i <= n; i++) {
    record(rec, "before", i);
    want(write(before, rec, kRecord), kRecord, "write before.dat", i);
    record(expected + (size_t)(i - 1) * kRecord, "rec", i);
    want(write(fd, expected + (size_t)(i - 1) * kRecord, kRecord), kRecord, "write", i);
    if (i % 7 == 0) {  /* rewritten in place, behind the offset */
      int j = i - 3;
      record(expected + (size_t)(j - 1) * kRecord, "REC", j);
      want(pwrite(fd, expected + (size_t)(j - 1) * kRecord, kRecord, (off_t)(j - 1) * kRecord), kRecord, "pwrite", j);
    }
  }
  want(lseek(fd, 4 * kRecord, SEEK_SET), 4 * kRecord, "lseek to record 5", 5);
  record(expected + 4 * kRecord, "again", 5);
  want(write(fd, expected + 4 * kRecord, kRecord), kRecord, "rewrite", 5);
  want(lseek(fd, 0, SEEK_CUR), 5 * kRecord, "lseek SEEK_CUR after the rewrite", 5);
  want(lseek(fd, 0, SEEK_END), (long)n * kRecord, "lseek SEEK_END", n);
  want(lseek(fd, 0, SEEK_SET), 0, "lseek to 0", 0);
  char *got = calloc((size_t)n, kRecord);
  want(read(fd, got, (size_t)n * kRecord), (long)n * kRecord, "read back", n);
  printf("read back: %s\n", memcmp(got, expected, (size_t)n * kRecord) == 0 ? "exact" : "DIFFERENT");
  want(fsync(fd), 0, "fsync records.dat", n);
  want(close(fd), 0, "close records.dat", n);
  want(fsync(before), 0, "fsync before.dat", n);
  want(close(before), 0, "close before.dat", n);
  printf("done\n");
  return 0;
}

static int full(const char *dir, const char *go)
{
  printf("STEP 1\nSTEP 2\nSTEP 3\n");
  fflush(stdout);
  wait_for(go);
  int fd = open_in(dir, "fill.dat", O_RDWR | O_CREAT | O_TRUNC);
  char header[kHeader + 1], rec[kFullRecord];
  snprintf(header, sizeof(header), "count %08d\n", 0);
  want(write(fd, header, kHeader), kHeader, "write the header", 0);
  const char *where = NULL;
  int at = 0, error = 0;
  for (int i = 1; i <= kMaxFull && where == NULL; i++) {
    memset(rec, 'a' + i % 26, sizeof(rec));
    snprintf(rec, sizeof(rec), "record %05d ", i);
    rec[sizeof(rec) - 1] = '\n';
    ssize_t w = write(fd, rec, sizeof(rec));
    if (w != (ssize_t)sizeof(rec)) {
      where = "write", at = i, error = w < 0 ? errno : 0;
      break;
    }
    snprintf(header, sizeof(header), "count %08d\n", i);
    if (pwrite(fd, header, kHeader, 0) != kHeader) where = "pwrite", at = i, error = errno;
  }
  if (fsync(fd) != 0 && where == NULL) where = "fsync", error = errno;
  if (close(fd) != 0 && where == NULL) where = "close", error = errno;
  if (where == NULL) printf("told nothing: every record landed\n");
  else printf("told at %s %d: %s\n", where, at, error != 0 ? strerror(error) : "a short write");
  printf("done\n");
  return 0;
}

int main(int argc, char **argv)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 5 && strcmp(argv[1], "records") == 0) return records(argv[2], argv[3], atoi(argv[4]));
  if (argc == 4 && strcmp(argv[1], "full") == 0) return full(argv[2], argv[3]);
  fprintf(stderr, "usage: write_behind_job records DIR GO N | write_behind_job full DIR GO\n");
  return 2;
}
