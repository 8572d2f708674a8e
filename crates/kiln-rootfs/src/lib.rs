#![doc = include_str!("../README.md")]

pub mod capture;
pub mod error;
pub mod overlay;
pub mod pin;
pub mod root;
mod sys;
pub mod tree;
pub mod unpack;
pub mod users;
pub mod workdir;

pub use capture::{CaptureOptions, CaptureStats, capture_layer};
pub use error::RootfsError;
pub use overlay::OverlayMount;
pub use pin::PinnedMount;
pub use root::Root;
pub use unpack::{Durability, UnpackLimits, UnpackStats, unpack_layer, unpack_layer_with};
pub use users::Ids;
pub use workdir::WorkDir;

/// The extended attributes a layer records for the host file `path` (not following a symlink), as
/// capture records them: every one but `security.selinux` and overlayfs' own `trusted.overlay.*`.
pub fn layer_xattrs(path: &std::path::Path) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let all = sys::list_xattrs(path).map_err(std::io::Error::from)?;
    Ok(all
        .into_iter()
        .filter(|(key, _)| key != b"security.selinux" && !key.starts_with(sys::OVERLAY_XATTR_PREFIX))
        .collect())
}
