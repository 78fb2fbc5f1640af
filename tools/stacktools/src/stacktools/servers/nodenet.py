"""The node's own namespaces and its one link to this machine.

A node runs its containerd, kubelet and kube-proxy (and so every pod) inside new network, mount
and PID namespaces, the way a kind node runs inside a container, but without a container
engine: ``unshare`` starts ``pause`` as the namespaces' init process and the node's programs
join them with ``nsenter``. That gives:

* isolation: the node's bridge, routes, nftables rules, mounts and ports are its own, so the
  node changes nothing on this machine that other work could trip over, and a second node (a
  parallel test run) can use the same names inside;
* clean ends: when ``pause`` exits, the kernel kills everything in the PID namespace (the
  node's programs, containerd's shims, every container), and with the last process the
  mounts and the network namespace (bridge, veths, rules) are gone too. ``pause`` gets
  SIGKILL when the process that started it dies, so even a killed test run leaves nothing
  running.

The one link is a veth pair: ``stk-node<slot>`` on this machine (``10.250.<slot>.1/30``) and
``eth0`` in the node (``10.250.<slot>.2/30``, the node's InternalIP). This machine routes the
node's pod range (``10.244.<slot>.0/24``) over it, so the API server reaches kubelet and
aggregated APIs and tests read pods' addresses; the node's default route points back over it.
This machine does not forward (``ip_forward`` is left as it is), so nothing from a pod leaves
the machine. Service addresses exist only inside the node (kube-proxy's rules).

A slot (0..7) is a file lock that the ``pause`` process holds for the node's lifetime, so
parallel test runs on one machine get different slots and a slot is free exactly when its
node is gone. The locks are machine-wide (``/run/lock``), as what a slot names is: two runs
with different cache folders (``XDG_CACHE_HOME``) once both took slot 0, and the second
started by removing the first one's cgroups.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from stacktools.servers.process import ServerProcess, pid_running, start_process

SLOTS = 8
CGROUP_ROOT = Path("/sys/fs/cgroup")


class NodeNetworkError(RuntimeError):
    """The node's namespaces or link could not be made; the message says which step failed."""


@dataclass(frozen=True)
class Slot:
    """The addresses and names of one node slot on this machine."""

    index: int

    @property
    def host_address(self) -> str:
        """This machine's end of the link: where the node reaches the API server."""
        return f"10.250.{self.index}.1"

    @property
    def node_address(self) -> str:
        """The node's InternalIP (its end of the link, ``eth0`` inside)."""
        return f"10.250.{self.index}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def host_link(self) -> str:
        return f"stk-node{self.index}"

    @property
    def cgroup_parent(self) -> str:
        """The cgroup (in every v1 hierarchy) under which the kubelet puts the pods."""
        return f"/gateway-api-stack-node{self.index}"

    def lock_path(self) -> Path:
        return lock_dir() / f"node-slot-{self.index}.lock"


def lock_dir() -> Path:
    """Where the slots' locks are: one folder per machine, whatever a run's cache folder."""
    root = Path("/run/lock")
    return (root if root.is_dir() else Path("/var/lock")) / "gateway-api-stack"


def _tool(name: str) -> str:
    """The absolute path of a tool (a process is recognised by its executable's path)."""
    path = shutil.which(name)
    if path is None:
        msg = f"the node needs `{name}` (Debian: util-linux, iproute2) on PATH"
        raise NodeNetworkError(msg)
    return str(Path(path).resolve())


