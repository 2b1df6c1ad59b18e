package atrank

import (
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// poisonWord is a value the garbage collector rejects when it finds it in a pointer slot
// (the runtime's clobberdeadPtr: with GODEBUG invalidptr=1, the default, shading it is a
// fatal "found bad pointer in Go heap"). Any stale Go heap address does the same, or worse,
// marks a freed object ("found pointer to free object" at the next sweep).
const poisonWord = uint64(0xdeaddeaddeaddead)

// poisonCallMemory allocates a call buffer of size bytes, fills it with poisonWord and frees it,
// so that the C allocator's next block of that size (on this thread) starts out dirty.
func poisonCallMemory(size int) {
	c := newCall(0, &callSize{strBytes: size})
	for off := 0; off+8 <= c.size; off += 8 {
		*(*uint64)(unsafe.Add(c.base, off)) = poisonWord
	}
	c.free()
}

// TestCallMemoryIsZeroed: a call buffer starts all zero even where the allocator hands back a
// block that was freed dirty. The binding stores C pointers into it through Go pointer types
// ([]*C.char, atrank_behavior), and every such store runs Go's write barrier while a GC is
// marking: the barrier shades the slot's old value as a Go pointer, so leftover bytes there
// that look like a Go heap address crash the GC.
func TestCallMemoryIsZeroed(t *testing.T) {
	runtime.LockOSThread() // the same thread, hence the same allocator cache, for both blocks
	defer runtime.UnlockOSThread()
	for _, size := range []int{24, 640, 4096, 200 << 10} {
		poisonCallMemory(size)
		c := newCall(0, &callSize{strBytes: size})
		dirty := 0
		for _, b := range c.bytes {
			if b != 0 {
				dirty++
			}
		}
		c.free()
		if dirty > 0 {
			t.Errorf("a %d-byte call buffer starts with %d non-zero bytes", size, dirty)
		}
	}
}

// TestMarshalDuringGC: requests marshalled into reused, dirty C memory while the GC runs
// (the crash seen once in ~150 runs of TestScoreErrors under cgocheck2: "found pointer to free
// object", or "found bad pointer in Go heap", from the write barrier of a store in cCall.put).
// Each request's buffer is the block of the same size poisoned just before, so its behavior,
// feature and candidate pointer slots start out holding poisonWord. With malloc'd buffers the
// test binary dies with that fatal error (it cannot be recovered) within the second, every
// time; with zeroed ones it passes. Takes about 1 s.
func TestMarshalDuringGC(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // keeps a GC cycle, and so the write barrier, running most of the time
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	hist := []Behavior{{Item: "i1", Category: "c1", Action: "like", Timestamp: 1, Group: "item",
		Features: []Feature{{Name: "shop", Value: "s1"}}}}
	var hs callSize
	if err := hs.add("", hist, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	n := 0
	for time.Now().Before(deadline) {
		for _, k := range []int{8, 64, 100} {
			cands := make([]string, k)
			for i := range cands {
				cands[i] = "x"
			}
			// marshal's buffer: behavior and feature arrays, k candidate pointers, strings.
			s := hs
			s.candidates, s.strBytes = k, hs.strBytes+2*k
			probe := newCall(0, &s)
			size := probe.size
			probe.free()
			poisonCallMemory(size)
			call, args, _, err := marshal(hist, cands)
			if err != nil {
				t.Fatal(err)
			}
			if int(args.nc) != k {
				t.Fatalf("marshal laid out %d candidates, want %d", args.nc, k)
			}
			call.free()
			n++
		}
	}
	t.Logf("%d requests marshalled during GC", n)
}
