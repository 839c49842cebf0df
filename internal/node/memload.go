package node

import (
	"math"
	"runtime/debug"
	rtmetrics "runtime/metrics"
)

// The memory signal for capacity (issue 11): a node is hot on memory when
// what it uses beyond its store nears the room the process's memory limit
// leaves beyond the store. The store itself fills by design (it is
// bounded and evicts), so counting it would call every warm node hot;
// what grows without the store's bound is everything else: connections,
// their buffers, bodies in flight, queued work.

// memSample is the Go runtime's view of this process's memory: what the
// soft memory limit is compared against (mapped, minus returned to the OS).
func memSample() (inUse, limit int64) {
	s := []rtmetrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	rtmetrics.Read(s)
	for _, x := range s {
		if x.Value.Kind() != rtmetrics.KindUint64 {
			return 0, 0
		}
	}
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64()), debug.SetMemoryLimit(-1)
}

// memBeyondStore turns a sample into the capacity report's Mem and
// MemLimit: bytes in use beside the store, and the room the limit leaves
// beside the store's bound. Zero limit: unknown (no limit set, the store
// alone could fill it, or several nodes share the process).
func memBeyondStore(inUse, limit, storeBytes, storeMax int64) (mem, room float64) {
	if limit <= 0 || limit == math.MaxInt64 || limit <= storeMax {
		return 0, 0
	}
	return float64(max(inUse-storeBytes, 0)), float64(limit - storeMax)
}

// memLoad is this node's memory signal, or zeros when it cannot tell.
func (n *Node) memLoad() (mem, room float64) {
	if n.cfg.SharesProcess {
		return 0, 0 // the process's memory is every node's
	}
	inUse, limit := memSample()
	return memBeyondStore(inUse, limit, n.store.Bytes(), n.cfg.StoreBytes)
}
