// Added to sigs.k8s.io/kube-network-policies by ai-stack's tools/kindcluster/netpol.py; not
// upstream code.
//
// Upstream sends packets to its NFQUEUE with nftables' native `queue` statement, which needs the
// kernel's nft_queue (CONFIG_NFT_QUEUE). Some kernels, like the one on the machines this project
// is tested on, lack it but have xtables' NFQUEUE target (CONFIG_NETFILTER_XT_TARGET_NFQUEUE)
// and nft_compat, through which iptables-nft uses it. queueExpr returns the native statement when
// the kernel accepts it, and the same verdict through the NFQUEUE target (revision 3) otherwise.

package networkpolicy

import (
	"encoding/binary"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"k8s.io/klog/v2"
)

var (
	nftQueueOnce      sync.Once
	nftQueueSupported bool
)

// nftQueueWorks adds a `queue` rule to a throw-away table once and reports whether the kernel
// took it.
func nftQueueWorks() bool {
	nftQueueOnce.Do(func() {
		nft, err := nftables.New()
		if err != nil {
			nftQueueSupported = true // let the real rules report the error
			return
		}
		table := nft.AddTable(&nftables.Table{Name: "kube-network-policies-queue-probe", Family: nftables.TableFamilyINet})
		chain := nft.AddChain(&nftables.Chain{Name: "probe", Table: table})
		nft.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
			&expr.Queue{Num: 1, Flag: expr.QueueFlagBypass},
		}})
		nftQueueSupported = nft.Flush() == nil
		nft.DelTable(table)
		_ = nft.Flush() // nothing to delete when the probe failed: the transaction was refused
		if nftQueueSupported {
			klog.Info("nftables queue statement supported")
		} else {
			klog.Info("nftables queue statement not supported by this kernel (no nft_queue): using the xtables NFQUEUE target through nft_compat")
		}
	})
	return nftQueueSupported
}

func queueExpr(num uint16, bypass bool) expr.Any {
	if nftQueueWorks() {
		q := &expr.Queue{Num: num}
		if bypass {
			q.Flag = expr.QueueFlagBypass
		}
		return q
	}
	// struct xt_NFQ_info_v3 { __u16 queuenum; __u16 queues_total; __u16 flags; }, padded to
	// XT_ALIGN (8 bytes), in host byte order.
	info := make([]byte, 8)
	binary.NativeEndian.PutUint16(info[0:], num)
	binary.NativeEndian.PutUint16(info[2:], 1)
	if bypass {
		binary.NativeEndian.PutUint16(info[4:], 1) // NFQ_FLAG_BYPASS
	}
	u := xt.Unknown(info)
	return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &u}
}
