//! Deterministic random bytes (splitmix64): blob contents that no registry can deduplicate or compress.

use bytes::Bytes;
use kiln_oci::{Algorithm, Digest};

/// A seeded generator.
pub struct Rng(u64);

impl Rng {
    /// A generator; equal seeds give equal sequences.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

/// A blob to push: its bytes and sha256 digest.
#[derive(Clone)]
pub struct Blob {
    /// The content.
    pub bytes: Bytes,
    /// Its sha256 digest.
    pub digest: Digest,
}

impl Blob {
    /// A blob of these bytes.
    pub fn new(bytes: Vec<u8>) -> Blob {
        let digest = Algorithm::Sha256.digest(&bytes);
        Blob {
            bytes: Bytes::from(bytes),
            digest,
        }
    }

    /// A blob of `len` random bytes from `seed`.
    pub fn random(seed: u64, len: usize) -> Blob {
        Blob::new(Rng::new(seed).bytes(len))
    }

    /// Its size.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A pool of random bytes from which unique blobs are cut cheaply: a slice of the pool with a unique
/// 16-byte prefix (a memcpy and one sha256 per blob instead of generating every byte).
pub struct Pool {
    bytes: Vec<u8>,
}

impl Pool {
    /// A pool able to serve blobs of up to `max_len` bytes.
    pub fn new(seed: u64, max_len: usize) -> Pool {
        Pool {
            bytes: Rng::new(seed).bytes(max_len + (16 << 20)),
        }
    }

    /// A blob of `len` bytes that differs from every other blob with another `unique` value.
    pub fn blob(&self, rng: &mut Rng, unique: u128, len: usize) -> Blob {
        let room = self.bytes.len().saturating_sub(len) as u64;
        let start = rng.below(room + 1) as usize;
        let end = (start + len).min(self.bytes.len());
        let mut v = self.bytes[start..end].to_vec();
        let tag = unique.to_le_bytes();
        let n = tag.len().min(v.len());
        v[..n].copy_from_slice(&tag[..n]);
        Blob::new(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_unique() {
        assert_eq!(Rng::new(1).bytes(33), Rng::new(1).bytes(33));
        assert_ne!(Rng::new(1).bytes(33), Rng::new(2).bytes(33));
        let pool = Pool::new(3, 1000);
        let mut rng = Rng::new(4);
        let a = pool.blob(&mut rng, 1, 1000);
        let b = pool.blob(&mut rng, 2, 1000);
        assert_eq!(a.len(), 1000);
        assert_ne!(a.digest, b.digest);
        assert_eq!(pool.blob(&mut rng, 9, 5).len(), 5);
    }
}
