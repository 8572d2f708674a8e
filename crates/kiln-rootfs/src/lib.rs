#![doc = include_str!("../README.md")]

pub mod capture;
pub mod error;
pub mod overlay;
pub mod root;
mod sys;
pub mod tree;
pub mod unpack;
pub mod users;

pub use capture::{CaptureOptions, CaptureStats, capture_layer};
pub use error::RootfsError;
pub use overlay::OverlayMount;
pub use root::Root;
pub use unpack::{Durability, UnpackLimits, UnpackStats, unpack_layer, unpack_layer_with};
pub use users::Ids;
