//! Importing images: docker-archives (`docker save`, `podman save`, skopeo), OCI layouts and OCI archives,
//! and plain root filesystems (a folder or a tar) as single-layer images.
//!
//! Archives are untrusted. Files are never unpacked: a first pass lists the entries (rejecting absolute
//! names, `..` components, duplicate files, symlinked or oversized JSON documents) and reads the small JSON
//! documents that say what the archive is; a second pass streams the blobs and layers it names into the
//! store, verifying every digest. Refs are written last, and only for complete images. Every tar is read
//! by [`crate::tar_reader`], the reader layer unpack uses too.
//!
//! A root filesystem tar becomes the layer as it is, after [`crate::layer_check::check_layer`] read every
//! entry as an unpack would (in the same pass that stores it): a root filesystem that imports is one
//! that `FROM` can unpack. Layers of docker-archives and OCI archives are other builders' images and are
//! stored byte for byte, their digests verified.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::compress::{Compression, LayerWriter, StoredLayer, decompress};
use crate::digest::{Algorithm, Digest};
use crate::image::{
    ConfigRootfs, IMAGE_NAME_ANNOTATION, ImageError, ImageIndex, ImageManifest, MAX_JSON_SIZE,
    REF_NAME_ANNOTATION, from_json, normalize_name, to_json,
};
use crate::image_store::{ImageStore, host_platform, read_capped};
use crate::layer_check::{LayerLimits, check_layer};
use crate::manifest::{Descriptor, ManifestKind};
use crate::media_types as mt;
use crate::store::StoreError;
use crate::tar_reader::{EntryType, TarError, TarLimits, TarReader};

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The name to give the image (required for root filesystems; replaces the archive's names).
    pub name: Option<String>,
    /// How layers that arrive uncompressed are stored.
    pub compression: Compression,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            name: None,
            compression: Compression::Gzip,
        }
    }
}

/// What an imported path turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// `manifest.json` + config + layer tars.
    DockerArchive,
    /// An OCI image layout folder.
    OciLayout,
    /// An OCI image layout in a tar.
    OciArchive,
    /// A folder holding a root filesystem.
    RootfsDir,
    /// A tar of a root filesystem.
    RootfsTar,
}

impl std::fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceFormat::DockerArchive => "docker-archive",
            SourceFormat::OciLayout => "oci-layout",
            SourceFormat::OciArchive => "oci-archive",
            SourceFormat::RootfsDir => "rootfs-dir",
            SourceFormat::RootfsTar => "rootfs-tar",
        })
    }
}

/// One image an import named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The name it is stored under.
    pub name: String,
    /// Its manifest (or index).
    pub descriptor: Descriptor,
    /// What the source was.
    pub format: SourceFormat,
}

/// Imports the archive, layout or root filesystem at `path`.
pub fn import(store: &ImageStore, path: &Path, options: &ImportOptions) -> Result<Vec<Imported>, ImageError> {
    let name = options.name.as_deref().map(normalize_name).transpose()?;
    let _writing = store.lock_for_writing()?;
    let meta = fs_err::metadata(path)?;
    if meta.is_dir() {
        if fs_err::symlink_metadata(path.join("oci-layout")).is_ok() {
            import_oci_dir(store, path, name.as_deref())
        } else {
            import_rootfs_dir(store, path, name.as_deref(), options.compression)
        }
    } else {
        import_file(store, path, name.as_deref(), options.compression)
    }
}

/// A tar entry's name, normalized (`./a//b` → `a/b`); absolute names and `..` are refused.
fn entry_name(raw: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| format!("entry {:?} is not UTF-8", String::from_utf8_lossy(raw)))?;
    if text.starts_with('/') {
        return Err(format!("entry `{text}` has an absolute path"));
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("entry `{text}` has a `..` component")),
            _ => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

#[derive(Debug, Clone)]
enum EntryKind {
    File,
    Dir,
    Symlink(String),
    Other,
}

#[derive(Debug, Default)]
struct Scan {
    entries: HashMap<String, (EntryKind, u64)>,
    json: HashMap<&'static str, Vec<u8>>,
    /// The first entry an archive may not hold (an absolute or `..` name, a duplicate): fatal for a
    /// docker-archive or OCI archive, while a root filesystem tar follows the layer rules instead.
    problem: Option<String>,
}

