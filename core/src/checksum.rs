//! CRC-32C (Castagnoli), the checksum of shard blocks and stored headers.
//! Hardware-accelerated through `crc-fast`; measured well above disk and
//! network speed, so it never bounds a shard transfer.

use crc_fast::{CrcAlgorithm, Digest};

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// Incremental CRC-32C for data that arrives in pieces.
#[derive(Clone)]
pub struct Crc32c(Digest);

impl Default for Crc32c {
    fn default() -> Self {
        Self(Digest::new(CrcAlgorithm::Crc32Iscsi))
    }
}

impl Crc32c {
    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The checksum so far, and resets for the next piece.
    pub fn finish_reset(&mut self) -> u32 {
        self.0.finalize_reset() as u32
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_castagnoli_check_value() {
        assert_eq!(super::crc32c(b"123456789"), 0xe306_9283);
        let mut d = super::Crc32c::default();
        d.update(b"1234");
        d.update(b"56789");
        assert_eq!(d.finish_reset(), 0xe306_9283);
        assert_eq!(d.finish_reset(), super::crc32c(b""));
    }
}
