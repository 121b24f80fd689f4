#!/bin/bash
# lto_after_move.sh DIR: prints "STEP n" until DIR/go exists (the test moves it
# meanwhile), then builds a two-file program with gcc -flto in DIR. gcc's tree is six
# processes deep (gcc -> collect2 -> ld -> lto-wrapper -> gcc -> lto1), every one
# born away from home after a move; each waits for its children, ld's LTO plugin
# runs lto-wrapper while ld holds its output file open, lto1 reads lto-wrapper's
# response file in /tmp (home's).
D=$1
i=0
while [ ! -e "$D/go" ]; do i=$((i+1)); echo "STEP $i"; sleep 0.1; done
cd "$D" || exit 1
printf '#include <stdio.h>\nint f(int x);\nint main(void){printf("lto says %%d\\n", f(41)); return 0;}\n' >a.c
printf 'int f(int x){return x+1;}\n' >b.c
gcc -flto -O2 a.c b.c -o prog
echo "gcc -flto status $?"