const TOP_LEVEL_JSON: [&str; 4] = ["manifest.json", "index.json", "oci-layout", "repositories"];

fn open_tar(path: &Path) -> Result<TarReader<Box<dyn Read>>, ImageError> {
    let file = fs_err::File::open(path)?;
    let (_, reader) = decompress(BufReader::with_capacity(1 << 20, file))?;
    Ok(TarReader::new(reader, TarLimits::default()))
}

fn tar_err(path: &Path, e: TarError) -> ImageError {
    ImageError::archive(path, format!("cannot read the archive: {e}"))
}

fn read_err(path: &Path, entry: &str, e: io::Error) -> ImageError {
    ImageError::archive(path, format!("cannot read entry `{entry}`: {e}"))
}

/// First pass: every entry's kind and size, and the top-level JSON documents.
fn scan(path: &Path) -> Result<Scan, ImageError> {
    let mut reader = open_tar(path)?;
    let mut scan = Scan::default();
    while let Some(entry) = reader.next_entry().map_err(|e| tar_err(path, e))? {
        let name = match entry_name(&entry.name) {
            Ok(name) => name,
            Err(reason) => {
                scan.problem.get_or_insert(reason);
                // An absolute name still says what the archive is (`/manifest.json`); `..` cannot.
                let start = entry
                    .name
                    .iter()
                    .position(|&b| b != b'/')
                    .unwrap_or(entry.name.len());
                match entry_name(&entry.name[start..]) {
                    Ok(name) => name,
                    Err(_) => continue,
                }
            }
        };
        let size = entry.size;
        let kind = match entry.kind {
            EntryType::Regular | EntryType::Continuous => EntryKind::File,
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => EntryKind::Symlink(String::from_utf8_lossy(&entry.link).into_owned()),
            EntryType::Link => {
                if let Err(reason) = entry_name(&entry.link) {
                    scan.problem
                        .get_or_insert(format!("hard link `{name}`: {reason}"));
                }
                EntryKind::Other
            }
            _ => EntryKind::Other,
        };
        if let Some(&top) = TOP_LEVEL_JSON.iter().find(|n| **n == name) {
            if !matches!(kind, EntryKind::File) {
                return Err(ImageError::archive(
                    path,
                    format!("`{name}` is not a regular file (a symlink or link); refusing the archive"),
                ));
            }
            if size > MAX_JSON_SIZE {
                return Err(ImageError::archive(
                    path,
                    format!("`{name}` has {size} bytes, more than the {MAX_JSON_SIZE}-byte limit for JSON"),
                ));
            }
            let mut bytes = Vec::new();
            reader
                .content()
                .take(MAX_JSON_SIZE)
                .read_to_end(&mut bytes)
                .map_err(|e| read_err(path, &name, e))?;
            scan.json.insert(top, bytes);
        }
        if let Some((previous, _)) = scan.entries.get(&name)
            && !(matches!(previous, EntryKind::Dir) && matches!(kind, EntryKind::Dir))
        {
            scan.problem
                .get_or_insert(format!("entry `{name}` appears more than once"));
        }
        scan.entries.insert(name, (kind, size));
    }
    Ok(scan)
}

impl Scan {
    /// Follows symlinks inside the archive (docker save links identical layers) to a regular file.
    fn resolve(&self, path: &Path, name: &str) -> Result<String, ImageError> {
        let mut current = entry_name(name.as_bytes()).map_err(|r| ImageError::archive(path, r))?;
        for _ in 0..16 {
            match self.entries.get(&current) {
                Some((EntryKind::File, _)) => return Ok(current),
                Some((EntryKind::Symlink(target), _)) => {
                    if target.starts_with('/') {
                        return Err(ImageError::archive(
                            path,
                            format!("entry `{current}` links to absolute path `{target}`"),
                        ));
                    }
                    let mut parts: Vec<&str> = current.split('/').collect();
                    parts.pop();
                    for part in target.split('/') {
                        match part {
                            "" | "." => {}
                            ".." => {
                                if parts.pop().is_none() {
                                    return Err(ImageError::archive(
                                        path,
                                        format!("entry `{current}` links outside the archive (`{target}`)"),
                                    ));
                                }
                            }
                            _ => parts.push(part),
                        }
                    }
                    current = parts.join("/");
                }
                Some(_) => {
                    return Err(ImageError::archive(
                        path,
                        format!("entry `{current}` is not a regular file"),
                    ));
                }
                None => {
                    return Err(ImageError::archive(
                        path,
                        format!("`{name}` is named by the archive's metadata but is not in it"),
                    ));
                }
            }
        }
        Err(ImageError::archive(
            path,
            format!("entry `{name}` is a symlink loop"),
        ))
    }
}

