"""The operating-system isolation of the sandbox worker: resource limits, Landlock, seccomp.

Applied once, inside the worker, after it has loaded its libraries and before it reads any
proposed code. Each layer comes from a maintained piece:

- `resource` (the standard library): RLIMIT_AS (memory), RLIMIT_CPU (CPU seconds for the
  worker's life), RLIMIT_FSIZE = 0 (no file grows), RLIMIT_CORE = 0.
- Landlock (the Linux security module; Python binding `landlock`): every file-system access
  right is handled, and only reading is granted, beneath the Python installation, the
  system libraries and the packages the code needs. No path is writable, and the parent's
  `/proc/<pid>/environ` and memory are out of reach (Landlock's ptrace scoping).
- seccomp (libseccomp through `pyseccomp`): no sockets but local pairs, no exec, no new
  processes or threads, no signals to other processes, no ptrace, mounts, namespaces,
  io_uring, bpf, key rings, or ownership/permission changes.

`unavailable()` tells, in the parent, why the sandbox cannot be set up on this system.
"""

from __future__ import annotations

import errno
import os
import platform
import sys
from collections.abc import Iterable
from typing import Any

# Syscalls refused with EPERM (default: allowed; files are Landlock's job).
_DENIED = (
    # network (socketpair stays: asyncio's self-pipe; it reaches nothing outside)
    "socket", "connect", "bind", "listen", "accept", "accept4",
    # programs and processes
    "execve", "execveat", "fork", "vfork", "clone",
    # other processes' memory and signals
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_open",
    "pidfd_send_signal", "pidfd_getfd", "tkill",
    # the system
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "init_module",
    "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon",
    "swapoff", "acct", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key",
    "open_by_handle_at", "name_to_handle_at", "personality", "sethostname", "setdomainname",
    "settimeofday", "clock_settime", "adjtimex", "iopl", "ioperm", "quotactl",
    "fanotify_init", "setrlimit",
    # ownership, permissions, attributes, times of existing files (Landlock leaves these)
    "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat", "setxattr",
    "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr", "utime",
    "utimes", "utimensat", "futimesat", "truncate", "ftruncate", "fallocate",
)
# Signals may go to the worker itself only (arg 0 is the target process).
_SELF_ONLY = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")

_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime",
                "/dev/null", "/dev/zero", "/dev/urandom", "/proc/self", "/proc/cpuinfo",
                "/proc/meminfo", "/sys/devices/system/cpu")


def unavailable() -> str | None:
    """Why the sandbox cannot be set up here (None when it can): the OS, Landlock, seccomp."""
    if sys.platform != "linux":
        return f"the sandbox needs Linux (Landlock and seccomp); this is {platform.system() or sys.platform}"
    try:
        import landlock
    except ImportError:
        return "the Landlock binding is not installed (pip install landlock)"
    try:
        abi = landlock.landlock_abi_version()
    except Exception as exc:  # the syscall is missing or disabled
        return f"Landlock is not available in this kernel ({exc}); it needs Linux 5.13+ with Landlock enabled"
    if abi < 1:
        return "Landlock is not enabled in this kernel"
    try:
        import pyseccomp

        pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    except Exception as exc:  # the binding or libseccomp.so.2 is missing
        return (f"seccomp cannot be used: {exc} (install the system's libseccomp2 and "
                f"pip install pyseccomp)")
    return None


def apply(memory_bytes: int, cpu_seconds: int, read_paths: Iterable[str],
          list_paths: Iterable[str]) -> None:  # noqa: D103
    """Lock the current process down; raises OSError/RuntimeError if a layer fails."""
    flt = _seccomp_filter()  # built first: loading libseccomp may need files Landlock denies
    _limits(memory_bytes, cpu_seconds)
    _landlock(read_paths, list_paths)
    flt.load()


def address_space_in_use() -> int:
    """The process's current virtual memory size in bytes (VmSize)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limits(memory_bytes: int, cpu_seconds: int) -> None:
    import resource  # POSIX only: imported here so that `unavailable()` works everywhere
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past FSIZE fails, never kills
    base = address_space_in_use()
    resource.setrlimit(resource.RLIMIT_AS, (base + memory_bytes, base + memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _landlock(read_paths: Iterable[str], list_paths: Iterable[str]) -> None:
    from landlock import FSAccess, Ruleset

    readable = FSAccess.READ_FILE | FSAccess.READ_DIR
    ruleset = Ruleset()  # handles every access right this kernel knows: none granted by default
    for path in dict.fromkeys([*_SYSTEM_READ, *read_paths]):
        _allow(ruleset, path, readable)
    for path in dict.fromkeys(list_paths):
        _allow(ruleset, path, FSAccess.READ_DIR)
    ruleset.apply()


def _allow(ruleset: object, path: str, rights: int) -> None:
    from landlock import FSAccess

    if not path or not os.path.exists(path):
        return
    if not os.path.isdir(path):
        rights &= FSAccess.all_file()  # a file takes file rights only
        if not rights:
            return
    try:
        ruleset.allow(path, rules=rights)  # type: ignore[attr-defined]
    except OSError:
        pass  # a path we may not open is simply not granted


def _seccomp_filter() -> Any:  # a pyseccomp.SyscallFilter (pyseccomp is untyped)
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ALLOW)
    for name in _DENIED:
        _rule(flt, sc.ERRNO(errno.EPERM), name)
    _rule(flt, sc.ERRNO(errno.ENOSYS), "clone3")  # libc then falls back to clone: refused
    me = os.getpid()
    for name in _SELF_ONLY:
        _rule(flt, sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.NE, me))
    _rule(flt, sc.ERRNO(errno.EPERM), "prlimit64", sc.Arg(2, sc.NE, 0))  # reading stays allowed
    return flt


def _rule(flt: object, action: int, name: str, *args: object) -> None:
    try:
        flt.add_rule(action, name, *args)  # type: ignore[attr-defined]
    except (ValueError, OSError):
        pass  # a syscall this architecture does not have
