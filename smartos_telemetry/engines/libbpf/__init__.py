"""The libbpf engine: the shipped CO-RE BPF programs, loaded through libbpf."""
