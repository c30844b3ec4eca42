//! Allocator tuning shared by the binaries.

/// Chunk and shard buffers (megabytes each) are allocated and freed all the
/// time. Above glibc's dynamic mmap threshold they are served from the heap
/// and stay there after a burst of load, so a gateway's RSS never comes
/// back down (300+ MiB idle after the benchmark). A fixed 1 MiB threshold
/// gives each its own mapping, returned to the OS when freed
/// (docs/distributed-benchmarks.md). Call it first thing in `main`.
pub fn return_large_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