def _require_tools() -> None:
    missing = [tool for tool in ("unshare", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        msg = f"the node needs {', '.join(missing)} (Debian: util-linux, iproute2) on PATH"
        raise NodeNetworkError(msg)
    if os.geteuid() != 0:
        msg = "the node needs root (namespaces, mounts, cgroups, network links)"
        raise NodeNetworkError(msg)


def claim_slot() -> tuple[Slot, int]:
    """The first free slot and the open, locked file descriptor that holds it."""
    for index in range(SLOTS):
        slot = Slot(index)
        path = slot.lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return slot, fd
    msg = f"all {SLOTS} node slots are taken (locks {lock_dir()}/node-slot-*.lock)"
    raise NodeNetworkError(msg)


def _run(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"{what} failed: `{' '.join(argv)}`: {result.stderr.strip() or result.stdout.strip()}"
        raise NodeNetworkError(msg)
    return result.stdout


def cgroup_paths(slot: Slot) -> list[Path]:
    """The slot's cgroup folder in every mounted v1 hierarchy (and the v2 one of hybrid mode)."""
    paths = []
    for hierarchy in sorted(CGROUP_ROOT.iterdir()):
        if hierarchy.is_dir() and not hierarchy.is_symlink() and os.path.ismount(hierarchy):
            paths.append(hierarchy / slot.cgroup_parent.strip("/"))
    return paths


def remove_cgroups(slot: Slot, timeout: float = 30.0) -> None:
    """Remove the slot's cgroup trees (deepest first); they empty once the node's processes
    are gone, which takes the kernel a moment after the namespace's init exits."""
    deadline = time.monotonic() + timeout
    for top in cgroup_paths(slot):
        if not top.is_dir():
            continue
        folders = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for folder in [*folders, top]:
            while True:
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)


def create_cgroups(slot: Slot) -> None:
    """The kubelet's ``cgroupRoot`` must exist in every hierarchy; cpuset needs its CPUs and
    memory nodes copied from the parent before tasks can join."""
    for path in cgroup_paths(slot):
        path.mkdir(exist_ok=True)
        if path.parent.name == "cpuset":
            for name in ("cpuset.cpus", "cpuset.mems"):
                (path / name).write_text((path.parent / name).read_text())


class NodeNamespaces:
    """``pause`` as init of new PID, mount and network namespaces, plus the veth link."""

    def __init__(self, directory: Path, pause: Path, *, detach: bool) -> None:
        self.directory = directory
        self.pause = pause
        self.detach = detach
        self.slot: Slot | None = None
        self.anchor: ServerProcess | None = None
        self.init_pid = 0

    def start(self) -> Slot:
        _require_tools()
        slot, lock_fd = claim_slot()
        try:
            # A node of this slot that died uncleanly may have left its cgroups behind.
            remove_cgroups(slot)
            create_cgroups(slot)
            os.set_inheritable(lock_fd, True)
            self.anchor = start_process(
                "namespaces",
                [
                    _tool("unshare"),
                    "--pid",
                    "--net",
                    "--mount",
                    "--fork",
                    "--mount-proc",
                    "--kill-child",
                    "--propagation=private",
                    str(self.pause),
                ],
                self.directory / "logs" / "namespaces.log",
                detach=self.detach,
                pass_fds=(lock_fd,),
            )
        finally:
            os.close(lock_fd)  # pause holds the lock from here on
        self.slot = slot
        self.init_pid = self._wait_init()
        self._link(slot)
        return slot

    def _wait_init(self, timeout: float = 10.0) -> int:
        assert self.anchor is not None
        children = Path(f"/proc/{self.anchor.pid}/task/{self.anchor.pid}/children")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pids = children.read_text().split()
            except FileNotFoundError:
                pids = []
            if pids:
                return int(pids[0])
            if not self.anchor.alive():
                msg = f"unshare exited at once; log:\n{self.anchor.log_tail()}"
                raise NodeNetworkError(msg)
            time.sleep(0.05)
        msg = "unshare did not start pause in new namespaces within 10 s"
        raise NodeNetworkError(msg)

    def enter(self) -> list[str]:
        """The command prefix that runs a program inside the node's namespaces."""
        return [_tool("nsenter"), f"--target={self.init_pid}", "--pid", "--net", "--mount", "--"]

    def run_inside(self, argv: list[str], what: str) -> str:
        return _run([*self.enter(), *argv], what)

    def _link(self, slot: Slot) -> None:
        host = slot.host_link
        peer = f"stk-peer{slot.index}"
        # A link of a node of this slot that died uncleanly goes with its namespace; one left
        # by a killed start (before its move into the namespace) is removed here.
        subprocess.run(["ip", "link", "del", host], capture_output=True, check=False)
        _run(["ip", "link", "add", host, "type", "veth", "peer", "name", peer], "veth pair")
        _run(["ip", "link", "set", peer, "netns", str(self.init_pid)], "moving the veth peer")
        _run(["ip", "addr", "add", f"{slot.host_address}/30", "dev", host], "host address")
        _run(["ip", "link", "set", host, "up"], "host link up")
        inside = [
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "set", peer, "name", "eth0"],
            ["ip", "addr", "add", f"{slot.node_address}/30", "dev", "eth0"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "route", "add", "default", "via", slot.host_address],
            # Pods reach each other and Services through the node: it forwards.
            ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
        ]
        for argv in inside:
            self.run_inside(argv, "setting up the node's network")
        _run(
            ["ip", "route", "replace", slot.pod_cidr, "via", slot.node_address, "dev", host],
            "route to the pods",
        )

    def alive(self) -> bool:
        return self.init_pid > 0 and pid_running(self.init_pid)

    def stop(self, timeout: float = 20.0) -> None:
        """End every process of the node (SIGTERM to pause: the kernel kills the rest)."""
        if self.init_pid and pid_running(self.init_pid):
            os.kill(self.init_pid, 15)
        if self.anchor is not None:
            self.anchor.stop(timeout)
        if self.slot is not None:
            remove_cgroups(self.slot)
