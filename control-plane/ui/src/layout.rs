//! The one page layout: header with the tenant, its deployment mode and the signed-in
//! identity; the mode-aware menu; the page's content. Also the shared pieces pages use (empty
//! states, error pages, flash messages, forms with their CSRF token).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::Ctx;
use crate::api::ApiFailure;
use crate::html::{esc, field};
use crate::nav::{self, Availability, Section};

/// A complete page with status 200.
pub(crate) fn page(ctx: &Ctx, section: Option<Section>, title: &str, body: &str) -> Response {
    page_with_status(ctx, StatusCode::OK, section, title, body)
}

/// A complete page.
pub(crate) fn page_with_status(
    ctx: &Ctx,
    status: StatusCode,
    section: Option<Section>,
    title: &str,
    body: &str,
) -> Response {
    let me = &ctx.session.me;
    let posture = ctx.posture();
    let mode = nav::mode_of(posture);
    let permissions = nav::permissions(me);
    let mut menu = String::new();
    for s in Section::ALL {
        if s.availability(posture, &permissions) != Availability::Shown {
            continue;
        }
        let current = if Some(s) == section {
            r#" aria-current="page""#
        } else {
            ""
        };
        menu.push_str(&format!(
            r#"<li><a href="{}"{current}>{}</a></li>"#,
            s.path(),
            s.label()
        ));
    }
    let flash = ctx.flash.as_ref().map_or(String::new(), |f| {
        let secret = f.secret.as_ref().map_or(String::new(), |s| {
            format!(
                r#"<p><label>Shown once: <input class="secret" readonly value="{}" data-testid="secret" aria-label="secret shown once"></label></p>"#,
                esc(s)
            )
        });
        format!(
            r#"<div class="flash {}" role="status"><p>{}</p>{secret}</div>"#,
            f.kind,
            esc(&f.text)
        )
    });
    let html = format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title_esc} · agent-bom</title><link rel="stylesheet" href="/ui/assets/app.css"><script src="/ui/assets/app.js" defer></script></head>
<body><a class="skip" href="#main">Skip to content</a>
<header class="top"><a class="brand" href="/ui/">agent-bom</a>
<div class="context"><span data-testid="tenant">Tenant <strong>{tenant}</strong></span>
<span class="mode mode-{mode}" data-testid="mode" title="{mode_help}">{mode}</span>
<span class="who" data-testid="identity">{identity} · {role}</span>
<form method="post" action="/ui/logout">{csrf}<button type="submit" class="link">Sign out</button></form></div></header>
<div class="shell"><nav aria-label="Sections"><ul>{menu}</ul></nav>
<main id="main"><h1>{title_esc}</h1>{flash}{body}</main></div></body></html>"##,
        title_esc = esc(title),
        tenant = esc(me["tenant"]["name"].as_str().unwrap_or("?")),
        mode_help = esc(mode.describe()),
        identity = field(me, "identity"),
        role = field(me, "role"),
        csrf = ctx.csrf_input(),
    );
    let mut response = (status, Html(html)).into_response();
    if ctx.flash.is_some()
        && let Ok(v) = axum::http::HeaderValue::from_str(&crate::security::clear_flash_cookie(
            ctx.secure_cookies,
        ))
    {
        // Shown once: the message's cookie goes.
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, v);
    }
    response
}

/// The page of a section that does not apply or is not allowed (a direct link to a hidden
/// menu item); `None` when the section is shown.
pub(crate) fn unavailable(ctx: &Ctx, section: Section) -> Option<Response> {
    match section.availability(ctx.posture(), &nav::permissions(&ctx.session.me)) {
        Availability::Shown => None,
        Availability::NotApplicable { why, how } => {
            let mode = nav::mode_of(ctx.posture());
            Some(page(
                ctx,
                Some(section),
                section.label(),
                &format!(
                    r#"<section class="empty" data-testid="empty-state"><h2>Not in use in this tenant</h2><p>This tenant runs in <strong>{mode}</strong> mode ({}).</p><p>{}</p><p><strong>To enable it:</strong> {}</p></section>"#,
                    esc(mode.describe()),
                    esc(why),
                    code_spans(how)
                ),
            ))
        }
        Availability::Forbidden { permission } => Some(forbidden(ctx, section, permission)),
    }
}

/// 403 page for a caller without `permission`.
pub(crate) fn forbidden(ctx: &Ctx, section: Section, permission: &str) -> Response {
    page_with_status(
        ctx,
        StatusCode::FORBIDDEN,
        Some(section),
        section.label(),
        &format!(
            r#"<section class="empty" data-testid="forbidden"><h2>Not allowed</h2><p>Your role ({}) lacks the permission <code>{}</code>. An admin of this tenant can grant it with a key of another role.</p></section>"#,
            field(&ctx.session.me, "role"),
            esc(permission)
        ),
    )
}

/// A page saying an API call failed, with the API's status.
pub(crate) fn failure(ctx: &Ctx, section: Option<Section>, e: &ApiFailure) -> Response {
    if e.status() == 401 {
        // The API no longer accepts the session's credential (revoked, expired): sign in again.
        return crate::ended(ctx.secure_cookies);
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    page_with_status(
        ctx,
        status,
        section,
        "Something went wrong",
        &format!(
            r#"<section class="empty" data-testid="api-error"><p>{}</p></section>"#,
            esc(&e.to_string())
        ),
    )
}

/// Text with `backtick` spans as `<code>`, escaped.
pub(crate) fn code_spans(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{}</code>", esc(part)));
        } else {
            out.push_str(&esc(part));
        }
    }
    out
}

/// A status badge (`online`, `offline`, `stale`, a lifecycle state, ...).
pub(crate) fn badge(text: &str) -> String {
    let class: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!(r#"<span class="badge b-{class}">{}</span>"#, esc(text))
}

/// A stat tile.
pub(crate) fn tile(label: &str, value: &str, testid: &str) -> String {
    format!(
        r#"<div class="tile" data-testid="{testid}"><div class="v">{}</div><div class="l">{}</div></div>"#,
        esc(value),
        esc(label)
    )
}
