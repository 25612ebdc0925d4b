//! The pages people open: `/`, the web client (Converse.js, configured by this server), and
//! `/join/ROOM`, an invitation to one room (its name and description, an `xmpp:` link for
//! installed apps, XEP-0147, and buttons that open the web client in the room). Everything a
//! room or a request supplies is escaped: text for HTML, the client's settings as JSON that
//! cannot end its `<script>` element.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY as CONTENT_SECURITY_POLICY_HEADER, CONTENT_TYPE,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jid::BareJid;
use serde_json::json;

use super::listener::Peer;
use super::room_info::{self, Lookup, RoomInfo};
use super::web_client::ASSETS_PATH;
use super::Site;

/// Starts the client with the settings the page carries (a fixed script: no page data in it).
const START_SCRIPT: &str = include_str!("start.js");
const START_PATH: &str = "/web-client.js";

pub fn routes(site: Arc<Site>) -> Router {
    Router::new()
        .route("/", get(client))
        .route("/join/{room}", get(invitation))
        .route("/join/{room}/browser", get(join_with_account))
        .route("/join/{room}/guest", get(join_as_guest))
        .route(START_PATH, get(start_script))
        .with_state(site)
}

/// How the web client logs in.
enum Login {
    Account,
    Guest { domain: String },
}

async fn client(
    State(site): State<Arc<Site>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    client_page(&site, peer, &headers, None, Login::Account)
}

async fn join_with_account(
    State(site): State<Arc<Site>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Response {
    match site.room(&room) {
        Some(room) => client_page(&site, peer, &headers, Some(&room), Login::Account),
        None => no_such_room(&room),
    }
}

async fn join_as_guest(
    State(site): State<Arc<Site>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(domain) = site.guest_domain.clone() else {
        let body = "<p>This service lets no guests in: log in with an account.</p>";
        return page(StatusCode::NOT_FOUND, "No guests here", body);
    };
    match site.room(&room) {
        Some(room) => client_page(&site, peer, &headers, Some(&room), Login::Guest { domain }),
        None => no_such_room(&room),
    }
}

/// The web client, logging in as `login` and entering `room` once in.
fn client_page(
    site: &Site,
    peer: Peer,
    headers: &HeaderMap,
    room: Option<&BareJid>,
    login: Login,
) -> Response {
    if site.web_client.is_none() {
        let body = "<p>The web client (Converse.js) is not installed on this server. Its operator \
                    can run <code>scripts/fetch-web-client</code> (<code>scripts/build</code> does) \
                    or start <code>muc-host serve</code> with <code>--web-client DIR</code>.</p>\
                    <p>Any XMPP app reaches the rooms all the same.</p>";
        return page(StatusCode::SERVICE_UNAVAILABLE, "No web client", body);
    }
    let mut settings = json!({
        "assets_path": ASSETS_PATH,
        "websocket_url": super::host_meta::websocket_url(headers, site.local, peer),
        // The server is known: no XEP-0156 lookup of whatever domain the user types.
        "discover_connection_methods": false,
        "view_mode": "fullscreen",
        "default_domain": site.domain,
        "muc_domain": site.muc_domain,
        "auto_join_rooms": room.map(|room| vec![room.to_string()]).unwrap_or_default(),
        // A room service: no end-to-end encryption keys, contacts or push to set up.
        "blacklisted_plugins": [
            "converse-omemo", "converse-omemo-views", "converse-push", "converse-bosh",
            "converse-rosterview",
        ],
        "allow_contact_requests": false,
        "show_self_in_roster": false,
        "allow_registration": site.registration,
        "show_client_info": false,
        "play_sounds": false,
        "loglevel": "warn",
    });
    let title = match &login {
        Login::Account => {
            // The nickname in rooms is the account's name, not asked for on every join.
            settings["muc_nickname_from_jid"] = json!(true);
            "Chat rooms"
        }
        Login::Guest { domain } => {
            settings["authentication"] = json!("anonymous");
            settings["jid"] = json!(domain);
            settings["auto_login"] = json!(true);
            settings["clear_cache_on_logout"] = json!(true);
            "Chat rooms (guest)"
        }
    };
    // Converse's login screen ends with its sponsors' logos, which the CSP refuses: not shown.
    let head = format!(
        "<link rel='icon' href='{ASSETS_PATH}/images/favicon.ico'>\n\
         <link rel='stylesheet' href='{ASSETS_PATH}/converse.min.css'>\n\
         <style>converse-footer {{ display: none; }}</style>\n\
         <script type='application/json' id='converse-settings'>{}</script>\n\
         <script type='module' src='{ASSETS_PATH}/converse.min.js'></script>\n\
         <script type='module' src='{START_PATH}'></script>",
        script_json(&settings)
    );
    html_response(
        StatusCode::OK,
        document(title, &head, "class='converse-fullscreen'", ""),
    )
}

async fn invitation(State(site): State<Arc<Site>>, Path(room): Path<String>) -> Response {
    let Some(jid) = site.room(&room) else {
        return no_such_room(&room);
    };
    let info = match room_info::ask(&site.core, &jid).await {
        Lookup::Found(info) => info,
        Lookup::NotFound => return no_such_room(&room),
        Lookup::Unavailable => {
            let body = "<p>The service cannot answer right now; try again in a moment.</p>";
            return page(StatusCode::SERVICE_UNAVAILABLE, "Try again", body);
        }
    };
    let RoomInfo { name, description } = info;
    let name = if name.is_empty() {
        jid.to_string()
    } else {
        name
    };
    let local = jid.node().map_or("", |node| node.as_str());
    let mut body = format!(
        "<h1>{}</h1>\n<p class='address'>{}</p>\n",
        escape(&name),
        escape(jid.as_str())
    );
    if !description.is_empty() {
        body += &format!("<p class='description'>{}</p>\n", escape(&description));
    }
    body += &format!(
        "<p><a class='button' id='join-app' href='{}'>Open in your XMPP app</a></p>\n\
         <p><a class='button' id='join-browser' href='/join/{}/browser'>Join in the browser</a> \
         with your account</p>\n",
        escape(&format!("xmpp:{jid}?join")),
        escape(&url_segment(local)),
    );
    if site.guest_domain.is_some() {
        body += &format!(
            "<p><a class='button' id='join-guest' href='/join/{}/guest'>Join as a guest</a> \
             without an account</p>\n",
            escape(&url_segment(local)),
        );
    }
    page(StatusCode::OK, &name, &body)
}

fn no_such_room(room: &str) -> Response {
    let body = format!(
        "<p>There is no room <strong>{}</strong> here (or it is not open yet).</p>",
        escape(room)
    );
    page(StatusCode::NOT_FOUND, "No such room", &body)
}

async fn start_script() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        START_SCRIPT,
    )
        .into_response()
}

