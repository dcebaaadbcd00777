//! A `Secret` is wiped when it is dropped: an allocator that looks at the
//! blocks it frees sees only zeros where a secret was.

// An allocator that inspects freed blocks cannot be written without it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use mcp_validate::Secret;

/// The size of the blocks looked at: unusual, so only this test's.
const WATCHED: usize = 4093;
/// Watched blocks freed.
static FREED: AtomicUsize = AtomicUsize::new(0);
/// Watched blocks freed with a byte other than zero in them.
static DIRTY: AtomicUsize = AtomicUsize::new(0);

struct Inspecting;

// SAFETY: every call is handed on to `System`; `dealloc` only reads the
// block it is given, which is allocated and `layout.size()` bytes long.
unsafe impl GlobalAlloc for Inspecting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() == WATCHED {
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            FREED.fetch_add(1, Ordering::SeqCst);
            if block.iter().any(|&b| b != 0) {
                DIRTY.fetch_add(1, Ordering::SeqCst);
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Inspecting = Inspecting;

/// A string of `WATCHED` bytes of capacity holding a password.
fn password() -> String {
    let mut text = String::with_capacity(WATCHED);
    text.push_str("correct horse battery staple");
    text
}

/// (watched blocks freed, of them dirty) while `f` runs.
fn freed_during(f: impl FnOnce()) -> (usize, usize) {
    let (freed, dirty) = (FREED.load(Ordering::SeqCst), DIRTY.load(Ordering::SeqCst));
    f();
    (
        FREED.load(Ordering::SeqCst) - freed,
        DIRTY.load(Ordering::SeqCst) - dirty,
    )
}

#[test]
fn a_dropped_secret_leaves_only_zeros() {
    // A plain string is freed with the password in it: the inspector sees it.
    assert_eq!(freed_during(|| drop(password())), (1, 1));
    // A secret is wiped first.
    let secret = Secret::new(password());
    assert_eq!(secret.expose(), "correct horse battery staple");
    assert_eq!(freed_during(|| drop(secret)), (1, 0));
    let secret = Secret::from(password());
    assert_eq!(freed_during(|| drop(secret)), (1, 0));
}
