# Medians of the freeze's breakdown lines ($MIG_HOP_TIMES, shadow/hop_times.h) that
# bench/precopy_bench.sh and bench/lazy_restart_bench.sh gathered: input lines
# "LABEL<TAB>WHO at T us: PHASE MS ms, ..., total MS ms"; output, per LABEL and WHO,
# one line per phase (in the order seen) with its median over the runs, min and max.
function median(s,   a, n, i, j, t) {
  n = split(s, a, " ")
  for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
  lo = a[1]; hi = a[n]
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
BEGIN { FS = "\t" }
{
  label = $1; line = $2
  who = line; sub(/ at [0-9]+ us:.*/, "", who)
  key = label " / " who
  if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
  body = line; sub(/^.* us: /, "", body)
  n = split(body, parts, ", ")
  for (i = 1; i <= n; i++) {
    p = parts[i]; sub(/ ms$/, "", p)
    ms = p; sub(/.* /, "", ms); name = p; sub(/ [^ ]*$/, "", name)
    k2 = key SUBSEP name
    if (!(k2 in vals)) { order[key, ++np[key]] = name; vals[k2] = "" }
    vals[k2] = vals[k2] " " ms
  }
  runs[key]++
}
END {
  for (k = 1; k <= nk; k++) {
    key = keys[k]
    printf "  %s (%d runs): median ms (min-max)\n", key, runs[key]
    for (i = 1; i <= np[key]; i++) {
      name = order[key, i]; m = median(vals[key SUBSEP name])
      printf "    %-14s %9.3f  (%.3f-%.3f)\n", name, m, lo, hi
    }
  }
}
