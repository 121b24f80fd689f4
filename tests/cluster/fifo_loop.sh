#!/bin/bash
# fifo_loop.sh: a bash loop that opens a home FIFO each round moves and runs on (issue
# 13/15). The loop opens the FIFO read-write (`exec 5<>`), prints a line and closes it
# again, with no pause, so a move may catch fd 5 open: the job lands with a readiness
# stand-in for it and closes that stand-in at once, maybe before the deputy's watch of
# the fd is answered, or after its close ran at home. It moves a -> b and b -> c at a
# printed line; each `migctl migrate` exits 0 (before: a stand-in closed before its
# watch settled was waited for, and migctl said "home fds were not all watched within
# 20 s", exit 3), and the loop's output is what an undisturbed run prints, its stderr
# empty, status 0. Then a loop that writes each line into a home FIFO open read-write
# and reads it back moves a -> b -> c -> b -> c and reads back every line it wrote.
#
# usage: fifo_loop.sh OPTIONS (cluster_lib.sh); meson runs it as test
# 'migration-fifo-loop' (suite cluster) with every path filled in.
source "$(dirname "$0")/lib/cluster_lib.sh"
cluster_args "$@"
cluster_require SHADOWD DEPUTY MIGCTL LIBMIG
cluster_up a b c

LOOP='cd "$1" && i=0
while (( i < 3 )) || [[ ! -e STOP ]]; do
  exec 5<>fifo; echo "STEP $i"; exec 5>&-; i=$((i + 1))
done
echo "done $i"'
mkdir -p "$(jfile loop data)" && mkfifo "$(jfile loop data)/fifo"
start_job loop mig /bin/bash -c "$LOOP" loop @DIR@ || cluster_end
if wait_step loop 3 20; then
  for hop in "a b" "b c"; do
    # At a STEP line 100 on: the move catches the loop between its calls on the FIFO.
    hop loop $hop $(( $(last_step loop) + 100 )) || break
    wait_step loop $(( $(last_step loop) + 100 )) 30 || { fail "loop: it does not go on after its move ($hop)"; break; }
  done
fi
touch "$(jfile loop data)/STOP"
want=""
if wait_job loop 30; then
  n=$(tail -n 1 "$(jfile loop out)" | awk '$1 == "done" { print $2 }')
  want=$( (( n > 0 )) && { for ((i = 0; i < n; i++)); do echo "STEP $i"; done; echo "done $n"; })
fi
if [[ $STATUS == 0 && -n $want ]] && [[ $(cat "$(jfile loop out)") == "$want" && ! -s $(jfile loop err) ]]; then
  ok "loop: its $n rounds (a -> b -> c) printed what an undisturbed run prints, nothing on stderr, status 0"
else
  fail "loop: status $STATUS, output (or its empty stderr) not the undisturbed run's"
  diff <(echo "$want") "$(jfile loop out)" | head -n 8 | sed 's/^/#     /'; detail "$(jfile loop err)" "its stderr"
fi
kill_job loop

# A loop that writes a line into a home FIFO it holds open read-write and reads it
# back: bash's `echo $i >&5` is dup3(5, 1), a write to 1 (pipelined: it returns at
# once and runs at home in order), dup3(10, 1) back to its stdout. Moved a -> b -> c
# -> b -> c at printed lines, it runs on to the end, every line read back the one it
# wrote (before: the dup3 back ran at home before the pipelined write, which went to
# its stdout file, and the read waited for ever on the empty FIFO: 3 of 4 runs hung
# after their first move).
ECHO='cd "$1" && i=0
exec 5<>fifo
while (( i < 3 )) || [[ ! -e ../STOP ]]; do
  echo "$i" >&5; read x <&5; echo "STEP $i"; [[ $x == "$i" ]] || echo "round $i read back $x" >&2; i=$((i + 1))
done
echo "done $i"'
mkdir -p "$(jfile echo data)" && mkfifo "$(jfile echo data)/fifo"
start_job echo mig /bin/bash -c "$ECHO" echo @DIR@ || cluster_end
if wait_step echo 3 20; then
  for hop in "a b" "b c" "c b" "b c"; do
    hop echo $hop $(( $(last_step echo) + 50 )) || break
    wait_step echo $(( $(last_step echo) + 50 )) 30 || { fail "echo: it does not go on after its move ($hop) at STEP $(last_step echo)"; break; }
  done
fi
loop_output_exact echo "a -> b -> c -> b -> c, each writing and reading back a home FIFO" c
kill_job echo
cluster_end
