"""The simulated test cluster: a real Kubernetes control plane with KWOK-simulated nodes.

`python -m testcluster up` (run with tools/ on PYTHONPATH; `make cluster-up` does) builds what is
missing and starts the cluster `desktop-sim` (nodes desktop-control-plane, desktop-worker,
desktop-worker2; context kwok-desktop-sim, kubeconfig .testcluster/kubeconfig); `down` stops
everything it started. Subcommands and environment: see cli.

Components (all built from Go modules, pinned in versions.json beside this file):
  etcd, kube-apiserver, kube-controller-manager, kube-scheduler  (real)
  kwok + kwokctl                                                 (fake nodes/pods)
  metrics-server                                                 (real, scrapes kwok)
  helm                                                           (built for later use)
  hostpath provisioner (provisioner/main.go, sig-storage-lib-external-provisioner)

Modules, one job each:
  common     paths, names, pinned versions, logging
  build      the Go binaries, built from the module proxy into the cache (shared with
             tools/kindcluster)
  manifests  the nodes and the StorageClass that `up` applies
  processes  the processes the tool starts and stops itself (provisioner, kwokctl's leftovers)
  cluster    kwokctl create/delete, health, and the settings that reach the cluster
  cli        the command line
"""
