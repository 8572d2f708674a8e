#![doc = include_str!("../README.md")]

mod digest;
pub mod manifest;
pub mod media_types;
mod store;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use store::{BlobStore, BlobWriter, StoreError, VerifyingReader};
