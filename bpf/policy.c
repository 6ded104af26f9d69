//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Ingress policy enforcement for Stampede's simulated node agents.
//
// One instance of this tc (sched_cls) program serves every local endpoint of
// one agent. For an IPv4 packet it:
//   1. looks the destination address up in `endpoints` (local endpoint IP ->
//      endpoint id); a packet to a non-local address is passed untouched;
//   2. looks the source address up in the LPM trie `ipcache` (prefix ->
//      security identity); a miss means the reserved identity "world" (2);
//   3. looks (endpoint id, identity, destination port, protocol) up in the
//      agent's single `policy` hash, then every combination of the
//      wildcards identity 0 (any peer), port 0 (any port) and protocol 0
//      (any protocol);
//   4. allows on a hit (TC_ACT_OK) and drops otherwise (TC_ACT_SHOT: default
//      deny for local endpoints), counting the verdict in the per-CPU array
//      `verdicts`.
//
// Packets that are not IPv4 or not addressed to a local endpoint are not this
// program's business: it returns TC_ACT_UNSPEC (the next filter or the
// default action decides, which passes them on a veth with only this
// program), so a caller can tell "allowed" from "not enforced here".
//
// Map sizes here are placeholders: the Go loader sets max_entries from the
// datapath Config before the maps are created.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual BSD/GPL";

#define IDENTITY_WORLD 2

// Indexes of the verdicts counter array.
enum verdict_index {
	VERDICT_ALLOW = 0,
	VERDICT_DROP = 1,
	VERDICT_NOT_LOCAL = 2,
	VERDICT_NOT_IPV4 = 3,
	VERDICT_MAX = 4,
};

struct ipcache_key {
	__u32 prefixlen; // bits of addr that count, 0..32
	__u8 addr[4];    // IPv4 address, network byte order
};

struct ipcache_value {
	__u32 identity;
};

struct endpoint_key {
	__u8 addr[4]; // IPv4 address, network byte order
};

struct endpoint_value {
	__u32 id;
};

struct policy_key {
	__u32 endpoint; // endpoint id from the endpoints map
	__u32 identity; // remote (source) security identity; 0 = any
	__u16 dport;    // destination port, host byte order; 0 = any
	__u8 proto;     // IP protocol; 0 = any
	__u8 pad;
};

struct policy_value {
	__u32 flags; // reserved; presence of the key means allow
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
} ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_value);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
} policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VERDICT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

static __always_inline void count(__u32 index)
{
	__u64 *n = bpf_map_lookup_elem(&verdicts, &index);
	if (n)
		*n += 1;
}

static __always_inline int has(struct policy_key *key, __u32 identity, __u16 dport, __u8 proto)
{
	key->identity = identity;
	key->dport = dport;
	key->proto = proto;
	return bpf_map_lookup_elem(&policy, key) != NULL;
}

// allowed tries the exact key, then every combination with identity 0 (any
// identity), port 0 (any port) and protocol 0 (any protocol).
static __always_inline int allowed(struct policy_key *key)
{
	__u32 id = key->identity;
	__u16 port = key->dport;
	__u8 proto = key->proto;

	return has(key, id, port, proto) || has(key, id, 0, proto) ||
	       has(key, id, port, 0) || has(key, id, 0, 0) ||
	       has(key, 0, port, proto) || has(key, 0, 0, proto) ||
	       has(key, 0, port, 0) || has(key, 0, 0, 0);
}

SEC("tc")
int stampede_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP)) {
		count(VERDICT_NOT_IPV4);
		return TC_ACT_UNSPEC;
	}

	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5) {
		count(VERDICT_NOT_IPV4);
		return TC_ACT_UNSPEC;
	}

	struct endpoint_key ek;
	__builtin_memcpy(ek.addr, &ip->daddr, sizeof(ek.addr));
	struct endpoint_value *ep = bpf_map_lookup_elem(&endpoints, &ek);
	if (!ep) {
		count(VERDICT_NOT_LOCAL);
		return TC_ACT_UNSPEC;
	}

	struct ipcache_key ik = {.prefixlen = 32};
	__builtin_memcpy(ik.addr, &ip->saddr, sizeof(ik.addr));
	struct ipcache_value *src = bpf_map_lookup_elem(&ipcache, &ik);

	struct policy_key pk = {
		.endpoint = ep->id,
		.identity = src ? src->identity : IDENTITY_WORLD,
		.dport = 0,
		.proto = ip->protocol,
		.pad = 0,
	};

	// Only the first fragment carries the L4 header; later fragments match
	// port-wildcard entries only.
	int first_fragment = (ip->frag_off & bpf_htons(0x1fff)) == 0;
	void *l4 = (void *)ip + ip->ihl * 4;
	if (first_fragment && ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end) {
			count(VERDICT_DROP);
			return TC_ACT_SHOT;
		}
		pk.dport = bpf_ntohs(tcp->dest);
	} else if (first_fragment && ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > data_end) {
			count(VERDICT_DROP);
			return TC_ACT_SHOT;
		}
		pk.dport = bpf_ntohs(udp->dest);
	}

	if (allowed(&pk)) {
		count(VERDICT_ALLOW);
		return TC_ACT_OK;
	}
	count(VERDICT_DROP);
	return TC_ACT_SHOT;
}
