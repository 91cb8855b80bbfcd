// Command hostpath-provisioner is the test cluster's dynamic PV provisioner.
//
// It is a small main on top of sigs.k8s.io/sig-storage-lib-external-provisioner
// (the maintained library; its examples/ are not part of the published module, so
// tools/testcluster.py builds this file against the library instead). For every PVC
// of a StorageClass whose provisioner is --provisioner-name it creates a hostPath PV
// bound to the claim and pinned (nodeAffinity) to the node the scheduler selected
// (WaitForFirstConsumer). Nodes are KWOK fakes, so the directory is made under
// --base-dir on this machine and removed again when the PV is released (Delete).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

type hostPathProvisioner struct {
	baseDir string
}

func (p *hostPathProvisioner) Provision(ctx context.Context, opts controller.ProvisionOptions) (*v1.PersistentVolume, controller.ProvisioningState, error) {
	if opts.SelectedNodeName == "" && opts.StorageClass.VolumeBindingMode != nil &&
		*opts.StorageClass.VolumeBindingMode == "WaitForFirstConsumer" {
		return nil, controller.ProvisioningFinished, fmt.Errorf("no selected node for WaitForFirstConsumer claim")
	}
	dir := filepath.Join(p.baseDir, opts.PVName)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	reclaim := v1.PersistentVolumeReclaimDelete
	if opts.StorageClass.ReclaimPolicy != nil {
		reclaim = *opts.StorageClass.ReclaimPolicy
	}
	hostPathType := v1.HostPathDirectoryOrCreate
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name: opts.PVName,
			Annotations: map[string]string{
				"testcluster.local/hostpath-dir": dir,
			},
		},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   opts.PVC.Spec.AccessModes,
			MountOptions:                  opts.StorageClass.MountOptions,
			VolumeMode:                    opts.PVC.Spec.VolumeMode,
			Capacity: v1.ResourceList{
				v1.ResourceStorage: opts.PVC.Spec.Resources.Requests[v1.ResourceStorage],
			},
			PersistentVolumeSource: v1.PersistentVolumeSource{
				HostPath: &v1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
		},
	}
	if opts.SelectedNodeName != "" {
		pv.Spec.NodeAffinity = &v1.VolumeNodeAffinity{
			Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{
					Key:      "kubernetes.io/hostname",
					Operator: v1.NodeSelectorOpIn,
					Values:   []string{opts.SelectedNodeName},
				}},
			}}},
		}
	}
	return pv, controller.ProvisioningFinished, nil
}

func (p *hostPathProvisioner) Delete(ctx context.Context, pv *v1.PersistentVolume) error {
	if pv.Spec.HostPath == nil {
		return &controller.IgnoredError{Reason: "not a hostPath volume"}
	}
	dir := filepath.Clean(pv.Spec.HostPath.Path)
	// Only ever remove directories this provisioner made.
	if filepath.Dir(dir) != filepath.Clean(p.baseDir) {
		return &controller.IgnoredError{Reason: "path outside base dir"}
	}
	return os.RemoveAll(dir)
}

func main() {
	klog.InitFlags(nil)
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file")
	name := flag.String("provisioner-name", "testcluster.local/hostpath", "StorageClass provisioner name to serve")
	baseDir := flag.String("base-dir", "/tmp/testcluster-pv", "directory holding the volumes")
	flag.Parse()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		klog.Fatalf("client: %v", err)
	}
	if err := os.MkdirAll(*baseDir, 0o777); err != nil {
		klog.Fatalf("base dir: %v", err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	pc := controller.NewProvisionController(ctx, client, *name,
		&hostPathProvisioner{baseDir: *baseDir},
		controller.LeaderElection(false))
	klog.Infof("serving provisioner %q, volumes under %s", *name, *baseDir)
	pc.Run(ctx)
}
