//! A fast unkeyed hasher for maps whose keys no client chooses.
//!
//! std's `HashMap` hashes with keyed SipHash, which resists keys crafted to
//! collide; that matters for client addresses and tokens, and costs a few
//! hundred instructions per look-up. Internal ids and bounded metric labels
//! need no such defence, and on the request path those instructions count:
//! [`FxHasher`] is the multiply-rotate hash rustc uses for its own maps.

use std::hash::{BuildHasherDefault, Hasher};

/// The Fx hash: one rotate, xor and multiply per word.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

/// `HashMap<K, V, FxBuildHasher>` for maps of internal keys.
pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash};

    use super::*;

    #[test]
    fn equal_keys_hash_alike_and_different_ones_apart() {
        let b = FxBuildHasher::default();
        let h = |v: &dyn Fn(&mut FxHasher)| {
            let mut s = b.build_hasher();
            v(&mut s);
            s.finish()
        };
        assert_eq!(h(&|s| ("GET", "/v1/users", 200u16).hash(s)), h(&|s| ("GET", "/v1/users", 200u16).hash(s)));
        assert_ne!(h(&|s| ("GET", "/v1/users", 200u16).hash(s)), h(&|s| ("GET", "/v1/users", 404u16).hash(s)));
        assert_ne!(h(&|s| 1u64.hash(s)), h(&|s| 2u64.hash(s)));
        // Strings are delimited: ("ab", "c") is not ("a", "bc").
        assert_ne!(h(&|s| ("ab", "c").hash(s)), h(&|s| ("a", "bc").hash(s)));
    }
}
