/* Empty tp_btf programs: the least any BPF tracer pays per event on each hook
   the libbpf engine's programs use (the baseline of bench/libbpf_probe_cost.py). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sched_switch")
int BPF_PROG(empty_switch) { return 0; }

SEC("tp_btf/block_io_start")
int BPF_PROG(empty_io_start) { return 0; }

SEC("tp_btf/block_rq_complete")
int BPF_PROG(empty_rq_done) { return 0; }

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(empty_sk_state) { return 0; }

SEC("tp_btf/tcp_probe")
int BPF_PROG(empty_tcp_probe) { return 0; }
