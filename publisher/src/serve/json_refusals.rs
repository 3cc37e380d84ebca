//! hyper answers a request it cannot parse by itself, before any service sees it: a URI over
//! 65 534 bytes (the `http` crate's limit on a URI, fixed) gets 414, headers over its read
//! buffer 431, anything else malformed 400 — each with an empty body. [`JsonRefusals`] sits
//! between hyper and the socket and gives exactly those answers the API's JSON error body,
//! so every error a client sees reads the same.
//!
//! It recognises them by hyper's own bytes: a status line and `connection: close` and
//! `content-length: 0`, which no answer of the API has (every API error carries its JSON).
//! Should hyper ever write them differently, they pass through unchanged.

use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's automatic answers, up to the `date` line, and what the client is told instead.
const REFUSALS: [(&[u8], &str); 3] = [
    (
        b"HTTP/1.1 414 URI Too Long\r\n",
        "the URI is over 65534 bytes, more than the server reads",
    ),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "the request's headers are too large",
    ),
    (
        b"HTTP/1.1 400 Bad Request\r\n",
        "the request is not valid HTTP/1.1",
    ),
];

/// What follows the status line in each of hyper's automatic answers.
const EMPTY_CLOSE: &[u8] = b"connection: close\r\ncontent-length: 0\r\n";

/// A connection whose bare automatic refusals from hyper are rewritten with a JSON body; all
/// else passes through untouched.
pub struct JsonRefusals<T> {
    inner: T,
    /// A rewritten refusal being written: its remaining bytes, and how much of hyper's
    /// buffer that write stands for.
    rewriting: Option<(Bytes, usize)>,
}

impl<T> JsonRefusals<T> {
    /// Wraps a connection.
    pub fn new(inner: T) -> Self {
        JsonRefusals {
            inner,
            rewriting: None,
        }
    }
}

/// The JSON version of `head` when it is one of hyper's automatic refusals, whole.
fn rewrite(head: &[u8]) -> Option<Bytes> {
    let (status_line, message) = REFUSALS
        .iter()
        .find(|(status_line, _)| head.starts_with(status_line))?;
    let rest = head[status_line.len()..].strip_prefix(EMPTY_CLOSE)?;
    // The rest is the date line and the blank line ending the head, nothing more.
    let date = rest.strip_suffix(b"\r\n\r\n")?;
    if !date.starts_with(b"date: ") || date.contains(&b'\n') {
        return None;
    }
    let body = serde_json::json!({ "error": message }).to_string();
    let mut answer = Vec::new();
    answer.extend_from_slice(status_line);
    answer.extend_from_slice(
        format!(
            "connection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    answer.extend_from_slice(rest);
    answer.extend_from_slice(body.as_bytes());
    Some(Bytes::from(answer))
}

impl<T: AsyncWrite + Unpin> JsonRefusals<T> {
    /// Writes `buf`, or its JSON version when it is a refusal; on `Ready(Ok(n))`, `n` counts
    /// `buf`'s bytes, as hyper expects.
    fn write_head(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        whole: bool,
    ) -> Option<Poll<io::Result<usize>>> {
        if self.rewriting.is_none() {
            // A refusal is the only thing hyper writes on the connection at that point, so
            // it comes alone in one buffer.
            let answer = whole.then(|| rewrite(buf)).flatten()?;
            self.rewriting = Some((answer, buf.len()));
        }
        let (remaining, stands_for) = self.rewriting.as_mut()?;
        while !remaining.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, remaining) {
                Poll::Ready(Ok(0)) => {
                    return Some(Poll::Ready(Err(io::ErrorKind::WriteZero.into())));
                }
                Poll::Ready(Ok(n)) => remaining.advance(n),
                Poll::Ready(Err(e)) => return Some(Poll::Ready(Err(e))),
                Poll::Pending => return Some(Poll::Pending),
            }
        }
        let stands_for = *stands_for;
        self.rewriting = None;
        Some(Poll::Ready(Ok(stands_for)))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonRefusals<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(done) = this.write_head(cx, buf, true) {
            return done;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let first = bufs.iter().find(|b| !b.is_empty());
        if let Some(first) = first {
            let whole = bufs.iter().map(|b| b.len()).sum::<usize>() == first.len();
            if let Some(done) = this.write_head(cx, first, whole) {
                return done;
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "date: Wed, 02 Dec 2026 00:11:58 GMT\r\n\r\n";

    fn hyper_refusal(status_line: &str) -> Vec<u8> {
        format!("{status_line}\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}").into_bytes()
    }

    #[test]
    fn each_bare_refusal_of_hyper_gets_the_json_error_body() {
        let answer = rewrite(&hyper_refusal("HTTP/1.1 414 URI Too Long")).expect("rewritten");
        let body = r#"{"error":"the URI is over 65534 bytes, more than the server reads"}"#;
        let expected = format!(
            "HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n{DATE}{body}",
            body.len()
        );
        assert_eq!(String::from_utf8_lossy(&answer), expected);
        assert!(
            rewrite(&hyper_refusal(
                "HTTP/1.1 431 Request Header Fields Too Large"
            ))
            .is_some()
        );
        assert!(rewrite(&hyper_refusal("HTTP/1.1 400 Bad Request")).is_some());
    }

    #[test]
    fn answers_of_the_api_pass_through() {
        let api_error = b"HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\n\
            content-length: 52\r\ndate: Wed, 02 Dec 2026 00:11:58 GMT\r\n\r\n";
        assert_eq!(rewrite(api_error), None);
        let mut with_more = hyper_refusal("HTTP/1.1 400 Bad Request");
        with_more.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(rewrite(&with_more), None, "not a head alone");
        assert_eq!(
            rewrite(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
    }

    #[tokio::test]
    async fn a_refusal_written_through_the_connection_arrives_rewritten_and_counted_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A pipe smaller than the answer, so the rewrite takes several writes.
        let (near, mut far) = tokio::io::duplex(16);
        let mut conn = JsonRefusals::new(near);
        let head = hyper_refusal("HTTP/1.1 414 URI Too Long");

        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.map(|_| all)
        });
        let written = conn.write(&head).await.expect("written");
        conn.shutdown().await.expect("shut down");
        drop(conn);
        let arrived = reader.await.expect("the reader ran").expect("read");

        assert_eq!(written, head.len());
        assert_eq!(arrived, rewrite(&head).expect("rewritten").to_vec());
    }
}
