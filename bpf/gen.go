package bpf

// The include paths name the multiarch directories of Debian's
// linux-libc-dev (asm/types.h); a missing one is ignored by clang.
//go:generate go tool bpf2go -go-package bpf -target bpfel -type ipcache_key -type ipcache_value -type endpoint_key -type endpoint_value -type policy_key -type policy_value Policy policy.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu
