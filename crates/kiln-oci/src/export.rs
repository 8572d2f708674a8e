//! Exporting images: docker-archive (what `docker load` and `podman load` read: `manifest.json`, the
//! config, uncompressed layer tars, the legacy `repositories`), optionally zstd-compressed as a whole
//! (`image.tar.zst`); OCI archives and OCI layout folders, with blobs copied byte-exact so digests survive.
//!
//! Everything streams: a layer is decompressed once to learn its size (a tar header needs it up front) and
//! check its diff ID, then written into the archive, never held in memory. In a zstd-compressed
//! docker-archive (`image.tar.zst`) a zstd layer blob is not decompressed a second time and compressed
//! again: its frames are copied in verbatim between frames holding the rest of the archive. A zstd stream
//! may be any sequence of frames, so the file decompresses to exactly the same archive, at a fraction of
//! the cost. Files are written to a temporary name next to the target and renamed when complete.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use crate::compress::{Compression, HashingReader, decompress_as, zstd_encoder};
use crate::digest::Digest;
use crate::image::{
    ConfigRootfs, IMAGE_NAME_ANNOTATION, ImageError, ImageIndex, OCI_LAYOUT_FILE, REF_NAME_ANNOTATION,
    from_json, split_name, to_json,
};
use crate::image_store::{ImageStore, read_capped, write_atomic};
use crate::manifest::Descriptor;
use crate::media_types as mt;
use crate::store::{BlobStore, VerifyingReader};

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// docker-archive; `zstd`: compressed as a whole (`.tar.zst`).
    DockerArchive {
        /// Compress the whole archive with zstd.
        zstd: bool,
    },
    /// OCI layout in a tar (`.oci.tar`, or `.oci.tar.zst` compressed as a whole).
    OciArchive {
        /// Compress the whole archive with zstd.
        zstd: bool,
    },
    /// OCI layout folder.
    OciLayout,
}

impl ExportFormat {
    /// The format a path asks for: `.oci.tar[.zst]`, `.tar[.zst]`, or a folder (an existing one, a path
    /// ending in `/`, or a name without extension) for an OCI layout.
    pub fn for_path(path: &Path) -> Result<ExportFormat, ImageError> {
        let text = path.to_string_lossy();
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() || text.ends_with('/') {
            return Ok(ExportFormat::OciLayout);
        }
        Ok(if file.ends_with(".oci.tar") {
            ExportFormat::OciArchive { zstd: false }
        } else if file.ends_with(".oci.tar.zst") {
            ExportFormat::OciArchive { zstd: true }
        } else if file.ends_with(".tar") {
            ExportFormat::DockerArchive { zstd: false }
        } else if file.ends_with(".tar.zst") || file.ends_with(".tzst") {
            ExportFormat::DockerArchive { zstd: true }
        } else if !file.contains('.') {
            ExportFormat::OciLayout
        } else {
            return Err(ImageError::archive(
                path,
                "unknown export format; use .tar or .tar.zst (docker-archive), .oci.tar (OCI archive), \
                 or a folder (OCI layout)",
            ));
        })
    }
}

/// Exports the image `name` to `path`. Returns the exported manifest's descriptor.
pub fn export(
    store: &ImageStore,
    name: &str,
    path: &Path,
    format: ExportFormat,
) -> Result<Descriptor, ImageError> {
    // Garbage collection must not remove blobs while they are read.
    let _reading = store.lock_for_writing()?;
    let image_ref = store.require(name)?;
    match format {
        ExportFormat::DockerArchive { zstd } => {
            let image = store.resolve(&image_ref.descriptor)?;
            write_file(path, zstd, |out| {
                write_docker_archive(store, &image_ref.name, &image.manifest.layers, &image.config, out)
            })?;
            Ok(image.manifest_descriptor)
        }
        ExportFormat::OciArchive { zstd } => {
            let blobs = blob_sizes(store, &image_ref.descriptor)?;
            let index = export_index(&image_ref.name, &image_ref.descriptor, None)?;
            write_file(path, zstd, |out| write_oci_archive(store, &blobs, &index, out))?;
            Ok(image_ref.descriptor)
        }
        ExportFormat::OciLayout => {
            write_oci_dir(store, &image_ref.name, &image_ref.descriptor, path)?;
            Ok(image_ref.descriptor)
        }
    }
}

fn blob_sizes(store: &ImageStore, root: &Descriptor) -> Result<BTreeMap<Digest, u64>, ImageError> {
    let mut out = BTreeMap::new();
    for digest in store.reachable(root)? {
        let size = store
            .blobs()
            .size(&digest)?
            .ok_or_else(|| ImageError::MissingBlob {
                digest: digest.clone(),
                referenced_by: format!("manifest {}", root.digest),
            })?;
        out.insert(digest, size);
    }
    Ok(out)
}

/// The output of an archive writer.
trait ArchiveWrite: Write {
    /// Whether complete zstd frames may be copied into the file itself (a zstd-compressed output).
    fn takes_zstd_frames(&self) -> bool;
    /// Ends the current zstd frame, if any, and returns the file itself; later writes start a new frame.
    fn end_frame(&mut self) -> io::Result<&mut dyn Write>;
}

/// An uncompressed output.
struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> ArchiveWrite for Plain<W> {
    fn takes_zstd_frames(&self) -> bool {
        false
    }

    fn end_frame(&mut self) -> io::Result<&mut dyn Write> {
        Ok(&mut self.0)
    }
}

/// A zstd-compressed output made of frames: what is written goes through kiln's zstd encoder, started
/// lazily; [`ArchiveWrite::zstd_frames`] ends the frame so that ready-made frames can follow it.
struct Frames<W: Write> {
    raw: Option<W>,
    encoder: Option<zstd::stream::write::Encoder<'static, W>>,
}

impl<W: Write> Frames<W> {
    fn new(out: W) -> Frames<W> {
        Frames {
            raw: Some(out),
            encoder: None,
        }
    }

    fn encoder(&mut self) -> io::Result<&mut zstd::stream::write::Encoder<'static, W>> {
        if self.encoder.is_none() {
            let raw = self
                .raw
                .take()
                .ok_or_else(|| io::Error::other("zstd output already finished"))?;
            self.encoder = Some(zstd_encoder(raw)?);
        }
        self.encoder
            .as_mut()
            .ok_or_else(|| io::Error::other("zstd output already finished"))
    }

    /// Ends the current frame, if any, and returns the file.
    fn finish_frame(&mut self) -> io::Result<&mut W> {
        if let Some(encoder) = self.encoder.take() {
            self.raw = Some(encoder.finish()?);
        }
        self.raw
            .as_mut()
            .ok_or_else(|| io::Error::other("zstd output already finished"))
    }

    fn finish(mut self) -> io::Result<W> {
        // An archive always ends in compressed bytes (tar's end blocks), so there is a frame to end; an
        // empty output would still be a valid (empty) zstd file only with a frame, so make one.
        if self.encoder.is_none() {
            self.encoder()?;
        }
        self.finish_frame()?;
        self.raw
            .take()
            .ok_or_else(|| io::Error::other("zstd output already finished"))
    }
}

impl<W: Write> Write for Frames<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.encoder()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        match (&mut self.encoder, &mut self.raw) {
            (Some(encoder), _) => encoder.flush(),
            (None, Some(raw)) => raw.flush(),
            (None, None) => Ok(()),
        }
    }
}

impl<W: Write> ArchiveWrite for Frames<W> {
    fn takes_zstd_frames(&self) -> bool {
        true
    }

    fn end_frame(&mut self) -> io::Result<&mut dyn Write> {
        Ok(self.finish_frame()?)
    }
}

/// Writes through `f` into a temp file next to `path`, optionally zstd-compressed, then renames it.
fn write_file(
    path: &Path,
    zstd: bool,
    f: impl FnOnce(&mut dyn ArchiveWrite) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let temp = crate::files::temp_beside(path, ".kiln-export-")?;
    let io_err = |e: io::Error| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()));
    let file = temp.as_file().try_clone().map_err(io_err)?;
    let buffered = BufWriter::with_capacity(1 << 20, file);
    let mut buffered = if zstd {
        let mut out = Frames::new(buffered);
        f(&mut out)?;
        out.finish().map_err(io_err)?
    } else {
        let mut out = Plain(buffered);
        f(&mut out)?;
        out.0
    };
    buffered.flush().map_err(io_err)?;
    drop(buffered);
    // An exported image is meant to be shared.
    Ok(crate::files::persist(temp, path, 0o644)?)
}

fn file_header(size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn dir_header() -> tar::Header {
    let mut header = file_header(0, 0o755);
    header.set_entry_type(tar::EntryType::Directory);
    header
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut header = file_header(bytes.len() as u64, 0o644);
    tar.append_data(&mut header, name, bytes)
}

/// The compression of a layer blob, from its media type; foreign layers are refused.
fn layer_compression(blobs: &BlobStore, layer: &Descriptor) -> Result<Compression, ImageError> {
    let media_type = layer.media_type.as_deref().unwrap_or(mt::OCI_LAYER_GZIP);
    let compression = Compression::of_layer_media_type(media_type).ok_or_else(|| {
        ImageError::archive(
            blobs.blob_path(&layer.digest),
            format!(
                "layer {} has media type {media_type}, not a layer kiln can export",
                layer.digest
            ),
        )
    })?;
    if mt::is_foreign_layer(media_type) || layer.urls.as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(ImageError::archive(
            blobs.blob_path(&layer.digest),
            format!("layer {} is a foreign layer, not in the store", layer.digest),
        ));
    }
    Ok(compression)
}

/// Opens a layer blob decompressed, hashing the uncompressed stream.
fn open_layer<'a>(
    blobs: &'a BlobStore,
    layer: &Descriptor,
) -> Result<HashingReader<Box<dyn Read + 'a>>, ImageError> {
    let compression = layer_compression(blobs, layer)?;
    let blob = open_exported_blob(blobs, &layer.digest)?;
    let reader = decompress_as(compression, io::BufReader::with_capacity(1 << 20, blob))?;
    Ok(HashingReader::new(reader))
}

