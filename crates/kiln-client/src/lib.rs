#![doc = include_str!("../README.md")]

pub mod auth;
mod client;
mod error;
pub mod image;
pub mod progress;
pub mod reference;
pub mod stall;
mod tls;
mod transfer;

pub use client::{Client, ClientConfig, DEFAULT_READ_TIMEOUT};
pub use error::ClientError;
pub use image::{Platform, PlatformChoice, Transferred};
pub use reference::Reference;
pub use transfer::{BlobDownload, MANIFEST_ACCEPT, Manifest};