fn import_file(
    store: &ImageStore,
    path: &Path,
    name: Option<&str>,
    compression: Compression,
) -> Result<Vec<Imported>, ImageError> {
    let scan = scan(path)?;
    let archive = ["oci-layout", "index.json", "manifest.json", "repositories"]
        .iter()
        .any(|n| scan.json.contains_key(n));
    if let (true, Some(problem)) = (archive, &scan.problem) {
        return Err(ImageError::archive(path, problem.clone()));
    }
    if scan.json.contains_key("oci-layout") && scan.json.contains_key("index.json") {
        import_oci_archive(store, path, name, &scan)
    } else if scan.json.contains_key("manifest.json") {
        import_docker_archive(store, path, name, compression, &scan)
    } else if scan.json.contains_key("repositories") {
        Err(ImageError::archive(
            path,
            "a docker-archive without manifest.json (docker before 1.10) is not supported; \
             re-save it with a newer docker, podman or skopeo",
        ))
    } else {
        import_rootfs_tar(store, path, name, compression)
    }
}

fn check_oci_layout(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Layout {
        image_layout_version: String,
    }
    let layout: Layout = from_json(bytes, || format!("{}: oci-layout", path.display()))?;
    if !layout.image_layout_version.starts_with("1.") {
        return Err(ImageError::archive(
            path,
            format!("unsupported OCI layout version {}", layout.image_layout_version),
        ));
    }
    Ok(())
}

/// Names the images an OCI `index.json` lists, once their blobs are in the store.
fn name_oci_images(
    store: &ImageStore,
    path: &Path,
    index_bytes: &[u8],
    name: Option<&str>,
    format: SourceFormat,
) -> Result<Vec<Imported>, ImageError> {
    let index: ImageIndex = from_json(index_bytes, || format!("{}: index.json", path.display()))?;
    if index.manifests.is_empty() {
        return Err(ImageError::archive(path, "index.json lists no images"));
    }
    if name.is_some() && index.manifests.len() > 1 {
        return Err(ImageError::archive(
            path,
            format!(
                "index.json lists {} images; a name can only be given to one",
                index.manifests.len()
            ),
        ));
    }
    let mut out = Vec::new();
    for entry in index.manifests {
        let annotations = entry.annotations.clone().unwrap_or_default();
        let image_name = match name {
            Some(n) => n.to_owned(),
            None => match annotations
                .get(IMAGE_NAME_ANNOTATION)
                .or_else(|| annotations.get(REF_NAME_ANNOTATION))
            {
                Some(n) => normalize_name(n)?,
                None => {
                    return Err(ImageError::NeedsName {
                        path: path.to_owned(),
                        reason: format!("image {} has no name in index.json", entry.digest),
                    });
                }
            },
        };
        let mut descriptor = entry;
        descriptor.annotations = None;
        descriptor.urls = None;
        store.set_ref(&image_name, &descriptor)?;
        out.push(Imported {
            name: image_name,
            descriptor,
            format,
        });
    }
    Ok(out)
}

fn blob_entry(name: &str) -> Option<Result<Digest, String>> {
    let rest = name.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    Some(match Algorithm::from_name(alg) {
        Some(alg) => Digest::new(alg, hex).map_err(|e| format!("entry `{name}`: {e}")),
        None => Err(format!("entry `{name}` uses an unsupported digest algorithm")),
    })
}

fn mismatch(path: &Path, entry: &str, e: StoreError) -> ImageError {
    match e {
        StoreError::DigestMismatch { expected, actual, .. } => ImageError::archive(
            path,
            format!("entry `{entry}` has digest {actual}, its name says {expected}"),
        ),
        other => other.into(),
    }
}