fn write_docker_archive(
    store: &ImageStore,
    name: &str,
    layers: &[Descriptor],
    config: &[u8],
    out: &mut dyn ArchiveWrite,
) -> Result<(), ImageError> {
    let config_digest = crate::digest::Algorithm::Sha256.digest(config);
    let rootfs: ConfigRootfs = from_json(config, || format!("config {config_digest}"))?;
    if rootfs.rootfs.diff_ids.len() != layers.len() {
        return Err(ImageError::archive(
            store.root(),
            format!(
                "config {config_digest} lists {} layers, the manifest {}",
                rootfs.rootfs.diff_ids.len(),
                layers.len()
            ),
        ));
    }
    let mut tar = tar::Builder::new(out);
    let config_name = format!("{}.json", config_digest.hex());
    append_bytes(&mut tar, &config_name, config)?;
    let mut layer_names = Vec::new();
    let mut written = BTreeSet::new();
    for (index, (layer, diff_id)) in layers.iter().zip(&rootfs.rootfs.diff_ids).enumerate() {
        let layer_name = format!("{}.tar", diff_id.hex());
        layer_names.push(layer_name.clone());
        if !written.insert(diff_id.clone()) {
            continue;
        }
        let check = |reader: &HashingReader<Box<dyn Read + '_>>| -> Result<(), ImageError> {
            let actual = reader.hasher.clone().finish();
            if actual != *diff_id {
                return Err(ImageError::DiffIdMismatch {
                    what: format!("layer {}", layer.digest),
                    index,
                    expected: diff_id.clone(),
                    actual,
                });
            }
            Ok(())
        };
        // First pass: the uncompressed size (a tar header needs it up front) and the diff ID.
        let mut reader = open_layer(store.blobs(), layer)?;
        io::copy(&mut reader, &mut io::sink())?;
        check(&reader)?;
        let size = reader.len;
        let mut header = file_header(size, 0o644);
        header.set_path(&layer_name)?;
        header.set_cksum();
        if tar.get_mut().takes_zstd_frames() && layer_compression(store.blobs(), layer)? == Compression::Zstd
        {
            // The blob's frames go in as they are. It is verified against its digest while it is copied,
            // so it is the very blob that decompressed to `size` bytes with this diff ID above.
            tar.get_mut().write_all(header.as_bytes())?;
            let raw = tar.get_mut().end_frame()?;
            let mut blob = open_exported_blob(store.blobs(), &layer.digest)?;
            copy_blob(&mut blob, raw).map_err(|e| blob.into_error(e))?;
            let padding = (512 - size % 512) % 512;
            tar.get_mut().write_all(&[0u8; 512][..padding as usize])?;
            continue;
        }
        let mut reader = open_layer(store.blobs(), layer)?;
        let mut limited = (&mut reader).take(size);
        tar.append(&header, &mut limited)?;
        if reader.len != size {
            return Err(ImageError::archive(
                store.blobs().blob_path(&layer.digest),
                format!("layer {} changed while it was exported", layer.digest),
            ));
        }
        io::copy(&mut reader, &mut io::sink())?;
        check(&reader)?;
    }
    let (repo, tag) = split_name(name);
    let repo_tags: Vec<String> = tag.map(|t| format!("{repo}:{t}")).into_iter().collect();
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]);
    append_bytes(&mut tar, "manifest.json", &to_json(&manifest))?;
    if let (Some(tag), Some(top)) = (tag, rootfs.rootfs.diff_ids.last()) {
        let repositories = serde_json::json!({ repo: { tag: top.hex() } });
        append_bytes(&mut tar, "repositories", &to_json(&repositories))?;
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

/// Copies a blob in 1 MiB reads (the reader verifies it at the end).
fn copy_blob(from: &mut impl Read, to: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// The `index.json` of an exported layout: the image under its full name (containerd's annotation) and
/// its tag (`org.opencontainers.image.ref.name`, as skopeo and umoci expect), merged into `existing`.
fn export_index(
    name: &str,
    descriptor: &Descriptor,
    existing: Option<ImageIndex>,
) -> Result<Vec<u8>, ImageError> {
    let (_, tag) = split_name(name);
    let mut annotations = BTreeMap::from([(IMAGE_NAME_ANNOTATION.to_owned(), name.to_owned())]);
    if let Some(tag) = tag {
        annotations.insert(REF_NAME_ANNOTATION.to_owned(), tag.to_owned());
    }
    let mut entry = descriptor.clone();
    entry.annotations = Some(annotations.clone());
    let mut manifests = existing.map(|i| i.manifests).unwrap_or_default();
    // An entry with the same full name or the same tag is replaced: tags must stay unique in a layout.
    manifests.retain(|d| {
        let theirs = d.annotations.clone().unwrap_or_default();
        let same_name = theirs.get(IMAGE_NAME_ANNOTATION).map(String::as_str) == Some(name);
        let same_tag = theirs.contains_key(REF_NAME_ANNOTATION)
            && theirs.get(REF_NAME_ANNOTATION) == annotations.get(REF_NAME_ANNOTATION);
        !same_name && !same_tag
    });
    manifests.push(entry);
    Ok(to_json(&ImageIndex {
        schema_version: 2,
        media_type: Some(mt::OCI_INDEX.to_owned()),
        manifests,
        annotations: None,
    }))
}

fn write_oci_archive(
    store: &ImageStore,
    blobs: &BTreeMap<Digest, u64>,
    index: &[u8],
    out: &mut dyn ArchiveWrite,
) -> Result<(), ImageError> {
    let mut tar = tar::Builder::new(out);
    append_bytes(&mut tar, "oci-layout", OCI_LAYOUT_FILE.as_bytes())?;
    append_bytes(&mut tar, "index.json", index)?;
    tar.append_data(&mut dir_header(), "blobs/", io::empty())?;
    let algorithms: BTreeSet<_> = blobs.keys().map(|d| d.algorithm().name()).collect();
    for alg in algorithms {
        tar.append_data(&mut dir_header(), format!("blobs/{alg}/"), io::empty())?;
    }
    for (digest, size) in blobs {
        let reader = open_exported_blob(store.blobs(), digest)?;
        let mut header = file_header(*size, 0o644);
        let name = format!("blobs/{}/{}", digest.algorithm().name(), digest.hex());
        tar.append_data(&mut header, &name, reader.take(*size))?;
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

fn write_oci_dir(
    store: &ImageStore,
    name: &str,
    descriptor: &Descriptor,
    dir: &Path,
) -> Result<(), ImageError> {
    let existing = if fs_err::symlink_metadata(dir.join("oci-layout")).is_ok() {
        let bytes = read_capped(&dir.join("index.json"))?;
        Some(from_json::<ImageIndex>(&bytes, || {
            format!("{}/index.json", dir.display())
        })?)
    } else {
        if dir.exists() && fs_err::read_dir(dir)?.next().is_some() {
            return Err(ImageError::archive(
                dir,
                "exists and is neither empty nor an OCI layout; choose another folder",
            ));
        }
        None
    };
    let sizes = blob_sizes(store, descriptor)?;
    fs_err::create_dir_all(dir)?;
    let ingest_existed = dir.join("ingest").exists();
    let target = BlobStore::open(dir)?;
    for (digest, size) in &sizes {
        if target.size(digest)? == Some(*size) {
            continue;
        }
        let mut reader = open_exported_blob(store.blobs(), digest)?;
        let mut writer = target.writer(digest.algorithm())?;
        io::copy(&mut reader, &mut writer).map_err(|e| reader.into_error(e))?;
        writer.commit(Some(digest))?;
    }
    if !ingest_existed {
        let _ignored = fs_err::remove_dir(dir.join("ingest"));
    }
    for alg in crate::digest::Algorithm::ALL {
        // Only removed when empty.
        let _ignored = std::fs::remove_dir(dir.join("blobs").join(alg.name()));
    }
    write_atomic(&dir.join("oci-layout"), OCI_LAYOUT_FILE.as_bytes())?;
    write_atomic(
        &dir.join("index.json"),
        &export_index(name, descriptor, existing)?,
    )?;
    Ok(())
}

/// Opens a blob of the image being exported, verified as it is read; a blob the store lacks is an error.
fn open_exported_blob(
    blobs: &BlobStore,
    digest: &Digest,
) -> Result<VerifyingReader<fs_err::File>, ImageError> {
    blobs
        .open_verified(digest)?
        .ok_or_else(|| ImageError::MissingBlob {
            digest: digest.clone(),
            referenced_by: "the exported image".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::{LayerWriter, StoredLayer};

    /// An image of three layers, one per compression, with sizes that are not multiples of 512.
    fn three_layer_image(store: &ImageStore) -> Vec<StoredLayer> {
        let mut layers = Vec::new();
        for (i, compression) in [Compression::Zstd, Compression::Gzip, Compression::None]
            .into_iter()
            .enumerate()
        {
            let mut w = LayerWriter::new(store.blobs(), compression).unwrap();
            let content: Vec<u8> = (0..300_000 + i * 777).map(|n| (n % 251) as u8).collect();
            w.write_all(&content).unwrap();
            layers.push(w.finish().unwrap());
        }
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let manifest = crate::import::store_image(store, &to_json(&config), &layers).unwrap();
        store.set_ref("localhost/x:1", &manifest).unwrap();
        layers
    }

    fn docker_archive(store: &ImageStore, path: &Path, zstd: bool) {
        export(store, "localhost/x:1", path, ExportFormat::DockerArchive { zstd }).unwrap();
    }

    #[test]
    fn a_zstd_archive_takes_zstd_layers_as_they_are_and_decompresses_to_the_plain_archive() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("store")).unwrap();
        let layers = three_layer_image(&store);
        let plain = dir.path().join("image.tar");
        let packed = dir.path().join("image.tar.zst");
        docker_archive(&store, &plain, false);
        docker_archive(&store, &packed, true);
        let plain = fs_err::read(&plain).unwrap();
        let packed = fs_err::read(&packed).unwrap();
        assert_eq!(zstd::stream::decode_all(&packed[..]).unwrap(), plain);
        // The zstd layer blob is in the file byte for byte.
        let blob = store
            .blobs()
            .read_verified(&layers[0].descriptor.digest)
            .unwrap()
            .unwrap();
        assert!(packed.windows(blob.len()).any(|w| w == blob.as_slice()));
        // Every layer is in the archive whole, under its diff ID.
        let mut archive = tar::Archive::new(&plain[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        for layer in &layers {
            assert!(names.contains(&format!("{}.tar", layer.diff_id.hex())));
        }
        // The same inputs give the same file.
        let again = dir.path().join("again.tar.zst");
        docker_archive(&store, &again, true);
        assert_eq!(fs_err::read(&again).unwrap(), packed);
    }

    #[test]
    fn a_damaged_zstd_layer_blob_fails_the_export_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("store")).unwrap();
        let layers = three_layer_image(&store);
        let path = store.blobs().blob_path(&layers[0].descriptor.digest);
        let mut bytes = fs_err::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs_err::write(&path, bytes).unwrap();
        let packed = dir.path().join("image.tar.zst");
        assert!(
            export(
                &store,
                "localhost/x:1",
                &packed,
                ExportFormat::DockerArchive { zstd: true }
            )
            .is_err()
        );
        assert!(!packed.exists());
        let leftovers: Vec<_> = fs_err::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the store is left");
    }

    #[test]
    fn the_extension_picks_the_format() {
        let f = |p: &str| ExportFormat::for_path(Path::new(p));
        assert_eq!(
            f("image.tar.zst").unwrap(),
            ExportFormat::DockerArchive { zstd: true }
        );
        assert_eq!(
            f("a/image.tar").unwrap(),
            ExportFormat::DockerArchive { zstd: false }
        );
        assert_eq!(f("x.oci.tar").unwrap(), ExportFormat::OciArchive { zstd: false });
        assert_eq!(
            f("x.oci.tar.zst").unwrap(),
            ExportFormat::OciArchive { zstd: true }
        );
        assert_eq!(f("layout").unwrap(), ExportFormat::OciLayout);
        assert_eq!(f("out.d/").unwrap(), ExportFormat::OciLayout);
        assert!(
            f("image.zip")
                .unwrap_err()
                .to_string()
                .contains("unknown export format")
        );
    }
}
