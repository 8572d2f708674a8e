//! Streams a context as a tar: one thread reads files ahead while the caller's thread writes headers and
//! feeds the sink (a hasher, a compressor), so reading and hashing overlap. The reader sends the contents
//! of all files back to back in full 1 MiB buffers (small files share a buffer), so a tree of many small
//! files costs a handful of thread hand-offs, not two per file; the consumer knows each file's size and
//! takes exactly that many bytes. Memory stays bounded by a small pool of buffers, whatever the context.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::context::{Context, Source};
use crate::error::TreeError;
use crate::tar_stream::TarWriter;

const BUFFER_SIZE: usize = 1 << 20;
const BUFFERS: usize = 4;

enum Chunk {
    /// A buffer and how many of its bytes are content.
    Data(Vec<u8>, usize),
    /// Reading failed; nothing follows.
    Failed(TreeError),
}

fn changed(image: &str, path: &Path, expected: u64, got: u64) -> TreeError {
    TreeError::ContextFile {
        image: image.to_owned(),
        path: path.to_owned(),
        message: format!("changed while being read (expected {expected} bytes, read {got}); try again"),
    }
}

/// Fills pooled buffers with the contents of every file entry, in order, and sends each full buffer.
struct Reader {
    chunks: SyncSender<Chunk>,
    free: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    filled: usize,
}

impl Reader {
    /// Sends the current buffer and takes a free one; `false` when the consumer is gone.
    fn flush(&mut self) -> bool {
        let Ok(next) = self.free.recv() else { return false };
        let full = std::mem::replace(&mut self.buf, next);
        let len = std::mem::take(&mut self.filled);
        self.chunks.send(Chunk::Data(full, len)).is_ok()
    }

    /// Appends one file; `Ok(false)` when the consumer is gone.
    fn file(&mut self, image: &str, path: &Path, size: u64) -> Result<bool, TreeError> {
        let mut file = std::fs::File::open(path).map_err(|e| TreeError::io(path, e))?;
        let mut total = 0u64;
        loop {
            if self.filled == self.buf.len() && !self.flush() {
                return Ok(false);
            }
            match file.read(&mut self.buf[self.filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    self.filled += n;
                    total += n as u64;
                    if total > size {
                        return Err(changed(image, path, size, total));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TreeError::io(path, e)),
            }
        }
        if total != size {
            return Err(changed(image, path, size, total));
        }
        Ok(true)
    }
}

fn read_ahead(ctx: &Context, chunks: SyncSender<Chunk>, free: Receiver<Vec<u8>>) {
    let Ok(buf) = free.recv() else { return };
    let mut reader = Reader {
        chunks,
        free,
        buf,
        filled: 0,
    };
    for entry in &ctx.entries {
        let Source::File { path, meta } = &entry.source else {
            continue;
        };
        match reader.file(&ctx.image, path, meta.size) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let _ = reader.chunks.send(Chunk::Failed(e));
                return;
            }
        }
    }
    if reader.filled > 0 {
        reader.flush();
    }
}

/// The consumer's view of the reader's byte stream.
struct Incoming {
    rx: Receiver<Chunk>,
    free: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    len: usize,
    pos: usize,
}

impl Incoming {
    /// Passes the next `n` bytes of the stream to `out`.
    fn copy_to<W: Write>(
        &mut self,
        mut n: u64,
        out: &mut TarWriter<W>,
        sink_error: &impl Fn(std::io::Error) -> TreeError,
    ) -> Result<(), TreeError> {
        while n > 0 {
            if self.pos == self.len {
                let spent = std::mem::take(&mut self.current);
                if !spent.is_empty() {
                    let _ = self.free.try_send(spent);
                }
                match self.rx.recv() {
                    Ok(Chunk::Data(buf, len)) => {
                        self.current = buf;
                        self.len = len;
                        self.pos = 0;
                    }
                    Ok(Chunk::Failed(e)) => return Err(e),
                    Err(_) => return Err(sink_error(std::io::Error::other("file reader stopped early"))),
                }
            }
            let take = (self.len - self.pos).min(usize::try_from(n).unwrap_or(usize::MAX));
            out.write_raw(&self.current[self.pos..self.pos + take])
                .map_err(sink_error)?;
            self.pos += take;
            n -= take as u64;
        }
        Ok(())
    }
}

