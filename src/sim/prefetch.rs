//! A hint to the processor that a cache line will be read soon. It changes nothing a program
//! computes: it may be ignored, and it never faults, whatever the address.

/// Asks for the cache line holding `p` to be brought into the first-level cache.
#[inline(always)]
pub(crate) fn line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and never faults, even for an address
    // that is not mapped; `_mm_prefetch` needs only SSE, which every x86_64 processor has.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
