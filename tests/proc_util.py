"""What tests and benchmarks read about processes from /proc. Standard
library only, so that it also runs on the GPU machine (which has no
python3-grpcio for tests/cluster_util.py)."""
import os


def cmdline(pid):
    """The process's argv as a list of str ([] if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode("utf-8", "replace").split("\0")[:-1]
    except OSError:
        return []


def children(parent):
    """Pids of the processes whose parent is `parent`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            pids.append(int(entry))
    return pids


def cpu_seconds(pid):
    """CPU time of every thread of `pid`, in ns precision (schedstat), not in
    the 10 ms ticks of /proc/PID/stat, which sample short bursts badly."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just ended
    return total * 1e-9
