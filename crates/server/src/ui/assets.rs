//! The dashboard's static files, embedded in the binary (rust-embed): its one script and its
//! style sheet. Pages link them with `?v=` and their content hash, so a browser may keep them
//! for a year; a new binary changes the link.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::middleware::OwnProtocol;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The link to an embedded file, with its content hash for cache busting.
pub(crate) fn href(file: &str) -> String {
    match Assets::get(file) {
        Some(embedded) => format!("/ui/assets/{file}?v={}", version(&embedded)),
        None => format!("/ui/assets/{file}"),
    }
}

fn version(file: &rust_embed::EmbeddedFile) -> String {
    file.metadata.sha256_hash()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /ui/assets/{file}`: the file with a strong `ETag` (304 when the browser has it) and
/// a year's `Cache-Control`, as its link changes with its content.
pub(crate) async fn serve(Path(file): Path<String>, request_headers: HeaderMap) -> Response {
    let Some(embedded) = Assets::get(&file) else {
        let mut response = (StatusCode::NOT_FOUND, "no such file").into_response();
        super::protect(response.headers_mut());
        response.extensions_mut().insert(OwnProtocol);
        return response;
    };
    let etag = format!("\"{}\"", version(&embedded));
    let fresh = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, embedded.data.into_owned()).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&file)),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    super::protect(headers);
    response.extensions_mut().insert(OwnProtocol);
    response
}