/// Writes the context as a tar stream (taskgraph's header format, with the context's modes) into `sink`;
/// returns the sink and the number of bytes written.
pub fn write_tar<W: Write>(ctx: &Context, sink: W) -> Result<(W, u64), TreeError> {
    let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(BUFFERS);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(BUFFERS + 2);
    for _ in 0..BUFFERS {
        let _ = free_tx.send(vec![0; BUFFER_SIZE]);
    }
    std::thread::scope(|scope| {
        scope.spawn(|| read_ahead(ctx, chunk_tx, free_rx));
        // `consume` owns the channel ends, so an early error drops them and unblocks the reader.
        let incoming = Incoming {
            rx: chunk_rx,
            free: free_tx,
            current: Vec::new(),
            len: 0,
            pos: 0,
        };
        consume(ctx, sink, incoming)
    })
}

fn consume<W: Write>(ctx: &Context, sink: W, mut incoming: Incoming) -> Result<(W, u64), TreeError> {
    let mut tar = TarWriter::new(sink);
    let sink_error = |e: std::io::Error| TreeError::io(format!("<context stream of {}>", ctx.image), e);
    for entry in &ctx.entries {
        let mode = ctx.mode_of(entry);
        match &entry.source {
            Source::Bytes(bytes) => tar.append_bytes(&entry.name, mode, bytes).map_err(sink_error)?,
            Source::File { meta, .. } => {
                tar.start_file(&entry.name, mode, meta.size).map_err(sink_error)?;
                incoming.copy_to(meta.size, &mut tar, &sink_error)?;
                tar.end_file(meta.size).map_err(sink_error)?;
            }
        }
    }
    tar.finish().map_err(sink_error)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::context::Entry;
    use crate::fsmeta::FileMeta;
    use crate::model::HashMode;

    fn file_entry(dir: &Path, name: &str, content: &[u8]) -> Entry {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        let meta = FileMeta::from_metadata(&std::fs::metadata(&path).unwrap());
        Entry {
            name: name.to_owned(),
            source: Source::File { path, meta },
        }
    }

    #[test]
    fn many_small_and_some_large_files_stream_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut entries = Vec::new();
        let mut expected = TarWriter::new(Vec::new());
        for i in 0..300 {
            // Sizes around the buffer size make files straddle buffers.
            let size = if i % 50 == 7 { BUFFER_SIZE + 3 * i } else { i * 37 };
            let content: Vec<u8> = (0..size).map(|b| (b * 7 + i) as u8).collect();
            let name = format!("f{i:04}");
            entries.push(file_entry(dir.path(), &name, &content));
            expected.append_bytes(&name, 0o644, &content).unwrap();
        }
        entries.push(Entry {
            name: "zz".into(),
            source: Source::Bytes(Arc::new(b"generated".to_vec())),
        });
        expected.append_bytes("zz", 0o644, b"generated").unwrap();
        let ctx = Context {
            image: "t".into(),
            mode: HashMode::Native,
            entries,
            warnings: Vec::new(),
            run_task: None,
        };
        let (out, len) = write_tar(&ctx, Vec::new()).unwrap();
        let (want, want_len) = expected.finish().unwrap();
        assert_eq!(len, want_len);
        assert!(out == want, "streamed tar differs from the in-memory one");
    }

    #[test]
    fn a_file_that_grew_is_an_error_not_a_wrong_hash() {
        let dir = tempfile::tempdir().unwrap();
        let entry = file_entry(dir.path(), "a", b"short");
        std::fs::write(dir.path().join("a"), b"much longer now").unwrap();
        let ctx = Context {
            image: "t".into(),
            mode: HashMode::Native,
            entries: vec![entry],
            warnings: Vec::new(),
            run_task: None,
        };
        let err = write_tar(&ctx, Vec::new()).unwrap_err();
        assert!(err.to_string().contains("changed while being read"), "{err}");
    }
}
