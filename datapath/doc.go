// Package datapath holds each agent's datapath state behind one
// interface: an ipcache (IP -> identity), and a policy map per local
// endpoint ((remote identity, port, protocol) -> verdict). The bpf
// implementation keeps them in real BPF maps via cilium/ebpf; mem is the
// unprivileged fallback with the same semantics and counting.
//
// Lifecycle: the caller that opens a Datapath closes it; Close releases
// every map and program.
package datapath
