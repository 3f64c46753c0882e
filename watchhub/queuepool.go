package watchhub

import "sync"

// Queue arrays come in a few capacities, each a whole Go size class for the
// 112-byte Response (224 B, 896 B, 4 KiB, 14 KiB, 56 KiB), and are shared
// by every stream through one sync.Pool per capacity: a stream's queue
// takes an array when a response arrives and the transport gives it back
// once it has written what it drained (Drain, Release), so an idle stream
// holds none and a steady flow of deliveries allocates none. The pools
// empty themselves over two garbage collections, so arrays left over from
// a burst do not stay. Arrays of any other capacity (a caller's own, or
// one sized for a burst to a stream of many watches) are never pooled.
const (
	queueClass0 = 2
	queueClass1 = 8
	queueClass2 = 32
	queueClass3 = 128
	queueClass4 = 512
)

var queuePools [5]sync.Pool

// queueCap is the capacity of the pooled array that follows capacity c:
// the smallest class above c, or 0 when c is at or above the largest.
func queueCap(c int) int {
	switch {
	case c < queueClass0:
		return queueClass0
	case c < queueClass1:
		return queueClass1
	case c < queueClass2:
		return queueClass2
	case c < queueClass3:
		return queueClass3
	case c < queueClass4:
		return queueClass4
	}
	return 0
}

// queueClass reports whether arrays of capacity c are pooled.
func queueClass(c int) bool { return c > 0 && queueCap(c-1) == c }

// takeQueue returns an empty array of capacity n, from the pool when n is
// a class.
func takeQueue(n int) []Response {
	switch n {
	case queueClass0:
		if a, _ := queuePools[0].Get().(*[queueClass0]Response); a != nil {
			return a[:0]
		}
	case queueClass1:
		if a, _ := queuePools[1].Get().(*[queueClass1]Response); a != nil {
			return a[:0]
		}
	case queueClass2:
		if a, _ := queuePools[2].Get().(*[queueClass2]Response); a != nil {
			return a[:0]
		}
	case queueClass3:
		if a, _ := queuePools[3].Get().(*[queueClass3]Response); a != nil {
			return a[:0]
		}
	case queueClass4:
		if a, _ := queuePools[4].Get().(*[queueClass4]Response); a != nil {
			return a[:0]
		}
	}
	return make([]Response, 0, n)
}

// giveQueue puts q's array into its pool and reports whether it did: only
// an array whose capacity is a class is pooled. q's array must hold no
// response (cleared), and nothing may use it afterwards.
func giveQueue(q []Response) bool {
	switch cap(q) {
	case queueClass0:
		queuePools[0].Put((*[queueClass0]Response)(q[:queueClass0]))
	case queueClass1:
		queuePools[1].Put((*[queueClass1]Response)(q[:queueClass1]))
	case queueClass2:
		queuePools[2].Put((*[queueClass2]Response)(q[:queueClass2]))
	case queueClass3:
		queuePools[3].Put((*[queueClass3]Response)(q[:queueClass3]))
	case queueClass4:
		queuePools[4].Put((*[queueClass4]Response)(q[:queueClass4]))
	default:
		return false
	}
	return true
}
