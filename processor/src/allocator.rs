//! [`Mimalloc`], the global allocator of the `osprey` binary and the processor benches.
//!
//! The processor builds and frees a JSON tree per event (a few hundred allocations), so the
//! allocator's fast path is a visible share of its instructions. The `mimalloc` crate's
//! allocator calls `mi_malloc_aligned` for every request, whatever its alignment; for the
//! alignment of nearly every Rust allocation (at most 8) that takes extra checks, and for
//! blocks above mimalloc's small size (1 KiB: an object's pairs, a transaction's spans) a
//! slower generic path. Every mimalloc block is at least 8-byte aligned (block sizes are
//! multiples of 8 and pages start 16-byte aligned), so those requests go to `mi_malloc`
//! itself; larger alignments still go through the aligned entry points.

use std::alloc::{GlobalAlloc, Layout};

/// Alignment every block `mi_malloc` returns has (block sizes are multiples of the word
/// size; see the module docs).
const PLAIN_ALIGN: usize = 8;

/// mimalloc, with plain (unaligned) calls whenever the layout allows (see the module docs).
pub struct Mimalloc;

// SAFETY: every method forwards to mimalloc's own entry points with the layout's size, and
// with its alignment unless that is at most `PLAIN_ALIGN`, which every mimalloc block meets;
// `dealloc` and `realloc` receive pointers this allocator returned, which `mi_free` and
// `mi_realloc*` accept whichever entry point allocated them.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI calls; see above.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                libmimalloc_sys::mi_malloc(layout.size()).cast()
            } else {
                libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                libmimalloc_sys::mi_zalloc(layout.size()).cast()
            } else {
                libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract); the
        // new block keeps the alignment as `alloc` does.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                libmimalloc_sys::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn blocks_are_aligned_and_usable() {
        // Every size up to a few KiB (small, medium and the generic path) at each alignment
        // up to 64, fresh and after a realloc: the pointer meets the layout's alignment and
        // the bytes written survive the realloc.
        let allocator = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64] {
            for size in (1..200).chain([255, 256, 1000, 1024, 1025, 4096, 70_000]) {
                let layout = Layout::from_size_align(size, align).expect("valid layout");
                // SAFETY: non-zero size; the block is written within `size` bytes, read back,
                // reallocated with its layout and freed once with the layout it then has.
                unsafe {
                    let p = allocator.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    for i in 0..size {
                        *p.add(i) = i as u8;
                    }
                    let grown = size * 2 + 8;
                    let q = allocator.realloc(p, layout, grown);
                    assert_eq!(q as usize % align, 0, "realloc size {size} align {align}");
                    for i in 0..size {
                        assert_eq!(*q.add(i), i as u8);
                    }
                    allocator.dealloc(q, Layout::from_size_align(grown, align).expect("valid"));
                    let z = allocator.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    allocator.dealloc(z, layout);
                }
            }
        }
    }
}
