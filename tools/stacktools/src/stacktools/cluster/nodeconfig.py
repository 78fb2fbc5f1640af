"""The node's configuration files: containerd's config.toml, the CNI network, the kubelet's
KubeletConfiguration and kube-proxy's KubeProxyConfiguration.

Pure functions of paths and addresses, so a test can read what the node runs with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CLUSTER_DOMAIN = "cluster.local"
# The `kube-dns` Service (CoreDNS), inside the control plane's service range 10.96.0.0/16.
CLUSTER_DNS = "10.96.0.10"
CNI_BRIDGE = "cni0"
NETWORK_NAME = "stack-pods"


@dataclass(frozen=True)
class NodeLayout:
    """Where the node keeps its state: everything under one directory."""

    directory: Path

    @property
    def containerd_root(self) -> Path:
        return self.directory / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.directory / "containerd" / "state"

    @property
    def containerd_config(self) -> Path:
        return self.directory / "containerd" / "config.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.directory / "run" / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.directory / "run" / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.directory / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> Path:
        return self.directory / "cni" / "networks"

    @property
    def kubelet_root(self) -> Path:
        return self.directory / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.directory / "kubelet-config.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.directory / "kube-proxy-config.yaml"

    @property
    def resolv_conf(self) -> Path:
        return self.directory / "resolv.conf"

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"


def _toml_string(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def containerd_config(
    layout: NodeLayout,
    *,
    shim: Path,
    runc: Path,
    cni_bin_dir: Path,
    sandbox_image: str,
) -> str:
    """containerd 2.x config (version 3): every path under the node's directory."""
    q = _toml_string
    return f"""# containerd for the node of gateway-api-stack's tests (stacktools.servers.node)
version = 3
root = {q(layout.containerd_root)}
state = {q(layout.containerd_state)}
# Plugins that would write outside the node's directory, or that the node does not use.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = {q(layout.containerd_socket)}

[ttrpc]
  address = {q(layout.containerd_socket.with_suffix(".ttrpc.sock"))}

[debug]
  level = "info"

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      # Built from pause.c (stacktools.builds.pause) and imported: nothing is pulled.
      sandbox = {q(sandbox_image)}

  [plugins.'io.containerd.cri.v1.runtime']
    # Network namespaces under the state directory, not the machine's /var/run/netns.
    netns_mounts_under_state_dir = true
    # These machines withhold CAP_SYS_RESOURCE even from root, so no process may lower its
    # oom_score_adj; the kubelet asks for -998 (sandboxes) and -997 (Guaranteed pods), which
    # runc cannot set. containerd clamps those to its own score instead (the setting meant
    # for rootless nodes): the OOM killer's preferences between pods are all that changes.
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        runtime_path = {q(shim)}
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = {q(runc)}
          Root = {q(layout.runc_root)}
          # The kubelet's cgroup driver is cgroupfs (no systemd on these machines).
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [{q(cni_bin_dir)}]
      conf_dir = {q(layout.cni_conf_dir)}
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
"""


def cni_config(layout: NodeLayout, pod_cidr: str) -> str:
    """The pod network: one bridge in the node, addresses from the node's pod range.

    No masquerading: this machine routes the pod range to the node, so replies find their way
    back without rewriting the source."""
    config = {
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": CNI_BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                # A pod reaching itself through a Service address comes back over its own veth.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cni_data_dir),
                },
            },
            {"type": "portmap", "backend": "nftables", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def kubelet_config(
    layout: NodeLayout,
    *,
    node_address: str,
    cgroup_root: str,
    ca: Path,
    serving_cert: Path,
    serving_key: Path,
) -> str:
    """KubeletConfiguration (JSON, which is YAML)."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # These machines run cgroup v1. Kubernetes >= 1.35 refuses to start a kubelet on
        # cgroup v1 unless failCgroupV1 is false (KEP-5573); this is that setting.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        # The pods' cgroups live under the node's own cgroup, never the machine's top level.
        "cgroupRoot": cgroup_root,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "address": node_address,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [CLUSTER_DNS],
        # The node's own resolv.conf: no search domains or name servers of this machine leak
        # into pods.
        "resolvConf": str(layout.resolv_conf),
        "volumePluginDir": str(layout.kubelet_root / "volume-plugins"),
        "failSwapOn": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "registerNode": True,
        "maxPods": 110,
        # The machine's disk and memory are shared with other work: evict only when nearly
        # out, and never garbage-collect the images (they are imported, not pullable).
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "enforceNodeAllocatable": ["pods"],
        "shutdownGracePeriod": "0s",
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
        "logging": {"format": "text"},
    }
    return json.dumps(config, indent=2) + "\n"


def kube_proxy_config(*, kubeconfig: Path, node_name: str, pod_cidr: str) -> str:
    """KubeProxyConfiguration: the nftables mode (its own table, nothing else touched)."""
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_name,
        "clusterCIDR": pod_cidr,
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        # conntrack sysctls: nf_conntrack_max is machine-wide, so leave all of them alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
    return json.dumps(config, indent=2) + "\n"


def resolv_conf() -> str:
    """The node's resolv.conf: pods with ``dnsPolicy: Default`` (CoreDNS) get no upstream name
    server, so DNS queries never leave the machine; cluster pods use CoreDNS."""
    return "# the node has no upstream DNS (stacktools.servers.node)\noptions ndots:1\n"
