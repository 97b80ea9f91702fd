//! A fast unkeyed hasher for maps whose keys no client chooses.
//!
//! std's `HashMap` hashes with keyed SipHash, which resists keys crafted to
//! collide; that matters for client addresses and tokens, and costs a few
//! hundred instructions per look-up. Internal ids and bounded metric labels
//! need no such defence, and on the request path those instructions count:
//! [`FxHasher`] is the hash rustc uses for its own maps, from the
//! `rustc-hash` crate (kept by the Rust project).

/// The Fx hash, and `HashMap<K, V, FxBuildHasher>` for maps of internal keys.
pub use rustc_hash::{FxBuildHasher, FxHasher};

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash, Hasher};

    use super::*;

    #[test]
    fn equal_keys_hash_alike_and_different_ones_apart() {
        let b = FxBuildHasher;
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