/// A plain page of this server's own, `body` being HTML already escaped.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let style = "<style>body{font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em;\
                 line-height:1.5}.address{color:#555}.button{display:inline-block;padding:.4em 1em;\
                 border-radius:.3em;background:#2a6;color:#fff;text-decoration:none}</style>";
    html_response(
        status,
        document(title, style, "", &format!("<main>\n{body}\n</main>")),
    )
}

fn document(title: &str, head: &str, body_attributes: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n\
         <meta name='viewport' content='width=device-width, initial-scale=1'>\n\
         <title>{}</title>\n{head}\n</head>\n<body {body_attributes}>\n{body}\n</body>\n</html>\n",
        escape(title)
    )
}

/// What the pages may load: this server's files and WebSocket only, so that nothing a room
/// carries (an image link in a message) reveals its readers to another server, and Converse's
/// login screen loads no sponsors' logos from conversejs.org. Styles may be inline (lit sets
/// them on elements); scripts may not.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
     img-src 'self' data: blob:; media-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn html_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY_HEADER, CONTENT_SECURITY_POLICY),
            // Pages show the room as it is now, and carry the address they were asked at.
            (CACHE_CONTROL, "no-cache"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        html,
    )
        .into_response()
}

/// Text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// JSON to put inside a `<script>` element: no `<` (so no `</script>` or `<!--`), `>` or `&`
/// in it, each written as the JSON escape of the same character.
fn script_json(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// A room's localpart as one URL path segment (percent-encoding all but unreserved characters).
fn url_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping_leaves_no_markup() {
        assert_eq!(
            escape("<script>alert('x & \"y\"')</script>"),
            "&lt;script&gt;alert(&#39;x &amp; &quot;y&quot;&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn settings_json_cannot_close_its_script_element() {
        let value = json!({ "name": "</script><script>alert(1)</script> & <!--" });
        let text = script_json(&value);
        assert!(
            !text.contains('<') && !text.contains('>') && !text.contains('&'),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value, "the same settings once parsed");
    }

    #[test]
    fn a_localpart_is_one_path_segment() {
        assert_eq!(url_segment("tea-room"), "tea-room");
        assert_eq!(url_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(url_segment("é"), "%C3%A9");
    }
}
