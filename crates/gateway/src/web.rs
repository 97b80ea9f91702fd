//! The web client (`web/`, built into `web/dist` and embedded by
//! `build.rs`): served for every `GET` no route takes, so `panal up` serves
//! the app at `/` on a machine without Node.
//!
//! - Hashed files under `/assets/` are cached for a year (`immutable`): a
//!   new build has new names. `index.html` is never cached (`no-store`), so
//!   a deployment reaches every browser at its next load.
//! - Any other path that is not an API path and names no file (`/signin`,
//!   `/players/…`) is a page of the app: `index.html`, and the app's router
//!   shows it — deep links, Back and Forward work. Paths under `/v1/` and
//!   file-like paths that do not exist stay 404 problems.
//! - Text files go Brotli- or gzip-compressed to browsers that accept it:
//!   the build writes `<file>.br` and `<file>.gz` beside each (`web/scripts/
//!   compress.mjs`), so nothing is compressed per request.
//! - A strict Content-Security-Policy: scripts and styles from this origin
//!   only, no inline script, no `eval`; the app builds its DOM with
//!   `textContent`, never HTML from user content.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;

include!(concat!(env!("OUT_DIR"), "/web_files.rs"));

/// Scripts, styles, fonts and API calls from this origin only; the socket on
/// the same host (`ws:`/`wss:` are not covered by `'self'` in every
/// browser); images also from `data:`/`blob:` (avatars being previewed).
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
    connect-src 'self' ws: wss:; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The app's answer to `method path`, when the path is the app's;
/// `accept_encoding` is the request's `Accept-Encoding`, if any.
pub(crate) fn answer(method: &Method, path: &str, accept_encoding: Option<&[u8]>) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    if path == "/v1" || path.starts_with("/v1/") || path.ends_with(".br") || path.ends_with(".gz") {
        return None;
    }
    if FILES.iter().any(|(p, _)| *p == path) {
        let cache = match path {
            "/index.html" => "no-store",
            _ if path.starts_with("/assets/") => IMMUTABLE,
            _ => "no-cache",
        };
        return file(path, cache, accept_encoding);
    }
    // A missing asset or file is a 404, not the app (a stale hashed name
    // must not come back as HTML with a 200).
    let last = path.rsplit('/').next().unwrap_or_default();
    if path.starts_with("/assets/") || last.contains('.') {
        return None;
    }
    file("/index.html", "no-store", accept_encoding)
}

fn find(path: &str) -> Option<&'static [u8]> {
    FILES.iter().find(|(p, _)| *p == path).map(|(_, body)| *body)
}

/// The file at `path`, in the best encoding the client accepts that the
/// build has a copy in.
fn file(path: &str, cache: &'static str, accept_encoding: Option<&[u8]>) -> Option<Response> {
    let plain = find(path)?;
    let accepts = |coding: &str| accept_encoding.is_some_and(|v| accepts(v, coding));
    let (body, encoding) = [("br", ".br"), ("gzip", ".gz")]
        .into_iter()
        .filter(|(coding, _)| accepts(coding))
        .find_map(|(coding, ext)| find(&format!("{path}{ext}")).map(|b| (b, Some(coding))))
        .unwrap_or((plain, None));
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    if let Some(coding) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    if find(&format!("{path}.br")).is_some() || find(&format!("{path}.gz")).is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    Some(response)
}

/// Whether an `Accept-Encoding` value accepts `coding` (named, or `*`, with
/// a weight other than zero).
fn accepts(value: &[u8], coding: &str) -> bool {
    let Ok(value) = std::str::from_utf8(value) else { return false };
    value.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().map_or(true, |q| q <= 0.0)));
        (name.eq_ignore_ascii_case(coding) || name == "*") && !refused
    })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "json" | "webmanifest" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_is_embedded_with_its_entry_page_and_hashed_assets() {
        assert!(FILES.iter().any(|(p, _)| *p == "/index.html"));
        assert!(FILES.iter().any(|(p, _)| p.starts_with("/assets/") && p.ends_with(".js")));
    }

    #[test]
    fn pages_are_the_app_and_api_or_missing_files_are_not() {
        let get = |path: &str| answer(&Method::GET, path, None);
        for page in ["/", "/signin", "/players/01a2", "/deep/link/"] {
            let r = get(page).unwrap_or_else(|| panic!("{page}"));
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store", "{page}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        }
        assert_eq!(get("/index.html").unwrap().headers()[header::CACHE_CONTROL], "no-store");
        for not_ours in ["/v1", "/v1/nothing", "/assets/index-gone.js", "/favicon.ico"] {
            assert!(get(not_ours).is_none(), "{not_ours}");
        }
        assert!(answer(&Method::POST, "/signin", None).is_none());
        let (asset, _) = FILES.iter().find(|(p, _)| p.ends_with(".js")).unwrap();
        let r = get(asset).unwrap();
        assert_eq!(r.headers()[header::CACHE_CONTROL], IMMUTABLE);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none(), "plain without Accept-Encoding");
    }

    #[test]
    fn text_goes_compressed_to_clients_that_accept_it() {
        let (asset, plain) = FILES.iter().find(|(p, _)| p.ends_with(".js")).unwrap();
        let encoding = |accept: &str| {
            let r = answer(&Method::GET, asset, Some(accept.as_bytes())).unwrap();
            assert_eq!(r.headers()[header::VARY], "accept-encoding");
            r.headers().get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(encoding("gzip, deflate, br, zstd").as_deref(), Some("br"));
        assert_eq!(encoding("gzip").as_deref(), Some("gzip"));
        assert_eq!(encoding("br;q=0, gzip;q=0.5").as_deref(), Some("gzip"));
        assert_eq!(encoding("identity"), None);
        assert_eq!(encoding("*").as_deref(), Some("br"));
        // The copies are the build's own, not served by their names.
        assert!(answer(&Method::GET, &format!("{asset}.gz"), None).is_none());
        let gz = FILES.iter().find(|(p, _)| *p == format!("{asset}.gz")).unwrap().1;
        assert!(gz.len() < plain.len() / 2);
        let page = answer(&Method::GET, "/signin", Some(b"gzip")).unwrap();
        assert_eq!(page.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-store");
    }
}
