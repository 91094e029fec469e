//! Content-addressed message bodies in object storage.
//!
//! [`BlobStore`] wraps an `object_store` backend: a local directory
//! (`file:///path`) by default, any S3-compatible service (`s3://bucket`) in
//! production; the same code path serves both. A body is stored under
//! `blobs/<sha256 hex>`, so every recipient of a message, and every message with
//! the same bytes, shares one object.
//!
//! [`BlobWriter`] bounds memory per in-flight message: bytes are hashed as they
//! arrive and kept in memory only up to the inline limit; a larger body streams
//! to a temporary key by multipart upload and is then moved to its content key.
//! An object becomes visible under its content key only when complete.
//!
//! This crate knows nothing of mail: no protocol, database or queue code.

#![forbid(unsafe_code)]

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use mailfleet_runtime::Config;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart,
};
use sha2::{Digest, Sha256};

/// Size of one multipart part; S3 needs at least 5 MiB for all but the last.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Octets read from a local file per blocking read when streaming a body.
/// object_store's own file stream reads 8 KiB per blocking task, which made
/// streaming a 40 MiB body cost seconds.
const FILE_CHUNK: usize = 256 * 1024;

/// The most a [`BodyReader::read`] puts into its buffer from a local store:
/// a caller that gives the buffer this capacity (or the body's size, if
/// smaller) up front has it allocated on its own thread, never on the
/// blocking pool.
pub const READ_CHUNK: usize = FILE_CHUNK;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid blob store configuration: {0}")]
    Config(String),
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("invalid blob id {0:?}")]
    InvalidId(String),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("reading a stored body: {0}")]
    Read(#[from] std::io::Error),
}

impl BlobError {
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            BlobError::NotFound(_) | BlobError::Store(object_store::Error::NotFound { .. })
        )
    }

    /// Whether trying again later may succeed (the store was unreachable or
    /// overloaded), as opposed to a request that can never succeed.
    pub fn is_transient(&self) -> bool {
        // A local read that failed (a disk error, a file cut short) may
        // succeed when tried again.
        matches!(self, BlobError::Read(_))
            || matches!(self, BlobError::Store(e) if !matches!(
                e,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
            ))
    }
}

/// A stored body: its content hash and length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRef {
    /// sha256 of the bytes, lower-case hex.
    pub id: String,
    pub size: u64,
}

/// Handle to the object store holding message bodies. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    inline_limit: usize,
    /// The directory of a `file://` store, for [`BlobStore::stream`]'s
    /// fast path.
    local_root: Option<std::path::PathBuf>,
}

impl BlobStore {
    /// Builds the store named by `config.blob_url`: `file:///abs/path`,
    /// `file://relative/path`, or `s3://bucket[/ignored]` with the `s3_*`
    /// settings.
    pub fn from_config(config: &Config) -> Result<Self, BlobError> {
        let url = config.blob_url.trim();
        let mut local_root = None;
        let store: Arc<dyn ObjectStore> = if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(BlobError::Config("file:// needs a directory".into()));
            }
            std::fs::create_dir_all(path).map_err(|e| {
                BlobError::Config(format!("cannot create blob directory {path}: {e}"))
            })?;
            local_root = Some(std::fs::canonicalize(path).map_err(|e| {
                BlobError::Config(format!("cannot resolve blob directory {path}: {e}"))
            })?);
            // A body is on disk before the row that names it is committed
            // (Postgres fsyncs that), as S3 has it before it answers a PUT:
            // without the fsync, a machine crash could leave a message row
            // whose body never reached the disk.
            Arc::new(
                LocalFileSystem::new_with_prefix(path)?
                    .with_automatic_cleanup(true)
                    .with_fsync(true),
            )
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let bucket = rest.split('/').next().unwrap_or_default();
            if bucket.is_empty() {
                return Err(BlobError::Config("s3:// needs a bucket name".into()));
            }
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(&config.s3_region)
                .with_allow_http(config.s3_allow_http);
            if !config.s3_endpoint.is_empty() {
                // Self-hosted S3 servers expect path-style requests.
                b = b
                    .with_endpoint(&config.s3_endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            if !config.s3_access_key.is_empty() {
                b = b
                    .with_access_key_id(config.s3_access_key.expose())
                    .with_secret_access_key(config.s3_secret_key.expose());
            }
            Arc::new(b.build()?)
        } else {
            return Err(BlobError::Config(format!(
                "MAILFLEET_BLOB_URL must start with file:// or s3://, got {url:?}"
            )));
        };
        let mut blobs = Self::new(store, config.blob_inline_limit);
        blobs.local_root = local_root;
        Ok(blobs)
    }