fn import_oci_archive(
    store: &ImageStore,
    path: &Path,
    name: Option<&str>,
    scan: &Scan,
) -> Result<Vec<Imported>, ImageError> {
    check_oci_layout(path, &scan.json["oci-layout"])?;
    let mut reader = open_tar(path)?;
    while let Some(entry) = reader.next_entry().map_err(|e| tar_err(path, e))? {
        let entry_path = entry_name(&entry.name).map_err(|r| ImageError::archive(path, r))?;
        if entry.kind != EntryType::Regular {
            continue;
        }
        let Some(digest) = blob_entry(&entry_path) else {
            continue;
        };
        let digest = digest.map_err(|r| ImageError::archive(path, r))?;
        if store.blobs().size(&digest)? == Some(entry.size) {
            continue;
        }
        let mut writer = store.blobs().writer(digest.algorithm())?;
        io::copy(&mut reader.content(), &mut writer).map_err(|e| read_err(path, &entry_path, e))?;
        writer
            .commit(Some(&digest))
            .map_err(|e| mismatch(path, &entry_path, e))?;
    }
    name_oci_images(
        store,
        path,
        &scan.json["index.json"],
        name,
        SourceFormat::OciArchive,
    )
}

fn import_oci_dir(store: &ImageStore, dir: &Path, name: Option<&str>) -> Result<Vec<Imported>, ImageError> {
    check_oci_layout(dir, &read_capped(&dir.join("oci-layout"))?)?;
    let index_bytes = read_capped(&dir.join("index.json"))?;
    let index: ImageIndex = from_json(&index_bytes, || format!("{}/index.json", dir.display()))?;
    let mut seen = HashSet::new();
    for entry in &index.manifests {
        copy_from_dir(store, dir, entry, true, &mut seen, 0)?;
    }
    name_oci_images(store, dir, &index_bytes, name, SourceFormat::OciLayout)
}

