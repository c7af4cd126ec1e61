//! Endpoints and bearer metadata shared by both clients.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A lazily connecting channel to `url` (`http://host:port`; a bare
/// `host:port` means plain HTTP/2). Nothing is dialled until the first call,
/// and a broken connection is redialled on the next one, so a client can be
/// made before its server is up and survives the server's restarts.
pub(crate) fn lazy_channel(url: &str) -> Result<Channel, Error> {
    let full = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
    let endpoint = Endpoint::from_shared(full)
        .map_err(|e| Error::InvalidUrl { url: url.to_owned(), reason: e.to_string() })?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
}

/// `Bearer TOKEN` as sensitive metadata (left out of `Debug` and HPACK tables).
pub(crate) fn bearer_value(token: &str) -> Result<MetadataValue<Ascii>, Error> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Error::InvalidToken("it is empty"));
    }
    let mut value: MetadataValue<Ascii> =
        format!("Bearer {token}").parse().map_err(|_| Error::InvalidToken("it holds characters a header cannot"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Runs `call` with a deadline.
pub(crate) async fn deadline<T>(
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(status.into()),
        Err(_) => Err(Error::Timeout(limit)),
    }
}
