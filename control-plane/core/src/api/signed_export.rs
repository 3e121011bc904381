//! Signed NDJSON exports in bounded memory.
//!
//! The signature header covers the whole body, so the body must be complete before the
//! response starts. Instead of holding it in memory, it is spooled page by page to an unnamed
//! temporary file (mode 0600, gone from the directory from the start, so nothing is left
//! behind on a crash, an error or a client that disconnects mid-download), signed by reading
//! the file back, then streamed from the file. Memory stays at about one page plus a read
//! buffer, whatever the size of the export.

use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, ErrorCode};
use crate::signing::ExportSigner;

/// Header carrying the hex ed25519 signature of an export body.
pub(super) const SIGNATURE_HEADER: &str = "x-agent-bom-signature";

/// How much of the file one chunk of the response body carries.
const STREAM_CHUNK: usize = 64 * 1024;
/// How many encoded bytes are buffered before they are written to the file.
const WRITE_CHUNK: usize = 1024 * 1024;

/// An export being written: NDJSON lines go to the spool file one page at a time.
pub(super) struct SignedExport {
    file: std::fs::File,
    /// Lines encoded and not yet written; cleared (capacity kept) after each write.
    page: Vec<u8>,
    /// The most bytes the buffer has held (what the spooling costs, for tests).
    largest_page: usize,
    len: u64,
}

impl SignedExport {
    /// A new, empty export spooled in the OS temporary directory.
    pub(super) async fn new() -> Result<Self, ApiError> {
        let file = tokio::task::spawn_blocking(tempfile::tempfile)
            .await
            .map_err(|_| internal("cannot create the export file"))?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot create the export spool file");
                internal("cannot create the export file")
            })?;
        Ok(Self {
            file,
            page: Vec::new(),
            largest_page: 0,
            len: 0,
        })
    }

    /// Append `items`, one line each: encoded into a buffer that goes to the file whenever it
    /// reaches [`WRITE_CHUNK`], so a page of large items is not copied whole into memory.
    pub(super) async fn push_page<T: serde::Serialize>(
        &mut self,
        items: &[T],
    ) -> Result<(), ApiError> {
        for item in items {
            serde_json::to_writer(&mut self.page, item)
                .map_err(|_| internal("cannot encode the export"))?;
            self.page.push(b'\n');
            if self.page.len() >= WRITE_CHUNK {
                self.flush().await?;
            }
        }
        self.flush().await
    }

    /// Write the buffer to the file and clear it (its capacity is kept for the next lines).
    async fn flush(&mut self) -> Result<(), ApiError> {
        if self.page.is_empty() {
            return Ok(());
        }
        self.largest_page = self.largest_page.max(self.page.len());
        let mut file = self
            .file
            .try_clone()
            .map_err(|e| spool_error(&e, "cannot write the export file"))?;
        let buffer = std::mem::take(&mut self.page);
        let mut buffer =
            tokio::task::spawn_blocking(move || file.write_all(&buffer).map(|()| buffer))
                .await
                .map_err(|_| internal("cannot write the export file"))?
                .map_err(|e| spool_error(&e, "cannot write the export file"))?;
        self.len += buffer.len() as u64;
        buffer.clear();
        self.page = buffer;
        Ok(())
    }

    /// The most bytes the buffer has held so far.
    #[cfg(test)]
    fn largest_page(&self) -> usize {
        self.largest_page
    }

    /// Sign the spooled body and answer with it: the signature header, then the file streamed.
    pub(super) async fn into_response(
        self,
        signer: Arc<ExportSigner>,
    ) -> Result<Response, ApiError> {
        let Self { file, len, .. } = self;
        let (file, signature) = tokio::task::spawn_blocking(move || {
            let signature = signer.sign_file_hex(&file)?;
            (&file).seek(SeekFrom::Start(0))?;
            Ok::<_, std::io::Error>((file, signature))
        })
        .await
        .map_err(|_| internal("cannot sign the export"))?
        .map_err(|e| spool_error(&e, "cannot sign the export"))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(
            tokio::fs::File::from_std(file),
            STREAM_CHUNK,
        );
        let mut response = Body::from_stream(stream).into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Ok(v) = HeaderValue::from_str(&signature) {
            h.insert(SIGNATURE_HEADER, v);
        }
        Ok(response)
    }
}

fn internal(message: &'static str) -> ApiError {
    ApiError::new(ErrorCode::Internal, message)
}

/// A spool file failure: logged (no body content is in the error) and answered as internal.
fn spool_error(e: &std::io::Error, message: &'static str) -> ApiError {
    tracing::error!(error = %e, "{message}");
    internal(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::verify_hex;

    fn signer(dir: &std::path::Path) -> Arc<ExportSigner> {
        Arc::new(ExportSigner::load_or_create(dir).unwrap())
    }

    async fn body_of(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    /// Many pages of large lines: the writer holds one page at a time, never the export, and
    /// the streamed body is exactly the lines written, signed as a whole.
    #[tokio::test]
    async fn an_export_holds_one_page_in_memory_and_signs_the_whole_body() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer(dir.path());
        let mut export = SignedExport::new().await.unwrap();
        let line = "x".repeat(100_000);
        let mut expected = Vec::new();
        for page in 0..12 {
            let items: Vec<_> = (0..10)
                .map(|i| serde_json::json!({ "page": page, "item": i, "detail": line }))
                .collect();
            for item in &items {
                serde_json::to_writer(&mut expected, item).unwrap();
                expected.push(b'\n');
            }
            export.push_page(&items).await.unwrap();
        }
        // 12 pages of about 1 MB each: the buffer never held more than a write chunk and a line.
        assert!(expected.len() > 12_000_000);
        assert!(
            export.largest_page() < WRITE_CHUNK + 101_000,
            "the buffer took {} bytes",
            export.largest_page()
        );
        assert!(export.page.capacity() < 2 * WRITE_CHUNK + 202_000);

        let response = export.into_response(signer.clone()).await.unwrap();
        assert_eq!(
            response.headers()[header::CONTENT_LENGTH],
            expected.len().to_string().as_str()
        );
        let signature = response.headers()[SIGNATURE_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        let body = body_of(response).await;
        assert!(
            body == expected,
            "the streamed body differs from the lines written"
        );
        assert!(verify_hex(signer.public_hex(), &body, &signature));
        assert_eq!(signature, signer.sign_hex(&expected));
    }

    #[tokio::test]
    async fn an_empty_export_is_signed_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer(dir.path());
        let response = SignedExport::new()
            .await
            .unwrap()
            .into_response(signer.clone())
            .await
            .unwrap();
        let signature = response.headers()[SIGNATURE_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(body_of(response).await.is_empty());
        assert!(verify_hex(signer.public_hex(), b"", &signature));
    }
}
