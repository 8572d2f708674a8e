//! Streams a context as a tar: one thread reads files ahead while the caller's thread writes headers and
//! feeds the sink (a hasher, a compressor), so reading and hashing use both cores. Memory stays bounded by
//! a small pool of buffers, whatever the size of the context.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::context::{Context, Source};
use crate::error::TreeError;
use crate::tar_stream::TarWriter;

const BUFFER_SIZE: usize = 1 << 20;
const BUFFERS: usize = 6;

enum Chunk {
    /// A buffer and how many of its bytes are content (buffers keep their full size, so reuse never
    /// zero-fills them again).
    Data(Vec<u8>, usize),
    End,
    Failed(TreeError),
}

fn changed(image: &str, path: &Path, expected: u64, got: u64) -> TreeError {
    TreeError::ContextFile {
        image: image.to_owned(),
        path: path.to_owned(),
        message: format!("changed while being read (expected {expected} bytes, read {got}); try again"),
    }
}

/// Reads every file entry in order and sends its content in chunks, then `End`.
fn read_ahead(ctx: &Context, chunks: SyncSender<Chunk>, free: Receiver<Vec<u8>>) {
    // A buffer taken from the pool but not sent (the read hit end of file) is kept for the next read.
    let mut spare: Option<Vec<u8>> = None;
    for entry in &ctx.entries {
        let Source::File { path, meta } = &entry.source else {
            continue;
        };
        let result = (|| -> Result<(), TreeError> {
            let mut file = std::fs::File::open(path).map_err(|e| TreeError::io(path, e))?;
            let mut total = 0u64;
            loop {
                let mut buf = match spare.take() {
                    Some(buf) => buf,
                    // The consumer is gone (it failed): stop reading.
                    None => match free.recv() {
                        Ok(buf) => buf,
                        Err(_) => return Ok(()),
                    },
                };
                let mut filled = 0;
                while filled < buf.len() {
                    match file.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(TreeError::io(path, e)),
                    }
                }
                total += filled as u64;
                if total > meta.size {
                    return Err(changed(&ctx.image, path, meta.size, total));
                }
                if filled == 0 {
                    spare = Some(buf);
                    break;
                }
                if chunks.send(Chunk::Data(buf, filled)).is_err() {
                    return Ok(());
                }
            }
            if total != meta.size {
                return Err(changed(&ctx.image, path, meta.size, total));
            }
            Ok(())
        })();
        let message = match result {
            Ok(()) => Chunk::End,
            Err(e) => Chunk::Failed(e),
        };
        let failed = matches!(message, Chunk::Failed(_));
        if chunks.send(message).is_err() || failed {
            return;
        }
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
        consume(ctx, sink, chunk_rx, free_tx)
    })
}

fn consume<W: Write>(
    ctx: &Context,
    sink: W,
    chunk_rx: Receiver<Chunk>,
    free_tx: SyncSender<Vec<u8>>,
) -> Result<(W, u64), TreeError> {
    let mut tar = TarWriter::new(sink);
    let sink_error = |e: std::io::Error| TreeError::io(format!("<context stream of {}>", ctx.image), e);
    for entry in &ctx.entries {
        let mode = ctx.mode_of(entry);
        match &entry.source {
            Source::Bytes(bytes) => tar.append_bytes(&entry.name, mode, bytes).map_err(sink_error)?,
            Source::File { meta, .. } => {
                tar.start_file(&entry.name, mode, meta.size).map_err(sink_error)?;
                loop {
                    match chunk_rx.recv() {
                        Ok(Chunk::Data(buf, len)) => {
                            tar.write_raw(&buf[..len]).map_err(sink_error)?;
                            let _ = free_tx.try_send(buf);
                        }
                        Ok(Chunk::End) => break,
                        Ok(Chunk::Failed(e)) => return Err(e),
                        Err(_) => return Err(sink_error(std::io::Error::other("file reader stopped"))),
                    }
                }
                tar.end_file(meta.size).map_err(sink_error)?;
            }
        }
    }
    tar.finish().map_err(sink_error)
}
