#!/bin/sh
# Compiles every public header alone three ways — C11 (gcc), C++20 (g++) and
# BPF (clang -target bpf) — with warnings as errors: the one-definition rule
# of include/sluice/ only holds while all three accept every header.
# usage: check_headers.sh INCLUDE_DIR
set -eu
inc=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0
for h in "$inc"/sluice/*.h; do
	name=$(basename "$h")
	printf '#include <sluice/%s>\nint sluice_header_check_%s;\n' "$name" "$(echo "$name" | tr -c 'a-z0-9\n' _)" > "$tmp/t.c"
	for way in c11 cxx20 bpf; do
		case $way in
		c11) set -- gcc -std=c11 -pedantic -x c ;;
		cxx20) set -- g++ -std=c++20 -x c++ ;;
		bpf) set -- clang -target bpf -O2 -std=c11 -x c ;;
		esac
		if "$@" -Wall -Wextra -Werror -I"$inc" -c "$tmp/t.c" -o "$tmp/t.o" 2> "$tmp/err"; then
			n=$((n + 1))
		else
			echo "FAIL $name as $way:"; cat "$tmp/err"; fail=1
		fi
	done
done
echo "$n header compilations passed"
exit $fail
