"""A real kind cluster for this project, built offline and cached.

`python -m kindcluster up` (run with tools/ on PYTHONPATH; `make kind-up` does) builds what is
missing, starts a Docker engine of its own when none is reachable, creates the kind cluster
`desktop` (nodes desktop-control-plane, desktop-worker, desktop-worker2, like Docker Desktop's;
context kind-desktop) and loads the offline images the tests need. `down` removes the cluster and
everything the tool started, and checks that nothing is left behind.

Modules, one job each:
  common   paths, pinned versions, logging, subprocess helpers
  engine   the Docker engine: reuse a reachable one or run our own dockerd (runc wrapper when the
           machine lacks CAP_SYS_RESOURCE); stop it and remove what it left
  gobuild  Go binaries (shares tools/testcluster's module and build cache)
  nodeimage  the node image: a published kindest/node pinned by digest, else built offline
           (debootstrap base + kind's base files + locally built Kubernetes images)
  images   small images built locally and tagged with the upstream names the roles use
  cluster  kind create/delete, pod networking, storage, readiness, leftovers check
  netpol   NetworkPolicy enforcement: kube-network-policies built from source (patched for
           kernels without nft_queue) as a DaemonSet
  modelrunner  the real Docker Model Runner image (Go module, uid 999) with llama-server
  llamaserver  llama-server built from the llama.cpp that PyPI's llama-cpp-python sdist vendors
  modelregistry  a local OCI registry for models (CNCF Distribution built from source)
  tinymodel  a tiny random llama GGUF model made in the test (PyPI gguf)
  modelpush  pushes a GGUF file as the model artifact Docker Model Runner pulls
(tests/docker/test_model_runner_docker.py runs the last five with plain `docker run`.)
"""