    /// Wraps any object store (tests use an in-memory one).
    pub fn new(store: Arc<dyn ObjectStore>, inline_limit: usize) -> Self {
        Self {
            store,
            inline_limit: inline_limit.max(1),
            local_root: None,
        }
    }

    /// Starts storing a new body.
    pub fn writer(&self) -> BlobWriter {
        BlobWriter {
            store: self.clone(),
            hasher: Sha256::new(),
            size: 0,
            state: WriterState::Inline(BytesMut::new()),
        }
    }

    /// The whole body. Only for bodies known to be small enough; use
    /// [`BlobStore::stream`] otherwise.
    pub async fn get(&self, id: &str) -> Result<Bytes, BlobError> {
        let path = content_path(id)?;
        match self.store.get(&path).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(id.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// A byte range of the body.
    pub async fn get_range(&self, id: &str, range: Range<u64>) -> Result<Bytes, BlobError> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        let path = content_path(id)?;
        match self.store.get_range(&path, range).await {
            Ok(b) => Ok(b),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(id.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// The body (or a range of it) as a stream of chunks, never held whole.
    pub async fn stream(
        &self,
        id: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        if let Some(r) = &range
            && r.start >= r.end
        {
            return Ok(futures::stream::empty().boxed());
        }
        let path = content_path(id)?;
        if let (Some(root), None) = (&self.local_root, &range) {
            return local_stream(root.join(path.as_ref()), id).await;
        }
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        match self.store.get_opts(&path, options).await {
            Ok(r) => Ok(match r.payload {
                GetResultPayload::File(file, _) => file_stream(file, r.range),
                GetResultPayload::Stream(s) => s.map(|c| c.map_err(BlobError::from)).boxed(),
            }),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(id.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// The whole body, read chunk by chunk into a buffer the caller owns
    /// and reuses (see [`BodyReader`]). Opens nothing yet: a missing body
    /// shows at the first read.
    pub fn reader(&self, id: &str) -> Result<BodyReader, BlobError> {
        let path = content_path(id)?;
        let source = match &self.local_root {
            Some(root) => Source::Local {
                path: root.join(path.as_ref()),
                file: None,
                remaining: 0,
            },
            None => Source::Store {
                store: self.store.clone(),
                path,
                stream: None,
            },
        };
        Ok(BodyReader {
            id: id.into(),
            source,
            done: false,
        })
    }

    /// The size of a stored body, or `None` if there is none.
    pub async fn size(&self, id: &str) -> Result<Option<u64>, BlobError> {
        match self.store.head(&content_path(id)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete(&self, id: &str) -> Result<(), BlobError> {
        match self.store.delete(&content_path(id)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A whole body of a `file://` store: opened, measured and read up to its
/// first [`FILE_CHUNK`] in one blocking task, so a body of that size or
/// less costs one hand-off to the blocking pool (object_store's `get` takes
/// one to open the file and another to read it, and POP3 reads several
/// bodies per session).
async fn local_stream(
    file_path: std::path::PathBuf,
    id: &str,
) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
    let opened = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&file_path)?;
        let len = file.metadata()?.len();
        let first = usize::try_from(len).unwrap_or(usize::MAX).min(FILE_CHUNK);
        let mut chunk = vec![0; first];
        file.read_exact(&mut chunk)?;
        Ok::<_, std::io::Error>((file, Bytes::from(chunk), first as u64..len))
    })
    .await
    .map_err(std::io::Error::other)?;
    let (file, first, rest) = match opened {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BlobError::NotFound(id.into()));
        }
        Err(e) => return Err(e.into()),
    };
    let first = futures::stream::once(async move { Ok(first) });
    Ok(first.chain(file_stream(file, rest)).boxed())
}

/// A body read into the caller's buffer, [`READ_CHUNK`] octets at most per
/// read. From a `file://` store the buffer itself goes to the blocking pool
/// and back, so the pool's threads allocate nothing: with chunks allocated
/// there and freed on the reader's thread, a thread-caching allocator
/// (mimalloc, which the `mailfleet` binary uses) kept freed chunks in every
/// pool thread's heap, and a 50 MB body grew the reader's RSS by tens of
/// MiB. One reused buffer per reader's owner also saves an allocation and
/// its zeroing per chunk.
pub struct BodyReader {
    id: Box<str>,
    source: Source,
    done: bool,
}

enum Source {
    /// `file` is opened by the first read, which also reads the first
    /// chunk (one hand-off to the blocking pool for a body that fits in
    /// one); `remaining` octets follow.
    Local {
        path: std::path::PathBuf,
        file: Option<std::fs::File>,
        remaining: u64,
    },
    Store {
        store: Arc<dyn ObjectStore>,
        path: Path,
        stream: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    },
}

impl BodyReader {
    /// Replaces `buf`'s contents with the next chunk of the body (its
    /// previous contents are overwritten, not read); false (and `buf`
    /// empty) once the body has been read. `buf`'s capacity is
    /// kept and reused: give it [`READ_CHUNK`] (or the body's size, if
    /// smaller); from another store it grows to the store's chunk size.
    pub async fn read(&mut self, buf: &mut Vec<u8>) -> Result<bool, BlobError> {
        if self.done {
            buf.clear();
            return Ok(false);
        }
        let more = match &mut self.source {
            // All read: no hand-off to the blocking pool to learn that.
            Source::Local {
                file: Some(_),
                remaining: 0,
                ..
            } => {
                buf.clear();
                false
            }
            Source::Local {
                path,
                file,
                remaining,
            } => {
                let opened = file.take();
                let taken = std::mem::take(path);
                let mut owned = std::mem::take(buf);
                let left = *remaining;
                let result = tokio::task::spawn_blocking(move || {
                    let read = read_local(opened, &taken, left, &mut owned);
                    (read, owned, taken)
                })
                .await;
                let (read, owned, back) = result.map_err(std::io::Error::other)?;
                *buf = owned;
                *path = back;
                match read {
                    Ok((f, left)) => {
                        *file = Some(f);
                        *remaining = left;
                        !buf.is_empty() || left > 0
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(BlobError::NotFound(self.id.to_string()));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Source::Store {
                store,
                path,
                stream,
            } => {
                buf.clear();
                if stream.is_none() {
                    let got = match store.get(path).await {
                        Ok(r) => r,
                        Err(object_store::Error::NotFound { .. }) => {
                            return Err(BlobError::NotFound(self.id.to_string()));
                        }
                        Err(e) => return Err(e.into()),
                    };
                    *stream = Some(got.into_stream());
                }
                match stream.as_mut() {
                    Some(s) => match s.next().await.transpose()? {
                        Some(chunk) => {
                            buf.extend_from_slice(&chunk);
                            true
                        }
                        None => false,
                    },
                    None => false,
                }
            }
        };
        if !more {
            self.done = true;
        }
        Ok(more)
    }
}

/// One blocking read of a local body into `buf`: opens it first when
/// `file` is `None` (then `remaining` is its length). Returns the file and
/// the octets left after this chunk.
fn read_local(
    file: Option<std::fs::File>,
    path: &std::path::Path,
    remaining: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<(std::fs::File, u64)> {
    use std::io::Read;
    let (mut file, remaining) = match file {
        Some(f) => (f, remaining),
        None => {
            let f = std::fs::File::open(path)?;
            let len = f.metadata()?.len();
            (f, len)
        }
    };
    let n = usize::try_from(remaining)
        .unwrap_or(usize::MAX)
        .min(FILE_CHUNK);
    // Zeroes only octets the buffer never held (none after the first
    // chunk); one read call for the whole chunk.
    buf.resize(n, 0);
    file.read_exact(buf)?;
    Ok((file, remaining - n as u64))
}

/// `range` of a local file, [`FILE_CHUNK`] octets per blocking read.
fn file_stream(
    file: std::fs::File,
    range: Range<u64>,
) -> BoxStream<'static, Result<Bytes, BlobError>> {
    futures::stream::try_unfold((file, range), |(mut file, range)| async move {
        if range.start >= range.end {
            return Ok(None);
        }
        let len = usize::try_from(range.end - range.start)
            .unwrap_or(usize::MAX)
            .min(FILE_CHUNK);
        let start = range.start;
        let (file, chunk) = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek, SeekFrom};
            let mut chunk = vec![0; len];
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut chunk)?;
            Ok::<_, std::io::Error>((file, Bytes::from(chunk)))
        })
        .await
        .map_err(std::io::Error::other)??;
        let next = range.start + chunk.len() as u64..range.end;
        Ok(Some((chunk, (file, next))))
    })
    .boxed()
}

fn content_path(id: &str) -> Result<Path, BlobError> {
    if id.len() != 64 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(BlobError::InvalidId(id.into()));
    }
    Ok(Path::from(format!("blobs/{id}")))
}

enum WriterState {
    /// Below the inline limit: bytes kept for one PUT.
    Inline(BytesMut),
    /// Above it: parts uploading to a temporary key; `sent` bytes handed
    /// to the upload so far.
    Multipart {
        upload: WriteMultipart,
        tmp: Path,
        sent: u64,
    },
}

/// Accumulates one body; see the crate docs for the memory bound.
pub struct BlobWriter {
    store: BlobStore,
    hasher: Sha256,
    size: u64,
    state: WriterState,
}

impl BlobWriter {
    /// Appends bytes. Above the inline limit this waits for upload capacity,
    /// so a fast sender is slowed to the store's pace instead of buffering.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        match &mut self.state {
            WriterState::Inline(buf) => {
                if buf.len() + data.len() <= self.store.inline_limit {
                    buf.extend_from_slice(data);
                    return Ok(());
                }
                let tmp = Path::from(format!("tmp/{}", uuid::Uuid::now_v7()));
                let upload = self.store.store.put_multipart(&tmp).await?;
                let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                upload.write(buf);
                upload.write(data);
                let sent = (buf.len() + data.len()) as u64;
                self.state = WriterState::Multipart { upload, tmp, sent };
            }
            WriterState::Multipart { upload, sent, .. } => {
                upload.wait_for_capacity(2).await?;
                upload.write(data);
                *sent += data.len() as u64;
            }
        }
        Ok(())
    }

    /// Bytes this writer holds in memory now: the inline buffer, or the
    /// part being filled. Parts already uploading (at most two, see
    /// [`BlobWriter::write`]) are not counted.
    pub fn buffered(&self) -> usize {
        match &self.state {
            WriterState::Inline(buf) => buf.capacity(),
            WriterState::Multipart { sent, .. } => (*sent % PART_SIZE as u64) as usize,
        }
    }

    /// Stores the body under its content key and returns its reference.
    pub async fn finish(self) -> Result<BlobRef, BlobError> {
        let id = hex::encode(self.hasher.finalize());
        let path = content_path(&id)?;
        match self.state {
            WriterState::Inline(buf) => {
                self.store
                    .store
                    .put(&path, PutPayload::from_bytes(buf.freeze()))
                    .await?;
            }
            WriterState::Multipart { upload, tmp, .. } => {
                upload.finish().await?;
                // Same content, same key: overwriting an existing copy is harmless.
                self.store.store.rename(&tmp, &path).await?;
            }
        }
        Ok(BlobRef {
            id,
            size: self.size,
        })
    }

    /// Drops a body that will not be used, cleaning up a started upload.
    pub async fn abort(self) {
        if let WriterState::Multipart { upload, tmp, .. } = self.state
            && let Err(error) = upload.abort().await
        {
            tracing::warn!(%error, %tmp, "Failed to abort a multipart upload.");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;

    fn store(limit: usize) -> BlobStore {
        BlobStore::new(Arc::new(InMemory::new()), limit)
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[tokio::test]
    async fn small_body_round_trips_under_its_hash() {
        let s = store(1024);
        let mut w = s.writer();
        w.write(b"Subject: hi\r\n\r\n").await.unwrap();
        w.write(b"body\r\n").await.unwrap();
        let r = w.finish().await.unwrap();
        let all = b"Subject: hi\r\n\r\nbody\r\n";
        assert_eq!(r.id, sha(all));
        assert_eq!(r.size, all.len() as u64);
        assert_eq!(s.get(&r.id).await.unwrap().as_ref(), all);
        assert_eq!(s.get_range(&r.id, 9..11).await.unwrap().as_ref(), b"hi");
        assert_eq!(s.size(&r.id).await.unwrap(), Some(all.len() as u64));
    }

    #[tokio::test]
    async fn large_body_goes_through_multipart_and_streams_back() {
        let s = store(64 * 1024);
        let chunk: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let mut w = s.writer();
        let mut all = Vec::new();
        for _ in 0..100 {
            w.write(&chunk).await.unwrap();
            all.extend_from_slice(&chunk);
        }
        let r = w.finish().await.unwrap();
        assert_eq!(r.id, sha(&all));
        let mut streamed = Vec::new();
        let mut st = s.stream(&r.id, Some(5..9_000_005)).await.unwrap();
        while let Some(c) = st.next().await {
            streamed.extend_from_slice(&c.unwrap());
        }
        assert_eq!(streamed, all[5..9_000_005]);
    }

    #[tokio::test]
    async fn reader_of_another_store() {
        let s = store(16);
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let mut w = s.writer();
        w.write(&body).await.unwrap();
        let r = w.finish().await.unwrap();
        let (mut buf, mut got) = (Vec::new(), Vec::new());
        let mut reader = s.reader(&r.id).unwrap();
        while reader.read(&mut buf).await.unwrap() {
            got.extend_from_slice(&buf);
        }
        assert!(got == body, "read {} octets", got.len());
        let missing = s.reader(&sha(b"nothing")).unwrap().read(&mut buf).await;
        assert!(missing.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn missing_and_invalid_ids() {
        let s = store(16);
        let missing = sha(b"nothing");
        assert!(s.get(&missing).await.unwrap_err().is_not_found());
        assert_eq!(s.size(&missing).await.unwrap(), None);
        assert!(matches!(
            s.get("../etc/passwd").await,
            Err(BlobError::InvalidId(_))
        ));
    }

    #[tokio::test]
    async fn local_directory_store() {
        let dir = std::env::temp_dir().join(format!("mf-blob-{}", uuid::Uuid::now_v7()));
        let config = Config::load(vec![(
            "MAILFLEET_BLOB_URL".to_string(),
            format!("file://{}", dir.display()),
        )])
        .unwrap();
        let s = BlobStore::from_config(&config).unwrap();
        let mut w = s.writer();
        w.write(b"hello").await.unwrap();
        let r = w.finish().await.unwrap();
        assert!(dir.join("blobs").join(&r.id).exists());
        // A body over several read chunks streams back whole, and ranged.
        let big: Vec<u8> = (0..FILE_CHUNK * 3 + 17).map(|i| (i % 251) as u8).collect();
        let mut w = s.writer();
        w.write(&big).await.unwrap();
        let b = w.finish().await.unwrap();
        for (range, want) in [
            (None, &big[..]),
            (
                Some(5..FILE_CHUNK as u64 * 2 + 3),
                &big[5..FILE_CHUNK * 2 + 3],
            ),
        ] {
            let mut got = Vec::new();
            let mut st = s.stream(&b.id, range).await.unwrap();
            while let Some(c) = st.next().await {
                let c = c.unwrap();
                assert!(c.len() <= FILE_CHUNK);
                got.extend_from_slice(&c);
            }
            assert!(got == want, "streamed {} octets", got.len());
        }
        // A small body is one chunk; a missing one is "not found", also on
        // the local fast path.
        let chunks: Vec<Bytes> = s
            .stream(&r.id, None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(chunks, [Bytes::from_static(b"hello")]);
        // The reader gives the same octets through one reused buffer, which
        // never grows past the capacity it was given.
        let mut buf = Vec::with_capacity(READ_CHUNK);
        let mut reader = s.reader(&b.id).unwrap();
        let mut got = Vec::new();
        while reader.read(&mut buf).await.unwrap() {
            assert!(buf.capacity() == READ_CHUNK && !buf.is_empty());
            got.extend_from_slice(&buf);
        }
        assert!(got == big, "read {} octets", got.len());
        assert!(!reader.read(&mut buf).await.unwrap() && buf.is_empty());
        s.delete(&r.id).await.unwrap();
        assert_eq!(s.size(&r.id).await.unwrap(), None);
        match s.reader(&r.id).unwrap().read(&mut buf).await {
            Err(e) => assert!(e.is_not_found(), "{e}"),
            Ok(_) => panic!("a deleted body was read"),
        }
        match s.stream(&r.id, None).await {
            Err(e) => assert!(e.is_not_found(), "{e}"),
            Ok(_) => panic!("a deleted body streamed"),
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
