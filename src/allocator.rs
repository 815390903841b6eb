//! The process allocator: the system allocator, except that allocations of
//! `HUGE_ALLOCATION_BYTES` or more are anonymous `mmap(MAP_NORESERVE)` mappings.
//!
//! Why: the `kafka-protocol` decoders size a `Vec` from the array count a client sends before
//! reading the elements. A 20-byte request claiming 2^31 topics asks for ~170 GB; the system
//! allocator fails and Rust aborts the whole broker. With this allocator such a request only
//! reserves address space (no memory is committed until touched, and `MAP_NORESERVE` keeps it
//! out of the overcommit heuristic), the decoder then fails on the first missing element, the
//! mapping is released, and the connection is closed with a log line. No legitimate allocation
//! is that large: frames are capped by `socket.request.max.bytes` (at most 1 GiB).
//!
//! Limit: with `vm.overcommit_memory=2` (strict accounting) the kernel ignores `MAP_NORESERVE`
//! and the mapping fails like any allocation would.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are mmap'ed with MAP_NORESERVE.
pub const HUGE_ALLOCATION_BYTES: usize = 1 << 30;
/// mmap returns page-aligned memory; larger alignments go to the system allocator.
const PAGE_BYTES: usize = 4096;

pub struct Allocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_ALLOCATION_BYTES && layout.align() <= PAGE_BYTES
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: anonymous private mapping; no file, no fixed address.
    let pointer = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if pointer == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        pointer.cast()
    }
}

// SAFETY: every pointer is freed by the path that allocated it, decided by the same layout test.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Fresh anonymous mappings are zero-filled.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            unsafe {
                libc::munmap(pointer.cast(), layout.size());
            }
        } else {
            unsafe { System.dealloc(pointer, layout) }
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = match Layout::from_size_align(new_size, layout.align()) {
            Ok(new_layout) => new_layout,
            Err(_) => return std::ptr::null_mut(),
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(pointer, layout, new_size) };
        }
        let fresh = unsafe { self.alloc(new_layout) };
        if !fresh.is_null() {
            let keep = layout.size().min(new_size);
            // SAFETY: both regions are valid for `keep` bytes and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(pointer, fresh, keep);
                self.dealloc(pointer, layout);
            }
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservations_do_not_commit_memory() {
        let allocator = Allocator;
        let layout = Layout::from_size_align(200 << 30, 8).unwrap();
        // SAFETY: allocate, touch one byte, free with the same layout.
        unsafe {
            let pointer = allocator.alloc(layout);
            assert!(!pointer.is_null(), "200 GiB of address space is reservable");
            *pointer = 7;
            assert_eq!(*pointer, 7);
            allocator.dealloc(pointer, layout);
        }
    }

    #[test]
    fn small_allocations_round_trip_and_grow_into_huge() {
        let allocator = Allocator;
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: standard alloc/realloc/dealloc sequence with matching layouts.
        unsafe {
            let pointer = allocator.alloc(layout);
            pointer.write_bytes(3, 64);
            let grown = allocator.realloc(pointer, layout, HUGE_ALLOCATION_BYTES);
            assert!(!grown.is_null());
            assert_eq!(*grown.add(63), 3);
            let huge = Layout::from_size_align(HUGE_ALLOCATION_BYTES, 8).unwrap();
            let shrunk = allocator.realloc(grown, huge, 128);
            assert_eq!(*shrunk.add(10), 3);
            allocator.dealloc(shrunk, Layout::from_size_align(128, 8).unwrap());
        }
    }
}
