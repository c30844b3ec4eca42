//! Deterministic pseudo-random payloads for tests and benchmarks: the same
//! bytes from the same seed in every process (a node test and the client
//! that checks it agree without sharing files), incompressible enough that
//! no layer can shortcut them, and no RNG dependency.

/// `len` bytes of an xorshift64 stream seeded by `seed`.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(pseudo_random_bytes(1000, 7), pseudo_random_bytes(1000, 7));
        assert_ne!(pseudo_random_bytes(1000, 7), pseudo_random_bytes(1000, 8));
        assert_eq!(pseudo_random_bytes(0, 7), Vec::<u8>::new());
    }
}
