//! Mapping a request to the action its token must allow. The service
//! provides the mapping: HTTP services usually map methods, gRPC services
//! their RPCs. A request the mapping does not know is refused (fail closed).

use std::collections::HashMap;

use http::Method;

/// The action a request stands for.
pub trait ActionMap: Send + Sync + 'static {
    /// The action for this method and path (for gRPC, `/package.Service/Method`),
    /// or `None` to refuse the request without asking the verifier.
    fn action(&self, method: &Method, path: &str) -> Option<String>;
}

impl<F> ActionMap for F
where
    F: Fn(&Method, &str) -> Option<String> + Send + Sync + 'static,
{
    fn action(&self, method: &Method, path: &str) -> Option<String> {
        self(method, path)
    }
}

/// HTTP methods to actions: `GET`, `HEAD`, `OPTIONS` → `read`; `POST`,
/// `PUT`, `PATCH` → `write`; `DELETE` → `delete`; anything else is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpActions;

impl ActionMap for HttpActions {
    fn action(&self, method: &Method, _path: &str) -> Option<String> {
        tally_token::http_auth::http_action(method.as_str()).map(str::to_owned)
    }
}

/// gRPC methods to actions, by full method name. Methods not listed are refused.
///
/// ```
/// use tally_client::GrpcActions;
/// let actions = GrpcActions::new()
///     .method("example.orders.v1.Orders/GetOrder", "read")
///     .method("/example.orders.v1.Orders/CancelOrder", "write");
/// ```
#[derive(Debug, Clone, Default)]
pub struct GrpcActions {
    methods: HashMap<String, String>,
}

impl GrpcActions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `package.Service/Method` (a leading `/` is optional) to `action`.
    pub fn method(mut self, method: &str, action: &str) -> Self {
        self.methods.insert(method.trim_start_matches('/').to_owned(), action.to_owned());
        self
    }
}

impl ActionMap for GrpcActions {
    fn action(&self, _method: &Method, path: &str) -> Option<String> {
        self.methods.get(path.trim_start_matches('/')).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_methods() {
        assert_eq!(HttpActions.action(&Method::GET, "/x").as_deref(), Some("read"));
        assert_eq!(HttpActions.action(&Method::PUT, "/x").as_deref(), Some("write"));
        assert_eq!(HttpActions.action(&Method::DELETE, "/x").as_deref(), Some("delete"));
        assert_eq!(HttpActions.action(&Method::CONNECT, "/x"), None);
    }

    #[test]
    fn grpc_methods_with_or_without_slash() {
        let map = GrpcActions::new().method("/a.B/Get", "read").method("a.B/Put", "write");
        assert_eq!(map.action(&Method::POST, "/a.B/Get").as_deref(), Some("read"));
        assert_eq!(map.action(&Method::POST, "/a.B/Put").as_deref(), Some("write"));
        assert_eq!(map.action(&Method::POST, "/a.B/Other"), None);
    }

    #[test]
    fn closures_map_too() {
        let map = |m: &Method, p: &str| (m == Method::GET && p.starts_with("/public")).then(|| "read".to_owned());
        assert_eq!(map.action(&Method::GET, "/public/x").as_deref(), Some("read"));
        assert_eq!(ActionMap::action(&map, &Method::GET, "/private"), None);
    }
}
