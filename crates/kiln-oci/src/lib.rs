#![doc = include_str!("../README.md")]

pub mod compress;
mod digest;
pub mod export;
pub mod files;
pub mod image;
mod image_store;
pub mod import;
pub mod layer_check;
pub mod manifest;
pub mod media_types;
mod store;
pub mod tar_reader;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use image::{ImageError, ImageIndex, ImageManifest};
pub use image_store::{
    GcLock, GcOptions, GcReport, ImageRef, ImageStore, ResolvedImage, StoreLock, host_platform,
};
pub use store::{BlobStore, BlobWriter, ParkedWriter, StoreError, VerifyingReader};
