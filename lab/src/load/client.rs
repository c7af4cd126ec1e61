//! A lean gRPC client on `h2` directly: one unary call is a HEADERS frame
//! and one DATA frame out, and the answer's DATA and trailers read back. No
//! tower stack, no codec machinery: a tonic client costs about twice the CPU
//! of the server it drives, this one a fraction, so one client core can
//! saturate one server core.

use std::net::SocketAddr;

use anyhow::{Context, anyhow, bail};
use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, TE};
use http::{Method, Request, Uri};

/// Flow-control windows: large, so the window never paces a loopback run.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 1 << 26;

/// One HTTP/2 connection to a gRPC server, for one method.
#[derive(Debug, Clone)]
pub(crate) struct Channel {
    send: SendRequest<Bytes>,
    uri: Uri,
    bearer: Option<HeaderValue>,
}

/// gRPC's length-prefixed message framing: no compression flag, big-endian length.
pub(crate) fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.freeze()
}

impl Channel {
    /// Connects (TCP_NODELAY, as the servers set it on their side) and
    /// spawns the connection's driver on the current `LocalSet`.
    pub(crate) async fn connect(addr: SocketAddr, method: &str, bearer: Option<&str>) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(tcp)
            .await
            .context("HTTP/2 handshake")?;
        tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        let uri: Uri = format!("http://{addr}{method}").parse().context("method path")?;
        let bearer = bearer.map(|t| HeaderValue::try_from(format!("Bearer {t}"))).transpose()?;
        Ok(Self { send, uri, bearer })
    }

    /// One unary call with an already framed request; returns the response
    /// message (without its 5-byte frame header).
    pub(crate) async fn call(&self, body: Bytes) -> anyhow::Result<Bytes> {
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        if let Some(bearer) = &self.bearer {
            headers.insert(AUTHORIZATION, bearer.clone());
        }
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(request, false)?;
        stream.send_data(body, true)?;
        let response = response.await?;
        let (head, mut body) = response.into_parts();
        if !head.status.is_success() {
            bail!("HTTP status {}", head.status);
        }
        // A trailers-only answer (an error) carries grpc-status in the headers.
        if let Some(status) = head.headers.get("grpc-status") {
            bail!("grpc-status {status:?} {:?}", head.headers.get("grpc-message"));
        }
        let mut message = Bytes::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            message = if message.is_empty() {
                chunk
            } else {
                let mut joined = BytesMut::from(&message[..]);
                joined.extend_from_slice(&chunk);
                joined.freeze()
            };
        }
        let trailers = body.trailers().await?.ok_or_else(|| anyhow!("no trailers"))?;
        match trailers.get("grpc-status").map(|v| v.as_bytes()) {
            Some(b"0") => {}
            other => bail!("grpc-status {other:?} {:?}", trailers.get("grpc-message")),
        }
        if message.len() < 5 {
            bail!("short gRPC frame ({} bytes)", message.len());
        }
        Ok(message.slice(5..))
    }
}