fn copy_from_dir(
    store: &ImageStore,
    dir: &Path,
    d: &Descriptor,
    is_manifest: bool,
    seen: &mut HashSet<Digest>,
    depth: usize,
) -> Result<(), ImageError> {
    if depth > 8 {
        return Err(ImageError::archive(
            dir,
            format!("manifest {} nests indexes too deep", d.digest),
        ));
    }
    if !seen.insert(d.digest.clone()) {
        return Ok(());
    }
    let source = dir
        .join("blobs")
        .join(d.digest.algorithm().name())
        .join(d.digest.hex());
    let meta = fs_err::symlink_metadata(&source)?;
    if !meta.is_file() {
        return Err(ImageError::archive(
            &source,
            "is not a regular file (a symlink?); refusing it",
        ));
    }
    if meta.len() != d.size {
        return Err(ImageError::SizeMismatch {
            digest: d.digest.clone(),
            expected: d.size,
            actual: meta.len(),
        });
    }
    if store.blobs().size(&d.digest)? != Some(d.size) {
        let mut writer = store.blobs().writer(d.digest.algorithm())?;
        io::copy(&mut fs_err::File::open(&source)?, &mut writer)?;
        writer
            .commit(Some(&d.digest))
            .map_err(|e| mismatch(dir, &source.display().to_string(), e))?;
    }
    if is_manifest {
        let (_, refs) = store.read_manifest(d)?;
        match refs.kind {
            ManifestKind::Image => {
                for blob in &refs.blobs {
                    copy_from_dir(store, dir, blob, false, seen, depth + 1)?;
                }
            }
            ManifestKind::Index => {
                for child in &refs.manifests {
                    copy_from_dir(store, dir, child, true, seen, depth + 1)?;
                }
            }
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveItem {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker_archive(
    store: &ImageStore,
    path: &Path,
    name: Option<&str>,
    compression: Compression,
    scan: &Scan,
) -> Result<Vec<Imported>, ImageError> {
    let items: Vec<DockerArchiveItem> = from_json(&scan.json["manifest.json"], || {
        format!("{}: manifest.json", path.display())
    })?;
    if items.is_empty() {
        return Err(ImageError::archive(path, "manifest.json lists no images"));
    }
    if name.is_some() && items.len() > 1 {
        return Err(ImageError::archive(
            path,
            format!(
                "manifest.json lists {} images; a name can only be given to one",
                items.len()
            ),
        ));
    }
    let mut configs = HashMap::new();
    let mut layers = HashMap::new();
    for item in &items {
        let config = scan.resolve(path, &item.config)?;
        let size = scan.entries.get(&config).map_or(0, |e| e.1);
        if size > MAX_JSON_SIZE {
            return Err(ImageError::archive(
                path,
                format!("config `{config}` has {size} bytes, more than the {MAX_JSON_SIZE}-byte limit"),
            ));
        }
        configs.insert(config, None::<Vec<u8>>);
        for layer in &item.layers {
            layers.insert(scan.resolve(path, layer)?, None::<StoredLayer>);
        }
    }
    // Second pass: stream the configs and layers.
    let mut reader = open_tar(path)?;
    while let Some(entry) = reader.next_entry().map_err(|e| tar_err(path, e))? {
        let entry_path = entry_name(&entry.name).map_err(|r| ImageError::archive(path, r))?;
        if let Some(slot) = configs.get_mut(&entry_path) {
            let mut bytes = Vec::new();
            reader
                .content()
                .take(MAX_JSON_SIZE)
                .read_to_end(&mut bytes)
                .map_err(|e| read_err(path, &entry_path, e))?;
            *slot = Some(bytes);
        } else if let Some(slot) = layers.get_mut(&entry_path) {
            let mut content = reader.content();
            let (_, mut reader) = decompress(&mut content).map_err(|e| read_err(path, &entry_path, e))?;
            let mut writer = LayerWriter::new(store.blobs(), compression)?;
            io::copy(&mut reader, &mut writer)
                .map_err(|e| ImageError::archive(path, format!("cannot read layer `{entry_path}`: {e}")))?;
            *slot = Some(writer.finish()?);
        }
    }
    let mut out = Vec::new();
    for item in &items {
        let config_name = scan.resolve(path, &item.config)?;
        let config = configs
            .get(&config_name)
            .and_then(Clone::clone)
            .ok_or_else(|| ImageError::archive(path, format!("config `{config_name}` could not be read")))?;
        let config_digest = Algorithm::Sha256.digest(&config);
        let stem = config_name.rsplit('/').next().unwrap_or(&config_name);
        let stem = stem.strip_suffix(".json").unwrap_or(stem);
        if let Ok(named) = Digest::new(Algorithm::Sha256, stem)
            && named != config_digest
        {
            return Err(ImageError::archive(
                path,
                format!("config `{config_name}` has digest {config_digest}, its name says {named}"),
            ));
        }
        let what = || format!("{}: config `{config_name}`", path.display());
        let rootfs: ConfigRootfs = from_json(&config, what)?;
        let mut stored = Vec::new();
        for layer in &item.layers {
            let resolved = scan.resolve(path, layer)?;
            let layer = layers
                .get(&resolved)
                .and_then(Clone::clone)
                .ok_or_else(|| ImageError::archive(path, format!("layer `{resolved}` could not be read")))?;
            stored.push(layer);
        }
        if rootfs.rootfs.diff_ids.len() != stored.len() {
            return Err(ImageError::archive(
                path,
                format!(
                    "config `{config_name}` lists {} layers, manifest.json {}",
                    rootfs.rootfs.diff_ids.len(),
                    stored.len()
                ),
            ));
        }
        for (index, (expected, layer)) in rootfs.rootfs.diff_ids.iter().zip(&stored).enumerate() {
            if *expected != layer.diff_id {
                return Err(ImageError::DiffIdMismatch {
                    what: path.display().to_string(),
                    index,
                    expected: expected.clone(),
                    actual: layer.diff_id.clone(),
                });
            }
        }
        let descriptor = store_image(store, &config, &stored)?;
        let names = match (name, &item.repo_tags) {
            (Some(n), _) => vec![n.to_owned()],
            (None, Some(tags)) if !tags.is_empty() => {
                tags.iter().map(|t| normalize_name(t)).collect::<Result<_, _>>()?
            }
            _ => {
                return Err(ImageError::NeedsName {
                    path: path.to_owned(),
                    reason: format!("image {config_digest} has no RepoTags"),
                });
            }
        };
        for image_name in names {
            store.set_ref(&image_name, &descriptor)?;
            out.push(Imported {
                name: image_name,
                descriptor: descriptor.clone(),
                format: SourceFormat::DockerArchive,
            });
        }
    }
    Ok(out)
}

fn descriptor(media_type: &str, digest: Digest, size: usize) -> Descriptor {
    Descriptor {
        media_type: Some(media_type.to_owned()),
        digest,
        size: size as u64,
        urls: None,
        artifact_type: None,
        annotations: None,
    }
}

/// Stores a config and an OCI manifest for stored layers; returns the manifest's descriptor.
pub fn store_image(
    store: &ImageStore,
    config: &[u8],
    layers: &[StoredLayer],
) -> Result<Descriptor, ImageError> {
    let config_digest = store.blobs().put(Algorithm::Sha256, config, None)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(mt::OCI_MANIFEST.to_owned()),
        config: descriptor(mt::OCI_CONFIG, config_digest, config.len()),
        layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
        annotations: None,
    };
    let bytes = to_json(&manifest);
    let digest = store.blobs().put(Algorithm::Sha256, &bytes, None)?;
    Ok(descriptor(mt::OCI_MANIFEST, digest, bytes.len()))
}

/// The config kiln gives a root filesystem imported as a base image.
fn rootfs_config(diff_id: &Digest) -> Vec<u8> {
    let (os, arch) = host_platform();
    let config = serde_json::json!({
        "architecture": arch,
        "os": os,
        "created": "1970-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "kiln image import"}],
    });
    to_json(&config)
}

fn single_layer(
    store: &ImageStore,
    path: &Path,
    name: Option<&str>,
    layer: StoredLayer,
    format: SourceFormat,
) -> Result<Vec<Imported>, ImageError> {
    let Some(name) = name else {
        return Err(ImageError::NeedsName {
            path: path.to_owned(),
            reason: "a root filesystem has no image name".to_owned(),
        });
    };
    let config = rootfs_config(&layer.diff_id);
    let descriptor = store_image(store, &config, &[layer])?;
    store.set_ref(name, &descriptor)?;
    Ok(vec![Imported {
        name: name.to_owned(),
        descriptor,
        format,
    }])
}

fn import_rootfs_tar(
    store: &ImageStore,
    path: &Path,
    name: Option<&str>,
    compression: Compression,
) -> Result<Vec<Imported>, ImageError> {
    if name.is_none() {
        return Err(ImageError::NeedsName {
            path: path.to_owned(),
            reason: "a root filesystem tar (no manifest.json, no oci-layout) has no image name".to_owned(),
        });
    }
    let file = fs_err::File::open(path)?;
    let (_, reader) = decompress(BufReader::with_capacity(1 << 20, file))?;
    let mut tee = Tee {
        inner: reader,
        sink: LayerWriter::new(store.blobs(), compression)?,
        write_error: None,
    };
    // Checked as FROM will unpack it, while it is stored; the bytes after the end of the archive
    // (the second zero block, record padding) are part of the layer too.
    let checked = check_layer(&mut tee, &LayerLimits::default())
        .map_err(|e| ImageError::archive(path, e.to_string()))
        .and_then(|_| io::copy(&mut tee, &mut io::sink()).map_err(ImageError::from));
    if let Some(e) = tee.write_error.take() {
        return Err(e.into());
    }
    checked?;
    let layer = tee.sink.finish()?;
    single_layer(store, path, name, layer, SourceFormat::RootfsTar)
}

/// Reads `inner` and writes what it read into `sink`; a write error is kept for the caller (the
/// reader sees a failed read).
struct Tee<R, W> {
    inner: R,
    sink: W,
    write_error: Option<io::Error>,
}

impl<R: Read, W: io::Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.sink.write_all(&buf[..n]) {
            let kind = e.kind();
            self.write_error = Some(e);
            return Err(io::Error::new(kind, "the layer could not be stored"));
        }
        Ok(n)
    }
}

fn import_rootfs_dir(
    store: &ImageStore,
    dir: &Path,
    name: Option<&str>,
    compression: Compression,
) -> Result<Vec<Imported>, ImageError> {
    if name.is_none() {
        return Err(ImageError::NeedsName {
            path: dir.to_owned(),
            reason: "a root filesystem folder has no image name".to_owned(),
        });
    }
    let writer = LayerWriter::new(store.blobs(), compression)?;
    let mut builder = tar::Builder::new(writer);
    builder.follow_symlinks(false);
    let mut links = BTreeMap::new();
    append_tree(&mut builder, dir, Path::new(""), &mut links)?;
    let layer = builder.into_inner()?.finish()?;
    single_layer(store, dir, name, layer, SourceFormat::RootfsDir)
}

/// Appends `root/rel`'s children to the tar, sorted by name, owners and modes kept, times set to 0.
fn append_tree<W: io::Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    links: &mut BTreeMap<(u64, u64), PathBuf>,
) -> Result<(), ImageError> {
    use std::os::unix::fs::MetadataExt;
    let mut names: Vec<_> = fs_err::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let rel_path = rel.join(&name);
        let full = root.join(&rel_path);
        let meta = fs_err::symlink_metadata(&full)?;
        let file_type = meta.file_type();
        if std::os::unix::fs::FileTypeExt::is_socket(&file_type) {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_mtime(0);
        let io_err = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot add {} to the layer: {e}", full.display()),
            )
        };
        if file_type.is_dir() {
            header.set_size(0);
            builder
                .append_data(&mut header, &rel_path, io::empty())
                .map_err(io_err)?;
            append_tree(builder, root, &rel_path, links)?;
        } else if file_type.is_symlink() {
            let target = fs_err::read_link(&full)?;
            builder
                .append_link(&mut header, &rel_path, &target)
                .map_err(io_err)?;
        } else if file_type.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    builder
                        .append_link(&mut header, &rel_path, first)
                        .map_err(io_err)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), rel_path.clone());
            }
            let file = fs_err::File::open(&full)?;
            builder
                .append_data(&mut header, &rel_path, file)
                .map_err(io_err)?;
        } else {
            // Devices and fifos: the header carries everything.
            header.set_size(0);
            builder
                .append_data(&mut header, &rel_path, io::empty())
                .map_err(io_err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root filesystem tar of `entries` (name, type, mode field as written), device fields NUL.
    fn rootfs_tar(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, mode) in entries {
            out.extend(crate::tar_reader::test_block(
                name.as_bytes(),
                *kind,
                &[(100..108, mode)],
            ));
        }
        // End blocks and record padding, as tar writes them: part of the layer too.
        out.resize(10240, 0);
        out
    }

    #[test]
    fn regression_rootfs_tar_import_checks_headers_as_unpack_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("store")).unwrap();
        let options = ImportOptions {
            name: Some("rootfs:1".into()),
            ..ImportOptions::default()
        };
        // NUL device fields on a folder and a file: imported, the layer byte for byte.
        let good = rootfs_tar(&[("./", b'5', b"0000755\0"), ("./etc", b'0', b"0000644\0")]);
        fs_err::write(dir.path().join("good.tar"), &good).unwrap();
        let imported = import(&store, &dir.path().join("good.tar"), &options).unwrap();
        assert_eq!(imported[0].format, SourceFormat::RootfsTar);
        let layer = &store.resolve(&imported[0].descriptor).unwrap().manifest.layers[0];
        let blob = store.blobs().read_verified(&layer.digest).unwrap().unwrap();
        let (_, mut plain) = decompress(&blob[..]).unwrap();
        let mut bytes = Vec::new();
        plain.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, good);
        // A mode field that is not a number: refused naming the entry, no image named.
        let bad = rootfs_tar(&[("./", b'5', b"0000755\0"), ("./etc/shadow", b'0', b"rw-r--r\0")]);
        fs_err::write(dir.path().join("bad.tar"), &bad).unwrap();
        let options = ImportOptions {
            name: Some("rootfs:bad".into()),
            ..ImportOptions::default()
        };
        let err = import(&store, &dir.path().join("bad.tar"), &options)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"./etc/shadow\": bad mode field \"rw-r--r\\0\""),
            "{err}"
        );
        let names: Vec<String> = store.refs().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["rootfs:1"]);
    }

    #[test]
    fn entry_names_are_normalized_and_escapes_refused() {
        assert_eq!(entry_name(b"./a//b/").unwrap(), "a/b");
        assert!(entry_name(b"/etc/passwd").unwrap_err().contains("absolute"));
        assert!(entry_name(b"a/../../x").unwrap_err().contains(".."));
    }
}
