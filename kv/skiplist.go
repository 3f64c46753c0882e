package kv

import (
	"bytes"
	"sync/atomic"
)

// skipMaxLevel bounds the skip list's height: with p = 1/4 it serves 4^16
// keys well.
const skipMaxLevel = 16

// skipNode is one key of a skip list and its versions.
type skipNode struct {
	key  []byte
	vers atomic.Pointer[verList]
	next []atomic.Pointer[skipNode]
}

// skiplist is an ordered set of keys with one writer and concurrent
// readers: a new node is fully built before the links to it are stored, so
// a reader sees either the list without it or with it.
type skiplist struct {
	head skipNode
	rnd  uint64 // writer only
}

func (l *skiplist) init() {
	l.head.next = make([]atomic.Pointer[skipNode], skipMaxLevel)
	l.rnd = 0x9e3779b97f4a7c15
}

// seek returns the first node whose key is >= key (nil when none), and
// fills preds, when not nil, with the last node before key at every level.
func (l *skiplist) seek(key []byte, preds *[skipMaxLevel]*skipNode) *skipNode {
	x := &l.head
	for i := skipMaxLevel - 1; i >= 0; i-- {
		for {
			n := x.next[i].Load()
			if n == nil || bytes.Compare(n.key, key) >= 0 {
				break
			}
			x = n
		}
		if preds != nil {
			preds[i] = x
		}
	}
	return x.next[0].Load()
}

// find returns key's node or nil.
func (l *skiplist) find(key []byte) *skipNode {
	n := l.seek(key, nil)
	if n != nil && bytes.Equal(n.key, key) {
		return n
	}
	return nil
}

// first returns the first node, or nil.
func (l *skiplist) first() *skipNode { return l.head.next[0].Load() }

// insert returns key's node, adding it when missing. key must not be
// modified afterwards. Writer only.
func (l *skiplist) insert(key []byte) *skipNode {
	var preds [skipMaxLevel]*skipNode
	if n := l.seek(key, &preds); n != nil && bytes.Equal(n.key, key) {
		return n
	}
	lvl := 1
	for lvl < skipMaxLevel {
		// xorshift64
		l.rnd ^= l.rnd << 13
		l.rnd ^= l.rnd >> 7
		l.rnd ^= l.rnd << 17
		if l.rnd&3 != 0 {
			break
		}
		lvl++
	}
	n := &skipNode{key: key, next: make([]atomic.Pointer[skipNode], lvl)}
	for i := 0; i < lvl; i++ {
		n.next[i].Store(preds[i].next[i].Load())
	}
	for i := 0; i < lvl; i++ {
		preds[i].next[i].Store(n)
	}
	return n
}
