//! Which web pages may open XMPP over WebSocket (RFC 7395 §3.2 leaves it to the server, RFC 6455
//! §10.2 says how): a browser names the page's origin in `Origin`; without a policy any site a
//! user visits could log in with the credentials their browser holds, or flood the server from
//! every visitor's browser. By default only this server's own pages may; the operator names
//! others. A client that is not a browser sends no `Origin` and is not concerned.

use axum::http::header::{HOST, ORIGIN};
use axum::http::HeaderMap;

/// The pages allowed besides the server's own.
#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    /// Origins as browsers write them (`https://chat.example.org`, no path), compared without
    /// regard to case; `*` allows every page.
    pub allowed: Vec<String>,
}

impl OriginPolicy {
    /// Whether a request with these headers, arriving over `scheme` (`http` or `https`), comes
    /// from a page allowed to use the endpoint.
    pub fn allows(&self, headers: &HeaderMap, scheme: &str) -> bool {
        let Some(origin) = headers.get(ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let own = headers
            .get(HOST)
            .and_then(|host| host.to_str().ok())
            .is_some_and(|host| origin.eq_ignore_ascii_case(&format!("{scheme}://{host}")));
        own || self
            .allowed
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(ORIGIN, origin.parse().unwrap());
        }
        if let Some(host) = host {
            headers.insert(HOST, host.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_servers_own_pages_and_non_browsers_are_allowed_by_default() {
        let policy = OriginPolicy::default();
        let host = Some("127.0.0.1:5280");
        for (origin, scheme, allowed) in [
            (None, "http", true),
            (Some("http://127.0.0.1:5280"), "http", true),
            (Some("HTTP://127.0.0.1:5280"), "http", true),
            (Some("https://127.0.0.1:5280"), "https", true),
            // The same host over the other scheme is another origin.
            (Some("https://127.0.0.1:5280"), "http", false),
            (Some("http://127.0.0.1:5281"), "http", false),
            (Some("http://evil.example"), "http", false),
            (Some("null"), "http", false),
        ] {
            assert_eq!(
                policy.allows(&headers(origin, host), scheme),
                allowed,
                "{origin:?} over {scheme}"
            );
        }
        assert!(
            !policy.allows(&headers(Some("http://127.0.0.1:5280"), None), "http"),
            "no Host: nothing to be the same origin as"
        );
    }

    #[test]
    fn the_operator_names_other_pages_or_every_page() {
        let host = Some("xmpp.example.org");
        let named = OriginPolicy {
            allowed: vec!["https://chat.example.org".into()],
        };
        assert!(named.allows(&headers(Some("https://chat.example.org"), host), "http"));
        assert!(named.allows(&headers(Some("https://Chat.Example.org"), host), "http"));
        assert!(!named.allows(&headers(Some("https://example.org"), host), "http"));
        let any = OriginPolicy {
            allowed: vec!["*".into()],
        };
        assert!(any.allows(&headers(Some("http://evil.example"), host), "http"));
    }
}
