"""Build the cffi (API mode) binding to libbpf against <bpf/libbpf.h>.

API mode, as for libdtrace: the C compiler checks every declaration below
against the real headers, so a libbpf whose signatures differ fails the
build instead of corrupting memory at run time.  Besides libbpf's own
functions the module carries two small C helpers:

* a libbpf print callback that keeps warnings in a buffer (a verifier log
  can be tens of kilobytes; Python reads it after a failed load) -- a
  ``va_list`` cannot cross into Python;
* ``st_btf_has_member``: whether a struct in the kernel's BTF has a member,
  the user-space side of the programs' ``bpf_core_field_exists`` guards.

The zone maps themselves are read through mmap (``maps.py``).

Used by setup.py (``cffi_modules``) when <bpf/libbpf.h> is found, and by
hand: ``python build_binding.py [--out DIR]``.  Imports without cffi.
"""

import os
import sys

MODULE_NAME = "smartos_telemetry.engines.libbpf._libbpf"
DEFAULT_INCLUDE_DIRS = ("/usr/include", "/usr/local/include")

CDEF = """
struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
struct btf;

struct bpf_object *bpf_object__open_file(const char *path, const void *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj,
                                                     const char *name);
struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
                                             struct bpf_program *prog);

const char *bpf_program__name(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
bool bpf_program__autoload(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
int bpf_link__destroy(struct bpf_link *link);

int bpf_map__fd(const struct bpf_map *map);
int bpf_map__set_max_entries(struct bpf_map *map, uint32_t max_entries);
uint32_t bpf_map__max_entries(const struct bpf_map *map);
uint32_t bpf_map__key_size(const struct bpf_map *map);
uint32_t bpf_map__value_size(const struct bpf_map *map);
int bpf_map__type(const struct bpf_map *map);
const void *bpf_map__initial_value(struct bpf_map *map, size_t *psize);
int bpf_map__set_initial_value(struct bpf_map *map, const void *data, size_t size);

int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_lookup_and_delete_elem(int fd, const void *key, void *value);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);

int libbpf_num_possible_cpus(void);
uint32_t libbpf_major_version(void);
uint32_t libbpf_minor_version(void);
const char *libbpf_version_string(void);

struct btf *btf__load_vmlinux_btf(void);
void btf__free(struct btf *btf);

#define BPF_MAP_TYPE_HASH ...
#define BPF_MAP_TYPE_PERCPU_ARRAY ...

/* helpers written here (see the module docstring) */
void st_log_install(void);
size_t st_log_take(char *out, size_t size);
int st_btf_has_member(const struct btf *btf, const char *struct_name, const char *member);
"""

SOURCE = r"""
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>

/* libbpf's warnings (a failed load's verifier log among them), newest
   last; kept until taken.  Debug messages are left out: libbpf prints
   dozens per object. */
static char st_log[1 << 16];
static size_t st_log_len;

static int st_log_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    int n;

    if (level == LIBBPF_DEBUG || st_log_len >= sizeof(st_log) - 1)
        return 0;
    n = vsnprintf(st_log + st_log_len, sizeof(st_log) - st_log_len, fmt, ap);
    if (n > 0)
        st_log_len += (size_t)n < sizeof(st_log) - st_log_len ?
            (size_t)n : sizeof(st_log) - st_log_len - 1;
    return 0;
}

static void st_log_install(void)
{
    libbpf_set_print(st_log_print);
}

static size_t st_log_take(char *out, size_t size)
{
    size_t n = st_log_len < size ? st_log_len : size;

    memcpy(out, st_log, n);
    st_log_len = 0;
    return n;
}

static int st_btf_has_member(const struct btf *btf, const char *struct_name,
                             const char *member)
{
    int id = btf__find_by_name_kind(btf, struct_name, BTF_KIND_STRUCT);
    const struct btf_type *t;
    const struct btf_member *m;
    int i;

    if (id < 0)
        return 0;
    t = btf__type_by_id(btf, id);
    m = btf_members(t);
    for (i = 0; i < btf_vlen(t); i++, m++)
        if (strcmp(btf__name_by_offset(btf, m->name_off), member) == 0)
            return 1;
    return 0;
}
"""


def include_dirs():
    dirs = []
    env = os.environ.get("LIBBPF_INCLUDE_DIR")
    if env:
        dirs.extend(env.split(os.pathsep))
    dirs.extend(DEFAULT_INCLUDE_DIRS)
    return dirs


def find_header(dirs=None):
    """Path of <bpf/libbpf.h>, or None."""
    for d in dirs or include_dirs():
        path = os.path.join(d, "bpf", "libbpf.h")
        if os.path.isfile(path):
            return path
    return None


def make_ffibuilder(module_name=MODULE_NAME, include=None):
    import cffi

    dirs = list(include or include_dirs())
    header = find_header(dirs)
    if header is None:
        raise RuntimeError(f"no <bpf/libbpf.h> in {', '.join(dirs)}")
    builder = cffi.FFI()
    builder.cdef(CDEF)
    builder.set_source(
        module_name, SOURCE,
        include_dirs=[d for d in dirs if d != "/usr/include"],
        libraries=["bpf"],
        py_limited_api=False,
    )
    return builder


try:
    import cffi  # noqa: F401

    ffibuilder = make_ffibuilder() if find_header() else None
except ImportError:
    ffibuilder = None


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".", help="where the built module goes")
    args = parser.parse_args(argv)
    print(make_ffibuilder().compile(tmpdir=args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
