//! gRPC below the generated clients: a hand-framed request on a tonic
//! [`Channel`], for what those clients cannot send (protobuf bytes that do not
//! decode, metadata that is not ASCII), and the standard health check
//! (`grpc.health.v1.Health/Check`) without a dependency on tonic-health.
//!
//! The request body travels as a `String`, so raw messages are limited to
//! bytes below 0x80 and to lengths whose four big-endian bytes are each below
//! 0x80. [`call_stalled`] sends a body that never ends: the server's handler
//! waits for it, so the call holds its place until the server gives up.

use std::future::poll_fn;
use std::pin::Pin;

use anyhow::{Context, bail, ensure};
use tonic::Code;
use tonic::codegen::{Body as _, Service as _, http};
use tonic::transport::Channel;

/// The health service's status for a service name.
pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse.status` SERVING.
const SERVING: u8 = 1;

/// What came back from a raw call.
#[derive(Debug, Clone)]
pub struct RawReply {
    /// `grpc-status` (from the trailers, or the headers of a trailers-only reply).
    pub code: Code,
    /// `grpc-message`, percent-decoding left undone.
    pub message: String,
    /// The response messages, unframed.
    pub messages: Vec<Vec<u8>>,
}

/// One gRPC frame (uncompressed) around `message`, as text; see the module doc.
pub fn frame(message: &str) -> anyhow::Result<String> {
    let len = u32::try_from(message.len()).context("message too long")?.to_be_bytes();
    ensure!(len.iter().all(|b| b.is_ascii()), "length {} does not frame as ASCII", message.len());
    ensure!(message.is_ascii(), "raw messages are ASCII bytes");
    let mut out = String::with_capacity(5 + message.len());
    out.push('\0');
    out.extend(len.iter().map(|&b| char::from(b)));
    out.push_str(message);
    Ok(out)
}

/// Sends `body` (a whole framed request, see [`frame`]) to `path` with extra
/// `headers` (raw bytes: not necessarily ASCII) and reads the whole reply.
pub async fn call(channel: &Channel, path: &str, headers: &[(&str, &[u8])], body: String) -> anyhow::Result<RawReply> {
    send(channel, request(path, headers, tonic::body::Body::new(body))?).await
}

/// A gRPC POST to `path` with extra `headers` (raw bytes) and `body`.
fn request(
    path: &str,
    headers: &[(&str, &[u8])],
    body: tonic::body::Body,
) -> anyhow::Result<http::Request<tonic::body::Body>> {
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://tally{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        req = req.header(*name, http::HeaderValue::from_bytes(value).context("header value")?);
    }
    req.body(body).context("building the request")
}

/// A request body that never yields a byte nor ends.
struct Stall;

impl tonic::codegen::Body for Stall {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

/// Sends the headers of a call to `path` and then a body that never ends,
/// and reads the reply: the server answers only when it gives up on the
/// call (its deadline) or refuses it outright (overload). Dropping the
/// future resets the stream.
pub async fn call_stalled(channel: &Channel, path: &str, headers: &[(&str, &[u8])]) -> anyhow::Result<RawReply> {
    send(channel, request(path, headers, tonic::body::Body::new(Stall))?).await
}

async fn send(channel: &Channel, req: http::Request<tonic::body::Body>) -> anyhow::Result<RawReply> {
    let mut channel = channel.clone();
    poll_fn(|cx| channel.poll_ready(cx)).await.context("channel not ready")?;
    let resp = channel.call(req).await.context("sending the request")?;
    let (parts, mut body) = resp.into_parts();
    ensure!(parts.status == http::StatusCode::OK, "HTTP status {}", parts.status);
    let mut data = Vec::new();
    let mut trailers = parts.headers;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|s| anyhow::anyhow!("reading the reply: {s}"))?;
        match frame.into_data() {
            Ok(bytes) => data.extend_from_slice(&bytes),
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers.extend(t);
                }
            }
        }
    }
    let header = |name: &str| trailers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let code = header("grpc-status").context("no grpc-status")?;
    let code = Code::from_i32(code.trim().parse().with_context(|| format!("grpc-status {code:?}"))?);
    Ok(RawReply { code, message: header("grpc-message").unwrap_or_default(), messages: unframe(&data)? })
}

fn unframe(mut data: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        ensure!(data.len() >= 5, "truncated frame header");
        ensure!(data[0] == 0, "compressed reply frame");
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        ensure!(data.len() >= 5 + len, "truncated frame");
        out.push(data[5..5 + len].to_vec());
        data = &data[5 + len..];
    }
    Ok(out)
}

/// Whether the server reports `service` (e.g. `tally.v1.Authority`) SERVING
/// through `grpc.health.v1.Health/Check`. An error when it does not answer.
pub async fn health(channel: &Channel, service: &str) -> anyhow::Result<bool> {
    // HealthCheckRequest { service = 1 }: one length-delimited field.
    let len = u8::try_from(service.len()).ok().filter(|l| l.is_ascii()).context("service name too long")?;
    let mut msg = String::from("\n");
    msg.push(char::from(len));
    msg.push_str(service);
    let reply = call(channel, HEALTH_CHECK, &[], frame(&msg)?).await?;
    if reply.code != Code::Ok {
        bail!("health check answered {:?}: {}", reply.code, reply.message);
    }
    // HealthCheckResponse { status = 1 (varint) }: absent means UNKNOWN (0).
    let [message] = reply.messages.as_slice() else { bail!("health check answered {} messages", reply.messages.len()) };
    Ok(message.as_slice() == [0x08, SERVING])
}

/// A fresh channel to `http://ADDR` (its own connection).
pub async fn channel(addr: std::net::SocketAddr) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))?.connect().await.with_context(|| format!("connecting to {addr}"))
}

/// Fails unless the process still runs, says "panicked" nowhere on stderr,
/// and reports `service` SERVING on `channel`.
pub async fn assert_alive(child: &mut crate::Child, channel: &Channel, service: &str) -> anyhow::Result<()> {
    if let Some(status) = child.try_status() {
        bail!("the process exited: {status}");
    }
    if let Some(line) = child.stderr().snapshot().into_iter().find(|l| l.contains("panicked")) {
        bail!("the process panicked: {line}");
    }
    let serving =
        tokio::time::timeout(crate::DEADLINE, health(channel, service)).await.context("health check timed out")??;
    ensure!(serving, "{service} is not SERVING");
    Ok(())
}
