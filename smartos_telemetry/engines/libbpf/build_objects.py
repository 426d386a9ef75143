"""Compile the libbpf engine's BPF programs (``d_scripts/linux/*.bpf.c``).

Each program is CO-RE C: compiled once with clang against a ``vmlinux.h``
generated from the build host's kernel BTF (``bpftool btf dump file
/sys/kernel/btf/vmlinux format c``); libbpf relocates its field accesses to
the running kernel's layout at load time.

Output, into the package (``objects/``): ``NAME.bpf.o`` and ``NAME.bpf.json``
(the sha256 of the source it was built from, so the engine refuses an
object that does not match the shipped source).  Builds are cached under
``$SMARTOS_TELEMETRY_CACHE/bpf`` (default ``/var/cache/smartos-telemetry``),
keyed by everything that goes in (sources, headers, the BTF, clang's
version, flags): a reinstall with nothing changed compiles nothing.

Used by setup.py's build step when clang, bpftool, the libbpf headers and
kernel BTF exist, and by hand: ``python build_objects.py [--out DIR]``.
Standard library only (setup.py imports it).
"""

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
SOURCE_DIR = os.path.join(REPO, "d_scripts", "linux")
OBJECT_DIR = os.path.join(HERE, "objects")
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
# -mcpu=v3: atomic fetch-and-add and atomic or (kernel >= 5.12)
CFLAGS = ("-O2", "-g", "-target", "bpf", "-mcpu=v3", "-D__TARGET_ARCH_x86", "-Wall",
          "-Werror")


def cache_dir():
    return os.path.join(os.environ.get("SMARTOS_TELEMETRY_CACHE", "/var/cache/smartos-telemetry"),
                        "bpf")


def missing_tools():
    """What this host lacks to build the objects (empty: it can)."""
    lacks = [tool for tool in ("clang", "bpftool") if not shutil.which(tool)]
    if not os.path.exists(VMLINUX_BTF):
        lacks.append(f"kernel BTF ({VMLINUX_BTF})")
    if not os.path.isfile("/usr/include/bpf/bpf_helpers.h"):
        lacks.append("libbpf headers (<bpf/bpf_helpers.h>)")
    return lacks


def sources(source_dir=SOURCE_DIR):
    return sorted(glob.glob(os.path.join(source_dir, "*.bpf.c")))


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _atomic_write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def vmlinux_header(cache):
    """Path of a vmlinux.h made from this kernel's BTF (cached by the BTF's hash)."""
    key = sha256(_read(VMLINUX_BTF))[:16]
    path = os.path.join(cache, f"vmlinux-{key}", "vmlinux.h")
    if not os.path.isfile(path):
        text = subprocess.run(["bpftool", "btf", "dump", "file", VMLINUX_BTF, "format", "c"],
                              check=True, capture_output=True).stdout
        _atomic_write(path, text)
    return path


def clang_version():
    return subprocess.run(["clang", "--version"], check=True, capture_output=True,
                          text=True).stdout.splitlines()[0]


def build(source_dir=SOURCE_DIR, out_dir=OBJECT_DIR, cache=None, log=print):
    """Compile every ``*.bpf.c`` of ``source_dir`` into ``out_dir``; returns their paths."""
    cache = cache or cache_dir()
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError:
        cache = tempfile.mkdtemp(prefix="st-bpf-")
    header = vmlinux_header(cache)
    headers = b"".join(_read(p) for p in sorted(glob.glob(os.path.join(source_dir, "*.bpf.h"))))
    common = sha256(headers + _read(header) + clang_version().encode() + repr(CFLAGS).encode())
    built = []
    for src in sources(source_dir):
        stem = os.path.basename(src)[:-len(".c")]  # NAME.bpf
        text = _read(src)
        key = sha256(text + common.encode())[:24]
        cached = os.path.join(cache, "objects", f"{stem}-{key}.o")
        if not os.path.isfile(cached):
            log(f"clang: {os.path.basename(src)}")
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            tmp = cached + f".{os.getpid()}.tmp"
            subprocess.run(["clang", *CFLAGS, "-I", os.path.dirname(header), "-I", source_dir,
                            "-c", src, "-o", tmp], check=True)
            os.replace(tmp, cached)
        target = os.path.join(out_dir, f"{stem}.o")
        os.makedirs(out_dir, exist_ok=True)
        shutil.copyfile(cached, target + ".tmp")
        os.replace(target + ".tmp", target)
        _atomic_write(os.path.join(out_dir, f"{stem}.json"),
                      json.dumps({"source": os.path.basename(src),
                                  "source_sha256": sha256(text), "build_key": key}).encode())
        built.append(target)
    return built


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default=SOURCE_DIR)
    parser.add_argument("--out", default=OBJECT_DIR)
    args = parser.parse_args(argv)
    lacks = missing_tools()
    if lacks:
        print("cannot build the BPF objects: no " + ", ".join(lacks), file=sys.stderr)
        return 1
    for path in build(args.src, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
